"""The witness work's own figures for bench/audit.py: what it cost the append path, how
fast the tiles serve, and how long a checkpoint waits for its cosignatures.

Machines differ threefold, so every figure here is a pair measured in this run or a ratio:

- appends before and after: the same loop (``_audit_append.py``) in two processes, one on the
  commit before the witness work (``BEFORE``, unpacked with ``git archive``), one on this
  checkout, each on a fresh database migrated by its own checkout, appending turn about in
  small turns (a single run each, one after the other, moved by 0.5-1.7x with the machine's
  other load; turns about share that load out evenly);
- tile serving: a real uvicorn process serving the procuratorate adapter's ``tiles_router`` (as
  ``adapters/procuratorate/app.py`` mounts it, with and without a 2-of-2 witness policy) next
  to a route that does nothing, in the same server, so the ratio is the tiles' own cost;
- publication latency: two real ``casebus witness serve`` processes; from a checkpoint signed
  to the policy's quorum of cosignatures checked and stored (``WitnessPolicy.cosigned``), with
  one and with two witnesses, next to the time the signing itself took.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
from _audit_append import ROWS, record
from _common import admin_sql, markdown_table, say, with_db
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bus.audit.checkpoint import verifier_key_string
from bus.audit.checkpointer import Checkpointer
from bus.audit.cosignature import cosigner_vkey
from bus.audit.log import AuditLog
from bus.audit.witnessing import WitnessEndpoint, WitnessPolicy
from bus.db import create_pool, migrate
from bus.settings import REPO_ROOT
from bus.signing import write_keypair

__all__ = ["BEFORE", "witness_report"]

BEFORE = "a2529ca"
"""The last commit before the witness work began."""
ORIGIN = "bench.casebus/audit"
HERE = Path(__file__).resolve().parent
TILE_LOG = 20_000  # entries: 78 full level-0 tiles and a partial level-1 tile
TURNS = 20  # turns about, before and after, in each pair
PUBLISH_ROUNDS = 40  # checkpoints per witness count
TILE_SECONDS = 6.0  # per kind of request, in all
TILE_TURNS = 12
TILE_CLIENTS = 8


def _say(text: str) -> None:
    say("audit", text)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def _scratch_db(admin: str, what: str) -> AsyncIterator[str]:
    name = f"casebus_bench_{what}_{uuid.uuid4().hex[:8]}"
    await admin_sql(admin, f'CREATE DATABASE "{name}"')
    try:
        yield with_db(admin, name)
    finally:
        await admin_sql(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms"


# --- appends before and after -----------------------------------------------------------------


@contextlib.contextmanager
def _checkout(commit: str) -> Iterator[Path]:
    """``commit``'s tree (its ``bus`` package and migrations) in a temporary folder."""
    with tempfile.TemporaryDirectory(prefix=f"casebus-{commit}-") as tmp:
        archive = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "archive", commit, "bus", "schemas", "deploy"],
            check=True,
            capture_output=True,
            timeout=120,
        ).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(tmp, filter="data")
        yield Path(tmp)


class _Appender:
    """One ``_audit_append.py`` process: a checkout's ``AuditLog`` on a database of its own."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self._proc = proc

    @classmethod
    async def start(cls, dsn: str, root: Path) -> _Appender:
        proc = await asyncio.create_subprocess_exec(
            *(sys.executable, str(HERE / "_audit_append.py"), dsn),
            env={**os.environ, "PYTHONPATH": str(root)},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self = cls(proc)
        ready = json.loads(await self._line())
        if not str(ready["bus"]).startswith(str(root)):
            raise RuntimeError(f"{root}'s run imported {ready['bus']}, not its own bus package")
        return self

    async def _line(self) -> str:
        assert self._proc.stdout is not None
        line = await self._proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the append loop stopped ({await self._proc.wait()})")
        return line.decode()

    async def turn(self, transactions: int, size: int) -> float:
        """Seconds the transactions of ``transactions`` batches of ``size`` took."""
        assert self._proc.stdin is not None
        self._proc.stdin.write(f"{transactions} {size}\n".encode())
        await self._proc.stdin.drain()
        return float(await self._line())

    async def stop(self) -> None:
        assert self._proc.stdin is not None
        self._proc.stdin.close()
        await self._proc.wait()


async def _before_after(admin: str, pairs: int) -> list[list[str]]:
    """``pairs`` pairs, each ``TURNS`` turns about of every row of ``ROWS``."""
    rows: list[list[str]] = []
    ratios: list[list[float]] = [[] for _ in ROWS]
    with _checkout(BEFORE) as before:
        for pair in range(pairs):
            _say(f"appends, pair {pair + 1}/{pairs}: {TURNS} turns each, before and after")
            async with (
                _scratch_db(admin, "before") as before_dsn,
                _scratch_db(admin, "after") as after_dsn,
            ):
                sides = {
                    "before": await _Appender.start(before_dsn, before),
                    "after": await _Appender.start(after_dsn, REPO_ROOT),
                }
                spent = {label: [0.0] * len(ROWS) for label in sides}
                try:
                    for turn in range(TURNS):
                        for i, (transactions, size) in enumerate(ROWS):
                            # Who goes first alternates, so neither always meets a warm cache.
                            order = ["before", "after"] if turn % 2 == 0 else ["after", "before"]
                            for label in order:
                                spent[label][i] += await sides[label].turn(transactions, size)
                finally:
                    for side in sides.values():
                        await side.stop()
            for i, (transactions, size) in enumerate(ROWS):
                entries = TURNS * transactions * size
                b, a = entries / spent["before"][i], entries / spent["after"][i]
                ratios[i].append(a / b)
                rows.append(
                    [
                        f"append, {size} per tx, pair {pair + 1}",
                        f"{entries:,} in {TURNS * transactions} tx",
                        f"{b:,.0f} entries/s",
                        f"{a:,.0f} entries/s",
                        f"{a / b:.2f}",
                    ]
                )
    for i, (_, size) in enumerate(ROWS):
        median = statistics.median(ratios[i])
        label = f"append, {size} per tx, median of {pairs} pairs"
        rows.append([label, "", "", "", f"{median:.2f}"])
    return rows


# --- publication latency ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _WitnessProc:
    proc: subprocess.Popen[bytes]
    endpoint: WitnessEndpoint


@contextlib.contextmanager
def _witnesses(tmp: Path, log_vkey: str, count: int) -> Iterator[list[_WitnessProc]]:
    """``count`` ``casebus witness serve`` processes, each with its own key and SQLite file."""
    exe = Path(sys.executable).parent / "casebus"
    procs: list[_WitnessProc] = []
    try:
        for i in range(count):
            name = f"bench.party{i + 1}/witness"
            keys = write_keypair(f"bench.party{i + 1}.witness", tmp / f"w{i}")
            port = _free_port()
            proc = subprocess.Popen(
                [
                    *(str(exe), "witness", "serve", "--name", name),
                    *("--key-file", str(keys.private_key), "--log", log_vkey),
                    *("--db", str(tmp / f"w{i}.sqlite"), "--port", str(port)),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            vkey = subprocess.run(
                [str(exe), "witness", "vkey", "--name", name, "--key-file", str(keys.private_key)],
                check=True,
                capture_output=True,
                text=True,
                timeout=60,
            ).stdout.strip()
            url = f"http://127.0.0.1:{port}"
            procs.append(_WitnessProc(proc, WitnessEndpoint.parse(f"{url}={vkey}")))
            deadline = time.monotonic() + 30
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                        break
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"witness {name} did not start")
                time.sleep(0.1)
        yield procs
    finally:
        for p in procs:
            p.proc.terminate()
        for p in procs:
            p.proc.wait(timeout=10)


async def _grow(pool: asyncpg.Pool, at: int, count: int) -> int:
    async with pool.acquire() as conn, conn.transaction():
        await AuditLog().append(conn, [record(i) for i in range(at, at + count)])
    return at + count


async def _publication(
    pool: asyncpg.Pool, tmp: Path, key: Ed25519PrivateKey
) -> tuple[list[list[str]], str]:
    """The latency rows, and the witnesses as CASEBUS_AUDIT_WITNESSES would name them."""
    at = 0
    for _ in range(TILE_LOG // 1_000):
        at = await _grow(pool, at, 1_000)
    log_vkey = verifier_key_string(ORIGIN, key.public_key())
    checkpointer = Checkpointer(pool, origin=ORIGIN, private_key=key)
    signing: list[float] = []
    waits: dict[int, list[float]] = {1: [], 2: []}
    with _witnesses(tmp, log_vkey, 2) as procs:
        endpoints = tuple(p.endpoint for p in procs)
        spec = " ".join(f"{e.url}={cosigner_vkey(e.key.name, e.key.public_key)}" for e in endpoints)
        policies = {k: WitnessPolicy(endpoints[:k], quorum=k) for k in waits}
        async with httpx.AsyncClient(timeout=10.0) as http:
            for k in (2, 1):  # one warm-up each: connections, the witnesses' first state
                at = await _grow(pool, at, 10)
                cp = await checkpointer.checkpoint()
                assert cp is not None
                if await policies[k].cosigned(pool, cp, http=http) is None:
                    raise RuntimeError(f"the {k} witness(es) did not cosign")
            _say(f"publication latency: {PUBLISH_ROUNDS} checkpoints with 1 and with 2 witnesses")
            for i in range(2 * PUBLISH_ROUNDS):
                k = 1 + i % 2
                at = await _grow(pool, at, 10)
                start = time.perf_counter()
                cp = await checkpointer.checkpoint()
                signed = time.perf_counter()
                assert cp is not None
                note = await policies[k].cosigned(pool, cp, http=http)
                done = time.perf_counter()
                if note is None:
                    raise RuntimeError(f"checkpoint {cp.tree_size}: no quorum of {k}")
                signing.append(signed - start)
                waits[k].append(done - signed)
    sign = statistics.median(signing)
    rows = [
        [
            "Checkpointer.checkpoint (the yardstick)",
            f"{len(signing)}",
            f"p50 {_ms(sign)}",
            f"p99 {_ms(statistics.quantiles(signing, n=100)[98])}",
            "1.0",
        ]
    ]
    for k, got in waits.items():
        p50 = statistics.median(got)
        rows.append(
            [
                f"signed → quorum stored, {k} of {k} witness{'es' if k > 1 else ''}",
                f"{len(got)}",
                f"p50 {_ms(p50)}",
                f"p99 {_ms(statistics.quantiles(got, n=100)[98])}",
                f"{p50 / sign:.1f}",
            ]
        )
    two, one = statistics.median(waits[2]), statistics.median(waits[1])
    rows.append(["2 witnesses / 1 witness, p50", "", "", "", f"{two / one:.2f}"])
    return rows, spec


# --- tile serving -----------------------------------------------------------------------------


def _serve_tiles(dsn: str, port: int, witnesses: str) -> None:
    """The server side (a process of its own): the procuratorate's tiles router, as its app
    mounts it, under a 2-of-2 witness policy at /v1/tlog and without one at /plain/tlog."""
    import uvicorn
    from fastapi import FastAPI

    from bus.audit.tiles_http import tiles_router

    pool: asyncpg.Pool | None = None

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        nonlocal pool
        pool = await create_pool(dsn, min_size=2, max_size=4)
        yield
        await pool.close()

    def get_pool() -> asyncpg.Pool:
        assert pool is not None
        return pool

    async def anyone() -> None:
        return None

    app = FastAPI(lifespan=lifespan)
    policy = WitnessPolicy.parse(witnesses, 2)
    app.include_router(tiles_router(get_pool, entry_reader=anyone, policy=policy))
    app.include_router(tiles_router(get_pool, entry_reader=anyone, prefix="/plain/tlog"))

    @app.get("/nothing")
    async def nothing() -> dict[str, bool]:
        return {"ok": True}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


async def _load(http: httpx.AsyncClient, paths: list[str], seconds: float) -> tuple[int, float]:
    """Requests answered, and the seconds it took, of ``TILE_CLIENTS`` clients fetching
    ``paths`` for ``seconds``."""
    done = 0
    stop = time.perf_counter() + seconds

    async def client(http: httpx.AsyncClient, seed: int) -> None:
        nonlocal done
        rng = random.Random(seed)
        while time.perf_counter() < stop:
            r = await http.get(rng.choice(paths))
            if r.status_code != 200:
                raise RuntimeError(f"{r.request.url}: {r.status_code} {r.text[:200]}")
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(client(http, s) for s in range(TILE_CLIENTS)))
    return done, time.perf_counter() - start


def _paths(prefix: str, tiles: int) -> list[str]:
    return [f"{prefix}/{n:03d}" for n in range(tiles)]  # every N here is under 1000


async def _tiles(dsn: str, witnesses: str, size: int) -> list[list[str]]:
    port = _free_port()
    server = await asyncio.create_subprocess_exec(
        *(sys.executable, __file__, "serve-tiles", dsn, str(port), witnesses),
        stdout=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=url) as http:
            for _ in range(300):
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get("/nothing")).status_code == 200:
                        break
                await asyncio.sleep(0.1)
        full = size // 256
        level1 = f"/tile/1/000.p/{full}"
        kinds = [
            ("a route that does nothing (the yardstick)", ["/nothing"]),
            ("/v1/tlog/checkpoint (cosigned note)", ["/v1/tlog/checkpoint"]),
            (
                "/v1/tlog/tile/0/N, full, random N",
                [f"/v1/tlog/tile/0/{n:03d}" for n in range(full)],
            ),
            (f"/v1/tlog{level1} (partial level 1)", [f"/v1/tlog{level1}"]),
            (
                "/v1/tlog/tile/entries/N, random N",
                [f"/v1/tlog/tile/entries/{n:03d}" for n in range(full)],
            ),
            (
                "same level-0 tiles, no witness policy",
                [f"/plain/tlog/tile/0/{n:03d}" for n in range(full)],
            ),
        ]
        # Every kind gets TILE_SECONDS in all, in turns about, so the machine's other load
        # falls on each alike.
        done = [0] * len(kinds)
        spent = [0.0] * len(kinds)
        _say(f"tiles: {len(kinds)} kinds of request, {TILE_TURNS} turns each")
        limits = httpx.Limits(max_connections=TILE_CLIENTS)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=10.0) as http:
            for _ in range(TILE_TURNS):
                for i, (_, paths) in enumerate(kinds):
                    n, took = await _load(http, paths, TILE_SECONDS / TILE_TURNS)
                    done[i] += n
                    spent[i] += took
        rates = [n / t for n, t in zip(done, spent, strict=True)]
        return [
            [what, f"{rate:,.0f} req/s", f"{rate / rates[0]:.2f}"]
            for (what, _), rate in zip(kinds, rates, strict=True)
        ]
    finally:
        server.terminate()
        await asyncio.wait_for(server.wait(), 10)


# --- the report -------------------------------------------------------------------------------


async def _measure(
    admin: str, pairs: int
) -> tuple[list[list[str]], list[list[str]], list[list[str]]]:
    appends = await _before_after(admin, pairs)
    key = Ed25519PrivateKey.generate()
    async with _scratch_db(admin, "witness") as dsn:
        await migrate(dsn)
        pool = await create_pool(dsn, min_size=2, max_size=4)
        try:
            with tempfile.TemporaryDirectory(prefix="casebus-bench-witness-") as tmp:
                _say("publication latency: seeding the log")
                publication, witnesses = await _publication(pool, Path(tmp), key)
            # The tiles serve up to the latest checkpoint both witnesses cosigned.
            size = int(
                await pool.fetchval(
                    "SELECT max(tree_size) FROM (SELECT tree_size FROM audit_cosignatures "
                    "GROUP BY tree_size HAVING count(*) = 2) q"
                )
            )
        finally:
            await pool.close()
        tiles = await _tiles(dsn, witnesses, size)
    return appends, tiles, publication


def witness_report(admin: str, *, pairs: int) -> list[str]:
    """The witness work's tables, as printed lines."""
    load = os.getloadavg()[0]
    appends, tiles, publication = asyncio.run(_measure(admin, pairs))
    out = [
        # Other work on the machine moves single runs; the pairs and the ratios are for that.
        f"Load average (1 min) {load:.1f} before these runs, {os.getloadavg()[0]:.1f} after.",
        "",
        f"Appends before ({BEFORE}, the commit before the witness work) and after (this "
        f"checkout): {pairs} pairs of fresh databases, each pair {TURNS} turns about of every "
        "row; one process per side appending, as one router replica does:",
        "",
        *markdown_table(("append loop", "entries", "before", "after", "after / before"), appends),
        "",
        "Tile serving: one uvicorn process (the procuratorate adapter's tiles router on the "
        f"log of {TILE_LOG:,}+ entries), {TILE_CLIENTS} concurrent clients in the bench process "
        f"on the same cores, {TILE_SECONDS:.0f} s per row in {TILE_TURNS} turns about:",
        "",
        *markdown_table(("GET", "rate", "vs doing nothing"), tiles),
        "",
        "Checkpoint publication: from signed to a quorum of cosignatures checked and stored, "
        "two real `casebus witness serve` processes (SQLite, synchronous=FULL):",
        "",
        *markdown_table(("step", "checkpoints", "p50", "p99", "vs signing"), publication),
    ]
    return out


if __name__ == "__main__" and sys.argv[1:2] == ["serve-tiles"]:
    _serve_tiles(sys.argv[2], int(sys.argv[3]), sys.argv[4])
