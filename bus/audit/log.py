"""The audit log in PostgreSQL: an append-only Merkle tree with proofs from stored subtrees.

Appends run inside the caller's transaction (the router audits a whole batch atomically) and
hold a transaction-scoped advisory lock, so concurrent appenders (two router replicas) get one
sequence of indexes without gaps; no row is ever updated, so the application role needs only
INSERT and SELECT. Every perfect subtree, leaves included, is stored in ``audit_nodes`` when it
completes, so that a proof or a root at any past size costs O(log n) indexed lookups.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import asyncpg

from bus.audit.merkle import (
    HASH_SIZE,
    CompactRange,
    consistency_proof_from,
    frontier_ranges,
    inclusion_proof_from,
    leaf_hash,
    root_from,
)
from bus.db import Conn, Executor
from bus.errors import CasebusError, EntryNotFoundError

__all__ = [
    "AppendedEntry",
    "AuditLog",
    "AuditRecord",
    "LogEntry",
    "LogTail",
    "StoredCheckpoint",
]

# One fixed key for the append lock; it spells "audit" so it is easy to spot in pg_locks.
_APPEND_LOCK = 0x6175646974

# Lookups of a few keys given as arrays, shaped so that every plan PostgreSQL may cache for
# them is an index lookup per key: a LATERAL subquery with LIMIT is never flattened into a
# join, so it cannot become a hash join over the whole table. The plain join's generic plan,
# made while the table was small, was exactly that (a sequential scan of audit_nodes) and
# made proofs 6x slower on a long-lived connection (deploy/CAPACITY.md §8.5).
_EXISTING: Final = """
SELECT k.message_id, k.event_kind, e.idx
FROM unnest($1::uuid[], $2::text[]) AS k(message_id, event_kind)
CROSS JOIN LATERAL (SELECT idx FROM audit_entries e
                    WHERE e.message_id = k.message_id AND e.event_kind = k.event_kind
                    LIMIT 1) e
"""

_NODES: Final = """
SELECT w.start_idx, w.end_idx, n.hash
FROM unnest($1::bigint[], $2::bigint[]) AS w(start_idx, end_idx)
CROSS JOIN LATERAL (SELECT hash FROM audit_nodes n
                    WHERE n.start_idx = w.start_idx AND n.end_idx = w.end_idx
                    LIMIT 1) n
"""


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One event to append: its kind, the message it is about, and its canonical leaf bytes."""

    event_kind: str
    message_id: uuid.UUID
    case_id: str | None
    leaf: bytes


@dataclass(frozen=True, slots=True)
class LogTail:
    """Where an append left the log inside its transaction: the size and the frontier (the
    right edge's subtree hashes) a later append of the same transaction continues from."""

    size: int
    frontier: CompactRange


@dataclass(frozen=True, slots=True)
class AppendedEntry:
    """Where a record stands in the log; ``new`` is False when it was there already."""

    index: int
    event_kind: str
    message_id: uuid.UUID
    new: bool


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One stored entry."""

    index: int
    leaf: bytes
    leaf_hash: bytes
    event_kind: str
    message_id: uuid.UUID
    case_id: str | None
    recorded_at: datetime


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    """A signed tree head as stored: size, root, time and the signed note text."""

    tree_size: int
    root_hash: bytes
    timestamp_ms: int
    note: str


def _entry(row: asyncpg.Record) -> LogEntry:
    return LogEntry(
        index=row["idx"],
        leaf=bytes(row["leaf"]),
        leaf_hash=bytes(row["leaf_hash"]),
        event_kind=row["event_kind"],
        message_id=row["message_id"],
        case_id=row["case_id"],
        recorded_at=row["recorded_at"],
    )


class _Recorder:
    """A subtree oracle that only records which ranges a computation asks for."""

    def __init__(self) -> None:
        self.wanted: set[tuple[int, int]] = set()

    def __call__(self, start: int, end: int) -> bytes:
        self.wanted.add((start, end))
        return bytes(HASH_SIZE)


class _Nodes:
    """A subtree oracle answering from hashes fetched beforehand."""

    def __init__(self, hashes: dict[tuple[int, int], bytes]) -> None:
        self._hashes = hashes

    def __call__(self, start: int, end: int) -> bytes:
        try:
            return self._hashes[(start, end)]
        except KeyError:
            raise CasebusError(f"audit node [{start}, {end}) is missing from the log") from None


class AuditLog:
    """The audit log of one database."""

    async def append(self, conn: Conn, records: Sequence[AuditRecord]) -> list[AppendedEntry]:
        """Append records in order inside the caller's transaction; idempotent per
        (message id, event kind): a record already in the log keeps its index."""
        out, _ = await self.append_after(conn, records, None)
        return out

    async def append_after(
        self, conn: Conn, records: Sequence[AuditRecord], tail: LogTail | None
    ) -> tuple[list[AppendedEntry], LogTail]:
        """:meth:`append`, and where it left the log. Given the ``tail`` an earlier append of
        the SAME transaction returned, it neither takes the append lock again nor reads the
        log's size and frontier: three round trips of the six an append costs. A tail holds
        only inside the transaction that made it (the lock is held until that ends, so
        nobody appended since); kept past it, it would be wrong, and nothing here could
        tell."""
        if not conn.is_in_transaction():
            raise CasebusError("AuditLog.append must run inside a transaction")
        if tail is None:
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _APPEND_LOCK)
        existing: dict[tuple[uuid.UUID, str], int] = {}
        if records:
            rows = await conn.fetch(
                _EXISTING,
                [r.message_id for r in records],
                [r.event_kind for r in records],
            )
            existing = {(r["message_id"], r["event_kind"]): r["idx"] for r in rows}
        if tail is None:
            size = await self._size(conn)
            frontier = await self._frontier(conn, size)
        else:
            size, frontier = tail.size, tail.frontier
        out: list[AppendedEntry] = []
        fresh: list[AuditRecord] = []
        for r in records:
            key = (r.message_id, r.event_kind)
            if key in existing:
                out.append(AppendedEntry(existing[key], r.event_kind, r.message_id, False))
                continue
            existing[key] = size + len(fresh)
            out.append(AppendedEntry(existing[key], r.event_kind, r.message_id, True))
            fresh.append(r)
        if not fresh:
            return out, LogTail(size, frontier)
        hashes = [leaf_hash(r.leaf) for r in fresh]
        extended, nodes = frontier.extend_with_nodes(hashes)
        await conn.execute(  # the leaves and the subtrees they complete: one round trip
            """WITH entries AS (
                   INSERT INTO audit_entries (idx, leaf, leaf_hash, event_kind, message_id,
                                              case_id)
                   SELECT * FROM unnest($1::bigint[], $2::bytea[], $3::bytea[], $4::text[],
                                        $5::uuid[], $6::text[])
               )
               INSERT INTO audit_nodes (start_idx, end_idx, hash)
               SELECT * FROM unnest($7::bigint[], $8::bigint[], $9::bytea[])""",
            list(range(size, size + len(fresh))),
            [r.leaf for r in fresh],
            hashes,
            [r.event_kind for r in fresh],
            [r.message_id for r in fresh],
            [r.case_id for r in fresh],
            [n.start for n in nodes],
            [n.end for n in nodes],
            [n.hash for n in nodes],
        )
        return out, LogTail(extended.size, extended)

    @staticmethod
    async def _size(db: Executor) -> int:
        value = await db.fetchval("SELECT coalesce(max(idx) + 1, 0) FROM audit_entries")
        return int(value)

    async def size(self, db: Executor) -> int:
        """The number of entries appended and committed."""
        return await self._size(db)

    async def _fetch_nodes(
        self, db: Executor, ranges: Iterable[tuple[int, int]]
    ) -> dict[tuple[int, int], bytes]:
        wanted = sorted(set(ranges))
        if not wanted:
            return {}
        rows = await db.fetch(
            _NODES,
            [s for s, _ in wanted],
            [e for _, e in wanted],
        )
        return {(r["start_idx"], r["end_idx"]): bytes(r["hash"]) for r in rows}

    async def _frontier(self, db: Executor, size: int) -> CompactRange:
        nodes = _Nodes(await self._fetch_nodes(db, frontier_ranges(size)))
        return CompactRange.from_subtree(nodes, size)

    async def root(self, db: Executor, size: int) -> bytes:
        """The root hash of the first ``size`` entries."""
        recorder = _Recorder()
        root_from(recorder, size)
        return root_from(_Nodes(await self._fetch_nodes(db, recorder.wanted)), size)

    async def inclusion_proof(self, db: Executor, index: int, size: int) -> list[bytes]:
        """The inclusion proof of entry ``index`` in the tree of ``size`` entries."""
        recorder = _Recorder()
        inclusion_proof_from(recorder, index, size)
        nodes = _Nodes(await self._fetch_nodes(db, recorder.wanted))
        return inclusion_proof_from(nodes, index, size)

    async def consistency_proof(self, db: Executor, old_size: int, new_size: int) -> list[bytes]:
        """The consistency proof from the tree of ``old_size`` entries to ``new_size``."""
        recorder = _Recorder()
        consistency_proof_from(recorder, old_size, new_size)
        nodes = _Nodes(await self._fetch_nodes(db, recorder.wanted))
        return consistency_proof_from(nodes, old_size, new_size)

    async def entry(
        self, db: Executor, message_id: uuid.UUID, event_kind: str | None = None
    ) -> LogEntry:
        """The entry of a message (its first event when ``event_kind`` is None)."""
        row = await db.fetchrow(
            """SELECT * FROM audit_entries WHERE message_id = $1
                 AND ($2::text IS NULL OR event_kind = $2) ORDER BY idx LIMIT 1""",
            message_id,
            event_kind,
        )
        if row is None:
            what = f" ({event_kind})" if event_kind else ""
            raise EntryNotFoundError(f"no audit entry for message {message_id}{what}")
        return _entry(row)

    async def entries_of_case(self, db: Executor, case_id: str) -> list[LogEntry]:
        """Every entry about one case, in log order."""
        rows = await db.fetch(
            "SELECT * FROM audit_entries WHERE case_id = $1 ORDER BY idx", case_id
        )
        return [_entry(r) for r in rows]

    async def entries(self, db: Executor, start: int, end: int) -> list[LogEntry]:
        """Entries ``[start, end)`` in index order."""
        rows = await db.fetch(
            "SELECT * FROM audit_entries WHERE idx >= $1 AND idx < $2 ORDER BY idx", start, end
        )
        return [_entry(r) for r in rows]

    # -- checkpoints ---------------------------------------------------------------------------

    async def store_checkpoint(self, db: Executor, checkpoint: StoredCheckpoint) -> bool:
        """Keep a signed checkpoint; False when one of that size was already stored."""
        status = await db.execute(
            """INSERT INTO audit_checkpoints (tree_size, root_hash, timestamp_ms, note)
               VALUES ($1, $2, $3, $4) ON CONFLICT (tree_size) DO NOTHING""",
            checkpoint.tree_size,
            checkpoint.root_hash,
            checkpoint.timestamp_ms,
            checkpoint.note,
        )
        return bool(status == "INSERT 0 1")

    async def checkpoint(self, db: Executor, size: int | None = None) -> StoredCheckpoint | None:
        """The checkpoint of that size, or the latest one when ``size`` is None."""
        if size is None:
            row = await db.fetchrow(
                "SELECT * FROM audit_checkpoints ORDER BY tree_size DESC LIMIT 1"
            )
        else:
            row = await db.fetchrow("SELECT * FROM audit_checkpoints WHERE tree_size = $1", size)
        return _checkpoint(row) if row is not None else None

    async def checkpoint_covering(self, db: Executor, index: int) -> StoredCheckpoint | None:
        """The latest checkpoint that includes entry ``index``."""
        row = await db.fetchrow(
            """SELECT * FROM audit_checkpoints WHERE tree_size > $1
               ORDER BY tree_size DESC LIMIT 1""",
            index,
        )
        return _checkpoint(row) if row is not None else None

    async def checkpoints(self, db: Executor) -> list[StoredCheckpoint]:
        """Every stored checkpoint, smallest first."""
        rows = await db.fetch("SELECT * FROM audit_checkpoints ORDER BY tree_size")
        return [_checkpoint(r) for r in rows]


def _checkpoint(row: asyncpg.Record) -> StoredCheckpoint:
    return StoredCheckpoint(
        tree_size=row["tree_size"],
        root_hash=bytes(row["root_hash"]),
        timestamp_ms=row["timestamp_ms"],
        note=row["note"],
    )
