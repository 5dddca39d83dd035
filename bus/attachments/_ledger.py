"""The records around stored attachments: who uploaded what, which messages refer to which
attachment (and so who may read it), and every fetch, allowed or refused.

References are written from what the adapters see: the sender's when its adapter accepts the
submission, in the submission's own transaction; each recipient's and each automatic copy's
when the bus's delivery reaches that agency's adapter, in the inbox reader's transaction. So
an agency may read an attachment only once a message carrying it was really sent by or
delivered to it, never because it named itself somewhere.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from bus.attachments._port import AttachmentStore, StoredAttachment
from bus.attachments._rules import (
    Reference,
    RefRole,
    bus_attachments,
    submission_problems,
)
from bus.db import Executor
from bus.errors import Problem
from bus.models import Envelope

__all__ = [
    "FetchOutcome",
    "check_submission",
    "possessed",
    "record_fetch",
    "record_references",
    "record_upload",
    "references",
]

FetchOutcome = Literal["allowed", "refused"]
"""Whether a fetch came from a party (answered) or was refused (403)."""


async def record_upload(db: Executor, sha256: str, agency_id: str) -> None:
    """``agency_id`` uploaded the bytes ``sha256`` (it holds them, so it may refer to them)."""
    await db.execute(
        "INSERT INTO attachment_uploads (sha256, agency_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        bytes.fromhex(sha256),
        agency_id,
    )


async def record_references(db: Executor, envelope: Envelope, agency_id: str, role: RefRole) -> int:
    """``agency_id`` holds ``envelope`` (as ``role``): it may read each bus-store attachment
    the envelope carries. The number of attachments recorded."""
    rows = [
        (bytes.fromhex(a.sha256), agency_id, envelope.message_id, envelope.case_id, role)
        for _, a, named in bus_attachments(envelope)
        if named == a.sha256
    ]
    if rows:
        await db.executemany(
            """INSERT INTO attachment_refs (sha256, agency_id, message_id, case_id, role)
               VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING""",
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
    wanted = [bytes.fromhex(h) for h in set(hashes)]
    if not wanted:
        return set()
    rows = await db.fetch(
        """SELECT sha256 FROM attachment_uploads WHERE agency_id = $1 AND sha256 = ANY($2)
           UNION SELECT sha256 FROM attachment_refs WHERE agency_id = $1 AND sha256 = ANY($2)""",
        agency_id,
        wanted,
    )
    return {bytes(r["sha256"]).hex() for r in rows}


async def check_submission(
    db: Executor, store: AttachmentStore, agency_id: str, envelope: Envelope
) -> list[Problem]:
    """Every problem with the bus-store attachments ``agency_id`` refers to in ``envelope``
    (see :func:`bus.attachments.submission_problems`)."""
    wanted = {a.sha256 for _, a, named in bus_attachments(envelope) if named == a.sha256}
    stored: dict[str, StoredAttachment | None] = {h: await store.stat(h) for h in wanted}
    mine = await possessed(db, agency_id, wanted)
    return submission_problems(envelope, stored, mine)


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
