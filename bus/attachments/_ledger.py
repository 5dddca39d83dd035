"""The records around stored attachments: who uploaded what, which messages refer to which
attachment (and so who may read it), and every fetch, allowed or refused.

References are written from what the adapters see: the sender's when its adapter accepts the
submission, in the submission's own transaction; each recipient's and each automatic copy's
when the bus's delivery reaches that agency's adapter, in the inbox reader's transaction. So
an agency may read an attachment only once a message carrying it was really sent by or
delivered to it, never because it named itself somewhere.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import asyncpg

from bus.attachments._port import AttachmentStore, StoredAttachment
from bus.attachments._retention import MessageRef, RetentionVerdict
from bus.attachments._rules import (
    Reference,
    RefRole,
    bus_attachments,
    submission_problems,
    with_sm3,
)
from bus.db import Conn, Executor
from bus.errors import AttachmentNotFoundError, OutsideTransactionError, Problem
from bus.models import Envelope

__all__ = [
    "Deletion",
    "FetchOutcome",
    "check_submission",
    "deletion_from_row",
    "held",
    "last_deletion",
    "possessed",
    "prepare_submission",
    "record_fetch",
    "record_references",
    "record_upload",
    "references",
    "sm3_of",
]

FetchOutcome = Literal["allowed", "refused"]
"""Whether a fetch came from a party (answered) or was refused (403)."""


@contextlib.asynccontextmanager
async def _transaction(db: Executor) -> AsyncIterator[Conn]:
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as conn, conn.transaction():
            yield conn
    else:
        async with db.transaction():
            yield db


async def record_upload(
    db: Executor,
    sha256: str,
    agency_id: str,
    *,
    store: AttachmentStore | None = None,
    sm3: str | None = None,
) -> None:
    """``agency_id`` uploaded the bytes ``sha256``: it holds them, so it may refer to them, and
    the file's grace period (``deploy/attachment-retention.yaml``) starts again. ``sm3``, the
    bytes' SM3 digest as the upload computed it, is kept with the file (the 国密 profile's
    submissions carry it: :func:`check_submission`).

    With ``store`` the bytes are looked for once more, under the file's row lock. A store that
    finds an upload's bytes already stored keeps the old copy, and a retention sweep may delete
    that copy before this record is written: then AttachmentNotFoundError, nothing is recorded, and
    the department must upload again. Once this commits, the grace period protects the file."""
    key = bytes.fromhex(sha256)
    async with _transaction(db) as conn:
        await conn.execute(
            """INSERT INTO attachment_files (sha256, sm3) VALUES ($1, $2) ON CONFLICT (sha256)
               DO UPDATE SET state = 'stored', last_uploaded_at = now(),
                             sm3 = coalesce(EXCLUDED.sm3, attachment_files.sm3)""",
            key,
            None if sm3 is None else bytes.fromhex(sm3),
        )
        if store is not None and await store.stat(sha256) is None:
            raise AttachmentNotFoundError(
                f"attachment {sha256} was deleted by the retention sweep during the upload"
            )
        await conn.execute(
            "INSERT INTO attachment_uploads (sha256, agency_id) VALUES ($1, $2)"
            " ON CONFLICT DO NOTHING",
            key,
            agency_id,
        )


async def sm3_of(db: Executor, sha256: str) -> str | None:
    """The SM3 digest (hex) kept for the file ``sha256``; None when unknown (uploaded before
    SM3 was computed, and not since)."""
    found = await db.fetchval(
        "SELECT sm3 FROM attachment_files WHERE sha256 = $1", bytes.fromhex(sha256)
    )
    return None if found is None else bytes(found).hex()


async def record_references(db: Executor, envelope: Envelope, agency_id: str, role: RefRole) -> int:
    """``agency_id`` holds ``envelope`` (as ``role``): it may read each bus-store attachment
    the envelope carries. The number of attachments recorded."""
    rows = [
        (
            bytes.fromhex(a.sha256),
            agency_id,
            envelope.message_id,
            envelope.case_id,
            role,
            envelope.kind,
            envelope.sent_at,
        )
        for _, a, named in bus_attachments(envelope)
        if named == a.sha256
    ]
    if rows:
        # kind and sent_at: the file's retention runs from them (bus.attachments._retention).
        await db.executemany(
            """INSERT INTO attachment_refs
               (sha256, agency_id, message_id, case_id, role, kind, sent_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING""",
            rows,
        )
    return len(rows)


async def references(db: Executor, sha256: str) -> list[Reference]:
    """Every reference to the attachment ``sha256``, oldest first."""
    rows = await db.fetch(
        "SELECT agency_id, message_id, case_id, role FROM attachment_refs"
        " WHERE sha256 = $1 ORDER BY recorded_at, message_id",
        bytes.fromhex(sha256),
    )
    return [Reference(r["agency_id"], str(r["message_id"]), r["case_id"], r["role"]) for r in rows]


async def possessed(db: Executor, agency_id: str, hashes: Iterable[str]) -> set[str]:
    """Which of ``hashes`` ``agency_id`` uploaded or may read already."""
    return {h for _, h in await held(db, ((agency_id, h) for h in hashes))}


async def held(db: Executor, claims: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which ``(agency_id, sha256)`` claims hold: the agency uploaded the file or may read it
    already (the rule of :func:`possessed`, which asks this for one agency).

    Several agencies' claims in one query, so the router checks a whole batch of submissions
    with one round trip, inside its audit transaction. No claims, no query."""
    wanted = sorted(set(claims))
    if not wanted:
        return set()
    rows = await db.fetch(
        """SELECT w.agency_id, w.sha256
             FROM unnest($1::text[], $2::bytea[]) AS w (agency_id, sha256)
            WHERE EXISTS (SELECT 1 FROM attachment_uploads u
                           WHERE u.sha256 = w.sha256 AND u.agency_id = w.agency_id)
               OR EXISTS (SELECT 1 FROM attachment_refs r
                           WHERE r.sha256 = w.sha256 AND r.agency_id = w.agency_id)""",
        [agency for agency, _ in wanted],
        [bytes.fromhex(h) for _, h in wanted],
    )
    return {(r["agency_id"], bytes(r["sha256"]).hex()) for r in rows}


async def check_submission(
    db: Conn, store: AttachmentStore, agency_id: str, envelope: Envelope
) -> list[Problem]:
    """Every problem with the bus-store attachments ``agency_id`` refers to in ``envelope``
    (see :func:`bus.attachments.submission_problems`); :func:`prepare_submission` without
    filling in SM3 digests."""
    return (await prepare_submission(db, store, agency_id, envelope))[1]


async def prepare_submission(
    db: Conn, store: AttachmentStore, agency_id: str, envelope: Envelope, *, fill_sm3: bool = False
) -> tuple[Envelope, list[Problem]]:
    """``(envelope, problems)``: every problem with the bus-store attachments ``agency_id``
    refers to in ``envelope`` (see :func:`bus.attachments.submission_problems`; a given ``sm3``
    must be the upload's), and, with ``fill_sm3`` (the sm2 crypto profile), the envelope with
    each such attachment's SM3 digest filled in from its upload where the sender left it out.

    Call it inside the transaction that then records the submission's references
    (:func:`record_references`); OutsideTransactionError otherwise. It locks each file's row FOR
    SHARE until that transaction ends, and the retention sweep deletes a file only while it
    holds the same row FOR UPDATE: so either the sweep went first and this check sees the file
    deleted, or the reference is committed before the sweep looks and keeps the file (see
    :mod:`bus.attachments._sweep` for why a lock rather than a second look)."""
    if not db.is_in_transaction():
        raise OutsideTransactionError(
            "check_submission must run in the transaction that records the references: "
            "outside it, the retention sweep could delete a file between check and reference"
        )
    wanted = sorted({a.sha256 for _, a, named in bus_attachments(envelope) if named == a.sha256})
    rows = await db.fetch(
        "SELECT sha256, state, sm3 FROM attachment_files WHERE sha256 = ANY($1)"
        " ORDER BY sha256 FOR SHARE",
        [bytes.fromhex(h) for h in wanted],
    )
    tombstones = {bytes(r["sha256"]).hex() for r in rows if r["state"] == "deleted"}
    digests = {
        bytes(r["sha256"]).hex(): None if r["sm3"] is None else bytes(r["sm3"]).hex() for r in rows
    }
    stored: dict[str, StoredAttachment | None] = {
        h: None if h in tombstones else await store.stat(h) for h in wanted
    }
    mine = await possessed(db, agency_id, wanted)
    deleted: dict[str, str] = {}
    for h in sorted(tombstones & mine):
        found = await last_deletion(db, h)
        if found is not None:
            deleted[h] = found.verdict.describe()
    problems = submission_problems(envelope, stored, mine, deleted, digests, need_sm3=fill_sm3)
    if fill_sm3 and not problems:
        envelope = with_sm3(envelope, digests)
    return envelope, problems


@dataclass(frozen=True, slots=True)
class Deletion:
    """A file the retention sweep deleted (a row of ``attachment_deletions``): what, why
    (``verdict``), by whose sweep and when; ``size_bytes`` None when the store held no bytes."""

    id: int
    sha256: str
    size_bytes: int | None
    media_type: str | None
    verdict: RetentionVerdict
    as_of: datetime
    operator: str
    db_role: str
    deleted_at: datetime


def deletion_from_row(row: asyncpg.Record) -> Deletion:
    """A :class:`Deletion` from a row of ``attachment_deletions``."""
    message = None
    if row["message_id"] is not None:
        message = MessageRef(str(row["message_id"]), row["message_kind"], row["message_sent_at"])
    verdict = RetentionVerdict(
        expires_at=row["expired_at"],
        rule=row["rule"],
        retention_days=row["retention_days"],
        message=message,
        newest_message_at=row["newest_message_at"],
        references=row["references_count"],
        last_uploaded_at=row["last_uploaded_at"],
    )
    return Deletion(
        id=row["id"],
        sha256=bytes(row["sha256"]).hex(),
        size_bytes=row["size_bytes"],
        media_type=row["media_type"],
        verdict=verdict,
        as_of=row["as_of"],
        operator=row["operator"],
        db_role=row["db_role"],
        deleted_at=row["deleted_at"],
    )


async def last_deletion(db: Executor, sha256: str) -> Deletion | None:
    """The latest deletion of the file ``sha256`` while it is deleted; None when it was never
    deleted or was uploaded again since."""
    row = await db.fetchrow(
        """SELECT d.* FROM attachment_deletions d
           JOIN attachment_files f ON f.sha256 = d.sha256 AND f.state = 'deleted'
           WHERE d.sha256 = $1 ORDER BY d.id DESC LIMIT 1""",
        bytes.fromhex(sha256),
    )
    return None if row is None else deletion_from_row(row)


async def record_fetch(
    db: Executor,
    *,
    sha256: str,
    agency_id: str,
    case_ids: Iterable[str],
    outcome: FetchOutcome,
    byte_range: str | None = None,
) -> int:
    """Audit one fetch of ``sha256`` by ``agency_id``; the row's id."""
    row_id: int = await db.fetchval(
        """INSERT INTO attachment_fetches (sha256, agency_id, case_ids, outcome, byte_range)
           VALUES ($1, $2, $3, $4, $5) RETURNING id""",
        bytes.fromhex(sha256),
        agency_id,
        sorted(set(case_ids)),
        outcome,
        byte_range,
    )
    return row_id
