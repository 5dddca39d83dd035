"""The retention sweep: delete the case files whose retention has run out, from PostgreSQL's
records and from the store, and record each deletion.

Why row locks, not a second look. A submission checks that a file is there and then records
its reference; the sweep checks that no young reference exists and then deletes the bytes.
Checked separately, each can pass before the other writes: the submission then refers to a
file that is gone. So both sides take the file's row in ``attachment_files`` (one per file,
whatever store holds the bytes), in the transaction that acts:

- the submission locks it FOR SHARE in the transaction that records its reference
  (:func:`bus.attachments.check_submission`), several submissions at once;
- the sweep locks it FOR UPDATE, reads the references again under the lock, deletes the bytes,
  writes the deletion and the tombstone (``state = 'deleted'``), and only then commits.

Under READ COMMITTED each statement sees what was committed before it began, so: a submission
that locked first commits its reference before the sweep's lock is granted, and the sweep's
fresh look at the references keeps the file; a sweep that locked first commits the tombstone
before the submission's lock is granted, and the submission (whose locking read returns the
row as committed) is refused with ``attachment_deleted``. The sweep takes its lock with SKIP
LOCKED: a file a submission is referring to right now is not due anyway, and the sweep never
waits behind a department. A tombstone alone (mark 'deleting' in one transaction, delete in a
later one) would still need this lock to order the mark against a concurrent reference, and
would leave files half-deleted when the sweep dies between the two; the single transaction
leaves either nothing done or everything. If the bytes are deleted and the commit then fails,
the row still says 'stored' with no bytes behind it: submissions are refused (not stored) and
the next sweep finishes the job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

import asyncpg
import structlog

from bus.attachments._ledger import Deletion, deletion_from_row
from bus.attachments._port import AttachmentStore, StoredAttachment
from bus.attachments._retention import (
    MessageRef,
    RetentionPolicy,
    RetentionVerdict,
    retention_verdict,
)
from bus.db import Conn

__all__ = ["SweepReport", "Swept", "deletions", "due_candidates", "sweep_attachments"]

log = structlog.get_logger("casebus.attachments.sweep")

# Files that may be due: past their upload's grace, and referred to (if at all) longer ago than
# the shortest retention. The decision itself is retention_verdict's, on every reference.
_CANDIDATES = """
SELECT f.sha256 FROM attachment_files f
LEFT JOIN attachment_refs r ON r.sha256 = f.sha256
WHERE f.state = 'stored' AND f.last_uploaded_at <= $1
GROUP BY f.sha256
HAVING max(r.sent_at) IS NULL OR max(r.sent_at) <= $2
ORDER BY f.sha256
"""
_REFS = """
SELECT DISTINCT ON (message_id) message_id, kind, sent_at FROM attachment_refs
WHERE sha256 = $1 ORDER BY message_id, sent_at DESC
"""
_RECORD = """
INSERT INTO attachment_deletions
    (sha256, size_bytes, media_type, rule, retention_days, message_id, message_kind,
     message_sent_at, newest_message_at, references_count, last_uploaded_at, expired_at,
     as_of, operator)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
RETURNING *
"""


@dataclass(frozen=True, slots=True)
class Swept:
    """A file the sweep deleted, or on a dry run would delete: its deletion record when made,
    else its hash, what the store holds and why it is due."""

    sha256: str
    stored: StoredAttachment | None
    verdict: RetentionVerdict
    deletion: Deletion | None = None


@dataclass(slots=True)
class SweepReport:
    """What one sweep did at ``as_of``: the files it deleted (would delete, on a dry run), and
    those it left because a submission held them at that moment (due, so the next sweep)."""

    as_of: datetime
    dry_run: bool
    deleted: list[Swept] = field(default_factory=list)
    busy: list[str] = field(default_factory=list)


async def due_candidates(conn: Conn, policy: RetentionPolicy, now: datetime) -> list[str]:
    """Hashes of the files that may be due at ``now`` (a cheap filter; retention_verdict
    decides)."""
    grace = timedelta(days=policy.unreferenced_upload_grace.days)
    shortest = timedelta(days=policy.shortest_days)
    rows = await conn.fetch(_CANDIDATES, now - grace, now - shortest)
    return [bytes(r["sha256"]).hex() for r in rows]


async def _verdict(
    conn: Conn, policy: RetentionPolicy, sha256: str, last_uploaded_at: datetime
) -> RetentionVerdict:
    rows = await conn.fetch(_REFS, bytes.fromhex(sha256))
    refs = [MessageRef(str(r["message_id"]), r["kind"], r["sent_at"]) for r in rows]
    return retention_verdict(policy, refs, last_uploaded_at=last_uploaded_at)


async def sweep_attachments(
    pool: asyncpg.Pool,
    store: AttachmentStore,
    policy: RetentionPolicy,
    *,
    now: datetime,
    operator: str,
    dry_run: bool = False,
) -> SweepReport:
    """Delete every file whose retention under ``policy`` has run out at ``now``, from
    ``store`` and the records, one file per transaction (see the module's docstring), each
    deletion written to ``attachment_deletions`` naming ``operator``. ``pool`` must be the
    owner's (the adapters' roles may not delete) with room for the store's own connection
    when the store is PostgreSQL's. ``dry_run``: decide and report, change nothing."""
    report = SweepReport(as_of=now, dry_run=dry_run)
    async with pool.acquire() as conn:
        candidates = await due_candidates(conn, policy, now)
        if dry_run:
            for sha256 in candidates:
                last = await conn.fetchval(
                    "SELECT last_uploaded_at FROM attachment_files WHERE sha256 = $1",
                    bytes.fromhex(sha256),
                )
                verdict = await _verdict(conn, policy, sha256, last)
                if verdict.expired(now):
                    report.deleted.append(Swept(sha256, await store.stat(sha256), verdict))
            return report
        for sha256 in candidates:
            swept = await _sweep_one(conn, store, policy, sha256, now=now, operator=operator)
            if swept == "busy":
                report.busy.append(sha256)
            elif swept is not None:
                report.deleted.append(swept)
    return report


async def _sweep_one(
    conn: Conn,
    store: AttachmentStore,
    policy: RetentionPolicy,
    sha256: str,
    *,
    now: datetime,
    operator: str,
) -> Swept | Literal["busy"] | None:
    """Delete one file if it is still due, under its row lock; "busy" when a submission
    holds the row, None when it is no longer due."""
    key = bytes.fromhex(sha256)
    async with conn.transaction():
        row = await conn.fetchrow(
            "SELECT state, last_uploaded_at FROM attachment_files WHERE sha256 = $1"
            " FOR UPDATE SKIP LOCKED",
            key,
        )
        if row is None:
            log.info("attachments.sweep_busy", sha256=sha256)
            return "busy"
        if row["state"] != "stored":
            return None
        # Read again under the lock: a reference committed since the candidates were listed
        # keeps the file.
        verdict = await _verdict(conn, policy, sha256, row["last_uploaded_at"])
        if not verdict.expired(now):
            return None
        gone = await store.delete(sha256)
        message = verdict.message
        recorded = await conn.fetchrow(
            _RECORD,
            key,
            None if gone is None else gone.size_bytes,
            None if gone is None else gone.media_type,
            verdict.rule,
            verdict.retention_days,
            None if message is None else message.message_id,
            None if message is None else message.kind,
            None if message is None else message.sent_at,
            verdict.newest_message_at,
            verdict.references,
            verdict.last_uploaded_at,
            verdict.expires_at,
            now,
            operator,
        )
        assert recorded is not None  # INSERT ... RETURNING gives its row
        await conn.execute("UPDATE attachment_files SET state = 'deleted' WHERE sha256 = $1", key)
    deletion = deletion_from_row(recorded)
    log.info(
        "attachments.deleted",
        sha256=sha256,
        size_bytes=deletion.size_bytes,
        rule=verdict.rule,
        retention_days=verdict.retention_days,
        expired_at=verdict.expires_at.isoformat(),
        deletion_id=deletion.id,
    )
    return Swept(sha256, gone, verdict, deletion)


async def deletions(conn: Conn, sha256: str | None = None) -> list[Deletion]:
    """Every recorded deletion, oldest first; of one file when ``sha256`` is given."""
    if sha256 is None:
        rows = await conn.fetch("SELECT * FROM attachment_deletions ORDER BY id")
    else:
        rows = await conn.fetch(
            "SELECT * FROM attachment_deletions WHERE sha256 = $1 ORDER BY id",
            bytes.fromhex(sha256),
        )
    return [deletion_from_row(r) for r in rows]
