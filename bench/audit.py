"""How fast the audit log appends, proves and verifies at a million entries, next to bare hashlib.

Run: ``.venv/bin/python bench/audit.py [--entries 1000000] [--quick] [--witness-only]``. The
full run takes several minutes; ``--quick`` (20,000 entries) is a smoke run of well under a
minute. After that table come the witness work's figures (``_audit_witness.py``): appends
before and after it, tile serving and checkpoint publication with one and two witnesses, a few
minutes more; ``--witness-only`` prints only those, ``--pairs`` sets how many before/after
pairs (default 3). It reads
``CASEBUS_DATABASE_URL`` (a role that may create databases) or, when that is unset, starts
``deploy/local/up`` and uses the address it prints. It works in a database of its own, created
and migrated here and dropped at the end, also on errors and Ctrl-C.

Each leaf is ~600 bytes of canonical JSON from ``message_leaf``, what the router records when it
accepts a message, with random bytes standing in for the signed envelope. Leaf ``i`` is a pure
function of ``i``: the yardstick rows hash exactly the leaves the database holds, and the root
computed in memory must equal the one the database proves against. Times exclude building the
leaves in Python. The last column is how many times longer a row takes per entry (per call for
latencies) than raw ``hashlib.sha256`` of one leaf, measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import os
import random
import resource
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import asyncpg
import structlog
from _audit_append import record as _record
from _audit_witness import witness_report
from _common import scratch_database
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bus.audit.checkpointer import Checkpointer
from bus.audit.log import AuditLog
from bus.audit.merkle import leaf_hash, root_hash, verify_inclusion
from bus.audit.verify import verify_log
from bus.db import create_pool, migrate
from bus.local_infra import local_database_url

__all__ = ["main"]

ORIGIN = "bench.casebus/audit"
FILL_BATCH = 1_000
HASH_CHUNK = 50_000  # leaves built at a time for the streamed yardstick
PROGRESS_EVERY_S = 5.0


@dataclass(frozen=True, slots=True)
class _Plan:
    """How many operations each row measures."""

    entries: int
    seed: int  # entries in the log before the append rows start
    singles: int
    hundreds: int  # batches of 100
    thousands: int  # batches of 1,000
    tail_singles: int  # appends of one entry once the log is nearly full
    tail_thousands: int
    proofs: int
    checked_proofs: int  # proofs also verified against the root

    @property
    def fixed(self) -> int:
        """Entries appended outside the fill."""
        return (
            self.seed
            + self.singles
            + 100 * self.hundreds
            + 1_000 * self.thousands
            + self.tail_singles
            + 1_000 * self.tail_thousands
        )


_FULL = _Plan(1_000_000, 10_000, 2_000, 200, 100, 1_000, 10, 1_000, 20)
_QUICK = _Plan(20_000, 1_000, 200, 20, 10, 200, 2, 1_000, 20)


@dataclass(frozen=True, slots=True)
class _Row:
    operation: str
    count: str
    seconds: float  # wall time of the row
    figure: str  # its rate or latency, for people
    unit_s: float  # seconds per entry or per call, to set against one raw leaf hash


@dataclass(slots=True)
class _DbResult:
    server_version: str = ""
    durability: str = ""
    rows: list[_Row] = field(default_factory=list)
    root: bytes = b""
    database_bytes: int = 0
    entries_bytes: int = 0
    nodes_bytes: int = 0


def _say(text: str) -> None:
    print(f"[bench audit {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# --- the leaves -------------------------------------------------------------------------------


def _leaves(start: int, count: int) -> list[bytes]:
    return [_record(i).leaf for i in range(start, start + count)]


# --- formatting -------------------------------------------------------------------------------


def _n(value: int) -> str:
    return f"{value:,}"


def _dur(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def _rate(count: int, seconds: float, unit: str = "entries") -> str:
    return f"{count / seconds:,.0f} {unit}/s"


def _times(ratio: float) -> str:
    return f"{ratio:,.0f}×" if ratio >= 10 else f"{ratio:.1f}×"


def _table(rows: Sequence[_Row], raw_unit_s: float) -> list[str]:
    head = ("operation", "count", "time", "rate or latency", "vs raw hashlib")
    cells = [
        (r.operation, r.count, _dur(r.seconds), r.figure, _times(r.unit_s / raw_unit_s))
        for r in rows
    ]
    widths = [max(len(c[i]) for c in [head, *cells]) for i in range(len(head))]
    right = (False, True, True, True, True)

    def line(values: Sequence[str]) -> str:
        padded = (
            v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right, strict=True)
        )
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(
        "-" * (w + 1) + ":" if r else ":" + "-" * (w + 1)
        for w, r in zip(widths, right, strict=True)
    )
    return [line(head), rule + "|", *(line(c) for c in cells)]


# --- the database -----------------------------------------------------------------------------


class _Appender:
    """Appends leaf ``next``, ``next + 1``, ... one transaction per batch, as the router does."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._log = AuditLog()
        self.next = 0

    async def batch(self, count: int) -> float:
        """Append one batch; the seconds its transaction took."""
        records = [_record(i) for i in range(self.next, self.next + count)]
        start = time.perf_counter()
        async with self._pool.acquire() as conn, conn.transaction():
            appended = await self._log.append(conn, records)
        elapsed = time.perf_counter() - start
        if appended[0].index != self.next or not all(a.new for a in appended):
            raise RuntimeError(f"batch at {self.next} did not land where expected")
        self.next += count
        return elapsed

    async def row(self, batches: int, size: int) -> _Row:
        at = self.next
        spent = 0.0
        for _ in range(batches):
            spent += await self.batch(size)
        count = batches * size
        return _Row(
            f"append, batches of {_n(size)} (log at {_n(at)})",
            f"{_n(count)} in {_n(batches)} tx",
            spent,
            _rate(count, spent),
            spent / count,
        )

    async def fill(self, target: int) -> _Row:
        at, spent = self.next, 0.0
        wall = last = time.perf_counter()
        while self.next < target:
            spent += await self.batch(min(FILL_BATCH, target - self.next))
            now = time.perf_counter()
            if now - last >= PROGRESS_EVERY_S or self.next == target:
                last = now
                done = self.next - at
                eta = (target - self.next) * (now - wall) / done
                _say(
                    f"filled {_n(self.next)} / {_n(target)} "
                    f"({done / (now - wall):,.0f} entries/s with leaf building, ETA {eta:.0f} s)"
                )
        count = target - at
        return _Row(
            f"fill {_n(at)} → {_n(target)}, batches of {_n(FILL_BATCH)}",
            f"{_n(count)} in {_n(-(-count // FILL_BATCH))} tx",
            spent,
            _rate(count, spent),
            spent / count,
        )


async def _measure_db(dsn: str, plan: _Plan) -> _DbResult:
    result = _DbResult()
    _say("migrating")
    await migrate(dsn)
    pool = await create_pool(dsn, min_size=2, max_size=4)
    try:
        result.server_version = await pool.fetchval("SHOW server_version")
        result.durability = ", ".join(
            [
                f"{s}={await pool.fetchval(f'SHOW {s}')}"
                for s in ("fsync", "synchronous_commit", "shared_buffers")
            ]
        )
        n = plan.entries
        appender = _Appender(pool)
        _say(f"seeding {_n(plan.seed)} entries")
        await appender.fill(plan.seed)
        _say("measuring appends")
        rows = result.rows
        rows.append(await appender.row(plan.singles, 1))
        rows.append(await appender.row(plan.hundreds, 100))
        rows.append(await appender.row(plan.thousands, 1_000))
        tail = plan.tail_singles + 1_000 * plan.tail_thousands
        _say(f"filling to {_n(n - tail)}")
        rows.append(await appender.fill(n - tail))
        _say("measuring appends on the full log")
        rows.append(await appender.row(plan.tail_singles, 1))
        rows.append(await appender.row(plan.tail_thousands, 1_000))
        assert appender.next == n

        _say("signing a checkpoint")
        key = Ed25519PrivateKey.generate()
        start = time.perf_counter()
        stored = await Checkpointer(pool, origin=ORIGIN, private_key=key).checkpoint()
        took = time.perf_counter() - start
        if stored is None or stored.tree_size != n:
            raise RuntimeError(f"the checkpoint is not of size {n}: {stored}")
        rows.append(_Row(f"Checkpointer.checkpoint at {_n(n)}", "1", took, _dur(took), took))

        audit_log = AuditLog()
        start = time.perf_counter()
        result.root = await audit_log.root(pool, n)
        took = time.perf_counter() - start
        if result.root != stored.root_hash:
            raise RuntimeError("AuditLog.root differs from the signed checkpoint")
        rows.append(_Row(f"AuditLog.root at {_n(n)}", "1", took, _dur(took), took))

        _say(f"{_n(plan.proofs)} inclusion proofs")
        rng = random.Random(n)
        latencies: list[float] = []
        for k in range(plan.proofs):
            index = rng.randrange(n)
            start = time.perf_counter()
            proof = await audit_log.inclusion_proof(pool, index, n)
            latencies.append(time.perf_counter() - start)
            if k < plan.checked_proofs:
                verify_inclusion(leaf_hash(_record(index).leaf), index, n, proof, result.root)
        cuts = statistics.quantiles(latencies, n=100, method="inclusive")
        count = f"{_n(plan.proofs)} random ({plan.checked_proofs} verified)"
        for name, value in (("p50", cuts[49]), ("p99", cuts[98])):
            rows.append(
                _Row(
                    f"AuditLog.inclusion_proof at {_n(n)}, {name}",
                    count,
                    sum(latencies),
                    f"{name} {_dur(value)}",
                    value,
                )
            )

        _say("verify_log")
        start = time.perf_counter()
        report = await verify_log(pool, log_key=key.public_key(), origin=ORIGIN)
        took = time.perf_counter() - start
        if not report.ok or report.entries != n or report.checkpoints != 1:
            raise RuntimeError(f"verify_log: {report.line()}")
        rows.append(
            _Row(f"verify_log at {_n(n)} (1 checkpoint)", _n(n), took, _rate(n, took), took / n)
        )

        sizes = await pool.fetchrow(
            """SELECT pg_database_size(current_database()) AS db,
                      pg_total_relation_size('audit_entries') AS entries,
                      pg_total_relation_size('audit_nodes') AS nodes"""
        )
        result.database_bytes = sizes["db"]
        result.entries_bytes = sizes["entries"]
        result.nodes_bytes = sizes["nodes"]
    finally:
        pool.terminate()
    return result


# --- the yardstick ----------------------------------------------------------------------------


def _raw_hashlib(n: int) -> tuple[_Row, int]:
    """sha256(0x00 || leaf) of every leaf, built in chunks; the row and the bytes hashed."""
    spent, total = 0.0, 0
    sha256 = hashlib.sha256
    for start in range(0, n, HASH_CHUNK):
        leaves = _leaves(start, min(HASH_CHUNK, n - start))
        total += sum(map(len, leaves))
        began = time.perf_counter()
        for leaf in leaves:
            sha256(b"\x00" + leaf).digest()
        spent += time.perf_counter() - began
    row = _Row("raw hashlib.sha256(0x00 ‖ leaf)", _n(n), spent, _rate(n, spent), spent / n)
    return row, total


def _root_in_memory(n: int, db_root: bytes) -> _Row:
    """merkle.root_hash over all the leaves at once, checked against the database's root."""
    leaves = _leaves(0, n)
    start = time.perf_counter()
    root = root_hash(leaves)
    took = time.perf_counter() - start
    if root != db_root:
        raise RuntimeError("the root computed in memory differs from the database's")
    return _Row(
        "merkle.root_hash in memory (leaf + node hashes)", _n(n), took, _rate(n, took), took / n
    )


# --- entry point ------------------------------------------------------------------------------


def _plan(argv: Sequence[str] | None) -> tuple[_Plan | None, int]:
    """The million-entry plan (None with --witness-only) and the before/after pairs."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, help="log size (default 1,000,000; 20,000 quick)")
    parser.add_argument("--quick", action="store_true", help="a smoke run of 20,000 entries")
    parser.add_argument(
        "--witness-only", action="store_true", help="only the witness work's figures"
    )
    parser.add_argument("--pairs", type=int, default=3, help="before/after append pairs")
    args = parser.parse_args(argv)
    if args.pairs < 1:
        parser.error("--pairs must be at least 1")
    base = _QUICK if args.quick else _FULL
    plan = base if args.entries is None else dataclasses.replace(base, entries=args.entries)
    if plan.entries <= plan.fixed:
        parser.error(f"--entries must be above {plan.fixed:,} for these measurements")
    return (None if args.witness_only else plan), args.pairs


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark and print its tables."""
    plan, pairs = _plan(argv)
    # The library logs through structlog; keep stdout for the table.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    began = time.perf_counter()
    admin = local_database_url(say=_say)
    if plan is not None:
        _million(admin, plan, began)
    print()
    print(f"Python {sys.version.split()[0]}; {os.cpu_count()} CPUs")
    print("\n".join(witness_report(admin, pairs=pairs)))
    _say(f"whole run {time.perf_counter() - began:,.0f} s")


def _million(admin: str, plan: _Plan, began: float) -> None:
    with scratch_database(admin, "casebus_bench_audit", _say) as dsn:
        db = asyncio.run(_measure_db(dsn, plan))
    n = plan.entries
    _say("yardstick: raw hashlib")
    raw, leaf_bytes = _raw_hashlib(n)
    _say("yardstick: merkle.root_hash in memory")
    rows = [*db.rows, raw, _root_in_memory(n, db.root)]
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"N = {_n(n)} entries, leaves of {leaf_bytes / n:.0f} bytes on average; "
        f"PostgreSQL {db.server_version} ({db.durability}); "
        f"Python {sys.version.split()[0]}; {os.cpu_count()} CPUs"
    )
    print()
    print("\n".join(_table(rows, raw.unit_s)))
    print()
    print(
        f"Database at N: {db.database_bytes / 2**20:,.0f} MiB (audit_entries "
        f"{db.entries_bytes / 2**20:,.0f} MiB, audit_nodes {db.nodes_bytes / 2**20:,.0f} MiB). "
        f"Root {db.root.hex()[:16]}… equal in PostgreSQL, the checkpoint and in memory. "
        f"Peak RSS {peak_mib:,.0f} MiB; whole run {time.perf_counter() - began:,.0f} s."
    )


if __name__ == "__main__":
    main()
