"""Where a witness keeps the latest checkpoint it cosigned for each log: a port and two stores.

The witness's whole safety rests on this record, so it lives apart from the bus's database
(whose owner is the party the witness guards against): a SQLite file the witness alone opens.
:meth:`WitnessStore.advance` is the one write, and it is atomic: the latest state is read, the
caller's pure decision is taken on it, and the new state is written, all under SQLite's write
lock (``BEGIN IMMEDIATE``), so two requests (or two witness processes on one file) never
interleave between the check and the write. ``synchronous=FULL`` makes the commit durable
before the witness answers, as the spec requires.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from bus.witness.protocol import Answer, LogState

__all__ = ["Decision", "MemoryWitnessStore", "SqliteWitnessStore", "WitnessStore"]

Decision = Callable[[LogState | None], Answer | None]
"""Given the latest state (None: never cosigned), None to accept the new state or a refusal."""


class WitnessStore(Protocol):
    """The latest cosigned checkpoint per origin."""

    async def latest(self, origin: str) -> LogState | None:
        """The latest cosigned state of ``origin``, or None."""
        ...

    async def advance(self, origin: str, new: LogState, decide: Decision) -> Answer | None:
        """Atomically: run ``decide`` on the latest state and, if it returns None, make ``new``
        the latest state. Returns what ``decide`` returned."""
        ...


class MemoryWitnessStore:
    """In memory, for tests of the witness's decisions; forgets everything on exit."""

    def __init__(self) -> None:
        self._states: dict[str, LogState] = {}
        self._lock = asyncio.Lock()

    async def latest(self, origin: str) -> LogState | None:
        """The latest cosigned state of ``origin``, or None."""
        return self._states.get(origin)

    async def advance(self, origin: str, new: LogState, decide: Decision) -> Answer | None:
        """See :meth:`WitnessStore.advance`."""
        async with self._lock:
            refusal = decide(self._states.get(origin))
            if refusal is None:
                self._states[origin] = new
            return refusal


_SCHEMA = """
CREATE TABLE IF NOT EXISTS witness_logs (
    origin     TEXT PRIMARY KEY,
    size       INTEGER NOT NULL CHECK (size >= 0),
    root_hash  BLOB NOT NULL CHECK (length(root_hash) = 32),
    note       TEXT NOT NULL,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
)
"""


class SqliteWitnessStore:
    """A SQLite file; each call opens its own connection in a worker thread."""

    def __init__(self, path: Path, *, busy_timeout_s: float = 10.0) -> None:
        self._path = path
        self._timeout_s = busy_timeout_s
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: we issue BEGIN IMMEDIATE ourselves, so the write lock is taken
        # before the read that the decision depends on.
        conn = sqlite3.connect(self._path, timeout=self._timeout_s, isolation_level=None)
        conn.execute("PRAGMA synchronous=FULL")
        return conn

    @staticmethod
    def _row(row: tuple[int, bytes, str] | None) -> LogState | None:
        return None if row is None else LogState(int(row[0]), bytes(row[1]), str(row[2]))

    def _latest(self, origin: str) -> LogState | None:
        conn = self._connect()
        try:
            row = conn.execute(
                "SELECT size, root_hash, note FROM witness_logs WHERE origin = ?", (origin,)
            ).fetchone()
            return self._row(row)
        finally:
            conn.close()

    def _advance(self, origin: str, new: LogState, decide: Decision) -> Answer | None:
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = conn.execute(
                    "SELECT size, root_hash, note FROM witness_logs WHERE origin = ?", (origin,)
                ).fetchone()
                refusal = decide(self._row(row))
                if refusal is None:
                    conn.execute(
                        "INSERT INTO witness_logs (origin, size, root_hash, note) "
                        "VALUES (?, ?, ?, ?) ON CONFLICT (origin) DO UPDATE SET "
                        "size = excluded.size, root_hash = excluded.root_hash, "
                        "note = excluded.note, "
                        "updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
                        (origin, new.size, new.root_hash, new.note),
                    )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return refusal
        finally:
            conn.close()

    async def latest(self, origin: str) -> LogState | None:
        """The latest cosigned state of ``origin``, or None."""
        return await asyncio.to_thread(self._latest, origin)

    async def advance(self, origin: str, new: LogState, decide: Decision) -> Answer | None:
        """See :meth:`WitnessStore.advance`."""
        return await asyncio.to_thread(self._advance, origin, new, decide)
