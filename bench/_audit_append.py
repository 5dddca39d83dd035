"""The audit log's append loop, runnable against any checkout: bench/audit.py's before/after row.

``python bench/_audit_append.py DSN`` with ``PYTHONPATH`` naming a checkout's root migrates the
(empty) database ``DSN`` with that checkout's migrations, seeds it, and prints one JSON line
naming the ``bus`` package it runs. Then, for each line ``<transactions> <entries each>`` read
from stdin, it appends that many batches with its ``AuditLog`` (the same leaves any other
checkout would append at that point) and prints the seconds their transactions took. The bench
drives two of these, one per checkout, turn about, so the load of a shared machine falls on
both alike. It imports nothing an older checkout might lack (``message_leaf``, ``AuditLog``,
``migrate``, ``create_pool``), so the witness work is timed against the commit before it
in one run, on one machine.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import structlog

import bus
from bus.audit.events import message_leaf
from bus.audit.log import AuditLog, AuditRecord
from bus.db import create_pool, migrate

__all__ = ["ROWS", "record"]

# With the JSON around it, a 330-byte stand-in envelope makes a leaf of about 600 bytes.
_ENVELOPE = random.Random(0x6175646974).randbytes(330)
_T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
SEED = 2_000
ROWS = ((40, 1), (8, 10), (3, 100))
"""One turn: (transactions, entries each). One entry per transaction is what a quiet router
does; a hundred, a router draining a backlog."""


def record(i: int) -> AuditRecord:
    """The ``accepted`` event of message ``i``: random-looking ids, a few events per case."""
    digest = hashlib.sha256(i.to_bytes(8, "big")).digest()
    message_id = uuid.UUID(bytes=digest[:16], version=4)
    case_id = f"穗市监罚〔2025〕{i // 4}号"
    leaf = message_leaf(
        "accepted",
        message_id=message_id,
        case_id=case_id,
        at=_T0 + timedelta(milliseconds=i),
        value=digest + _ENVELOPE[len(digest) :],
    )
    return AuditRecord("accepted", message_id, case_id, leaf)


async def _run(dsn: str) -> None:
    await migrate(dsn)
    pool = await create_pool(dsn, min_size=1, max_size=2)
    audit_log = AuditLog()
    at = 0

    async def batch(count: int) -> float:
        nonlocal at
        records = [record(i) for i in range(at, at + count)]
        start = time.perf_counter()
        async with pool.acquire() as conn, conn.transaction():
            appended = await audit_log.append(conn, records)
        took = time.perf_counter() - start
        if appended[0].index != at:
            raise RuntimeError(f"batch at {at} landed at {appended[0].index}")
        at += count
        return took

    loop = asyncio.get_running_loop()
    try:
        for _ in range(SEED // 100):
            await batch(100)
        print(json.dumps({"bus": bus.__file__}), flush=True)
        while line := (await loop.run_in_executor(None, sys.stdin.readline)).strip():
            transactions, size = map(int, line.split())
            print(sum([await batch(size) for _ in range(transactions)]), flush=True)
    finally:
        await pool.close()


if __name__ == "__main__":
    # Stdout carries the one result line; the library's logs go to stderr.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    asyncio.run(_run(sys.argv[1]))
