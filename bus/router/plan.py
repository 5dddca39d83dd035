"""What a batch becomes once classified: its audit entries, appended in one PostgreSQL
transaction, and the records to produce in one Kafka transaction (design §6, §7).

The audit is idempotent per message and event: a batch planned again after a crash or a
failed transaction appends nothing new and produces exactly what the log says was produced.

A submission written straight to its submit topic skips its adapter's checks, so the one check
that needs the attachment ledger is made again here: a message may refer to a file in the bus's
store only if its sender uploaded it or may read it already, or its delivery would let the
recipients download a file the sender never held (``attachment_not_held``).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, Final

import structlog

from bus.attachments import bus_attachments, held
from bus.audit.events import decode_leaf, leaf_envelope
from bus.audit.log import AuditLog, AuditRecord
from bus.db import Conn
from bus.errors import Problem
from bus.models import Envelope
from bus.router.classify import UNWITNESSED, Verdict
from bus.router.outputs import Outputs, Send

__all__ = [
    "ATTACHMENT_NOT_HELD",
    "BatchPlan",
    "attachment_claims",
    "not_held_problems",
    "plan_batch",
]

log = structlog.get_logger("casebus.router")

ATTACHMENT_NOT_HELD: Final = "attachment_not_held"
"""The code of a submission referring to a stored file its sender neither uploaded nor holds."""


@dataclass(slots=True)
class BatchPlan:
    """What one batch turned into: the records to produce, and the tallies for logs."""

    sends: list[Send] = field(default_factory=list)
    origins: list[Verdict] = field(default_factory=list)
    """For each send, the verdict (the submitted record) it was produced for."""
    accepted: list[Verdict] = field(default_factory=list)
    duplicates: list[Verdict] = field(default_factory=list)
    refused: list[Verdict] = field(default_factory=list)

    def add(self, origin: Verdict, *sends: Send) -> None:
        self.sends.extend(sends)
        self.origins.extend(origin for _ in sends)


async def plan_batch(
    conn: Conn, verdicts: list[Verdict], *, outputs: Outputs, audit_log: AuditLog
) -> BatchPlan:
    """Classify duplicates, append every audit entry, and say what to produce."""
    plan = BatchPlan()
    ids = [
        v.envelope.message_id
        for v in verdicts
        if (v.outcome == "accept" or v.code == UNWITNESSED) and v.envelope
    ]
    known = {
        r["message_id"]: r
        for r in await conn.fetch(
            "SELECT * FROM router_accepted WHERE message_id = ANY($1::uuid[])", ids
        )
    }
    for v in verdicts:
        _readmit_if_accepted_before(v, known)
    await _refuse_attachments_not_held(conn, verdicts, known)
    seen_now: dict[object, Verdict] = {}
    first_pass: list[AuditRecord] = []
    nacks: dict[int, Envelope | None] = {}
    for i, v in enumerate(verdicts):
        if v.outcome == "accept":
            env = v.envelope
            assert env is not None
            prior = known.get(env.message_id)
            earlier = seen_now.get(env.message_id)
            if prior is not None:
                same_bytes = bytes(prior["value_sha256"]) == v.value_sha256
                rerun = (prior["src_partition"], prior["src_offset"]) == (
                    v.record.partition,
                    v.record.offset,
                )
            elif earlier is not None:
                same_bytes, rerun = earlier.value_sha256 == v.value_sha256, False
            else:
                same_bytes, rerun = True, True
            if not same_bytes:
                v.outcome, v.code = "reject", "conflicting_duplicate"
                v.problems = [_conflict(env.message_id)]
            elif not rerun:
                plan.duplicates.append(v)
                log.info(
                    "router.duplicate",
                    message_id=str(env.message_id),
                    case_id=env.case_id,
                    kind=env.kind,
                    sender=env.sender,
                )
                continue
            else:
                seen_now[env.message_id] = v
                first_pass.append(outputs.accepted_record(v))
                continue
        nack = outputs.nack(v)
        nacks[i] = nack
        first_pass.append(outputs.rejected_record(v, nack))

    await keep_bodies_by_digest(conn, [v for v in verdicts if v.digest_only])
    appended = {(e.message_id, e.event_kind): e for e in await audit_log.append(conn, first_pass)}
    second_pass: list[AuditRecord] = []
    receipts: dict[int, tuple[bytes, Envelope | None]] = {}
    duplicates = {id(v) for v in plan.duplicates}
    fresh: list[tuple[Verdict, int]] = []
    for i, v in enumerate(verdicts):
        if v.outcome != "accept" or id(v) in duplicates:
            continue
        env = v.envelope
        assert env is not None
        entry = appended[(env.message_id, "accepted")]
        if entry.new:
            fresh.append((v, entry.index))
        record, receipt, value = outputs.receipt(v, audit_index=entry.index)
        receipts[i] = (value, receipt)
        second_pass.append(record)
    if fresh:  # one round trip for the whole batch
        await conn.execute(
            """INSERT INTO router_accepted
               (message_id, value_sha256, src_partition, src_offset, audit_index)
               SELECT * FROM unnest($1::uuid[], $2::bytea[], $3::int[], $4::bigint[],
                                    $5::bigint[])
               ON CONFLICT (message_id) DO NOTHING""",
            [v.envelope.message_id for v, _ in fresh if v.envelope is not None],
            [v.value_sha256 for v, _ in fresh],
            [v.record.partition for v, _ in fresh],
            [v.record.offset for v, _ in fresh],
            [index for _, index in fresh],
        )
    for e in await audit_log.append(conn, second_pass):
        if not e.new:  # a re-run: send exactly what the log already says was sent
            stored = await audit_log.entry(conn, e.message_id, "delivered")
            logged = leaf_envelope(decode_leaf(stored.leaf))
            for i, v in enumerate(verdicts):
                if logged and v.envelope is not None and v.envelope.message_id == e.message_id:
                    receipts[i] = (logged, None)

    for i, v in enumerate(verdicts):
        if id(v) in duplicates:
            continue
        if v.outcome == "accept":
            env = v.envelope
            assert env is not None
            index = appended[(env.message_id, "accepted")].index
            plan.add(v, *outputs.deliveries(v, audit_index=index))
            plan.add(v, outputs.receipt_send(v, *receipts[i]))
            plan.accepted.append(v)
        else:
            plan.add(v, outputs.dead_letter(v))
            nack = nacks.get(i)
            if nack is not None:
                plan.add(v, outputs.nack_send(v, nack))
            plan.refused.append(v)
    return plan


def _readmit_if_accepted_before(v: Verdict, known: dict[object, Any]) -> None:
    """Closing for an unwitnessed log refuses new messages only. One the log already accepted
    with these bytes (a batch planned again after a crash or a failed transaction, or the
    sender's duplicate) goes on as before: refusing it now would lose a message the log says
    was accepted."""
    if v.code != UNWITNESSED or v.envelope is None:
        return
    prior = known.get(v.envelope.message_id)
    if prior is not None and bytes(prior["value_sha256"]) == v.value_sha256:
        v.outcome, v.code, v.problems = "accept", None, []


def attachment_claims(envelope: Envelope) -> list[tuple[int, str]]:
    """``(index, sha256)`` of each attachment whose delivery lets its recipients read a file in
    the bus's store: a bus-store URI naming the attachment's own hash, the references
    :func:`bus.attachments.record_references` records. A malformed or mismatched bus URI
    grants nothing, and any other URI is a department's own server, which the bus never
    serves."""
    return [(i, a.sha256) for i, a, named in bus_attachments(envelope) if named == a.sha256]


def not_held_problems(envelope: Envelope, holding: Collection[tuple[str, str]]) -> list[Problem]:
    """A problem for each of ``envelope``'s claims (:func:`attachment_claims`) its sender does
    not hold; ``holding`` are the ``(agency_id, sha256)`` pairs known to hold (uploaded, or a
    reference already). The rule is the adapter's at submit (``attachment_not_uploaded``):
    knowing a hash is not enough to get the file."""
    problems = []
    for i, sha256 in attachment_claims(envelope):
        if (envelope.sender, sha256) in holding:
            continue
        name = envelope.attachments[i].name
        problems.append(
            Problem(
                f"attachments[{i}].sha256",
                ATTACHMENT_NOT_HELD,
                f"attachment {name!r} refers to a file in the bus's store that "
                f"{envelope.sender} neither uploaded nor may read "
                "(upload it through the adapter, POST /v1/attachments, first)",
                sha256,
                "附件所指文件既非发送单位上传，发送单位也无权读取，请先通过适配器上传附件",
            )
        )
    return problems


async def _refuse_attachments_not_held(
    conn: Conn, verdicts: list[Verdict], known: dict[object, Any]
) -> None:
    """Refuse each new accepted submission referring to a stored file its sender does not
    hold, with one query for the whole batch and none when no submission refers to one.

    A message the log already accepted (in ``known``) is not checked again: a batch planned
    again after a crash, or the sender's duplicate, goes on as the log says it went, whatever
    the ledger says now. A message the log refused may be accepted when sent again once its
    sender holds the file, as any refused message may."""
    checked = [
        (v, v.envelope, claims)
        for v in verdicts
        if v.outcome == "accept"
        and v.envelope is not None
        and v.envelope.message_id not in known
        and (claims := attachment_claims(v.envelope))
    ]
    if not checked:
        return
    holding = await held(
        conn, ((env.sender, sha256) for _, env, claims in checked for _, sha256 in claims)
    )
    for v, env, _ in checked:
        problems = not_held_problems(env, holding)
        if not problems:
            continue
        v.outcome, v.code, v.problems = "reject", ATTACHMENT_NOT_HELD, problems
        log.warning(
            "router.security_event",
            event_type=ATTACHMENT_NOT_HELD,
            message_id=str(env.message_id),
            case_id=env.case_id,
            kind=env.kind,
            sender=env.sender,
            attachments=[p.value for p in problems],
        )


async def keep_bodies_by_digest(conn: Conn, verdicts: list[Verdict]) -> None:
    """Keep the whole of each too-large record where an operator can read it back; its dead
    letter and audit entry carry only its digest, size and a prefix."""
    for v in verdicts:
        r = v.record
        headers = [
            {"key": k, "value": base64.b64encode(bytes(h or b"")).decode("ascii")}
            for k, h in r.headers or ()
        ]
        await conn.execute(
            """INSERT INTO dead_letter_bodies (value_sha256, src_topic, src_partition, src_offset,
                   record_key, record_value, record_headers, received_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8)
               ON CONFLICT (value_sha256) DO NOTHING""",
            v.value_sha256,
            r.topic,
            r.partition,
            r.offset,
            r.key,
            v.value,
            json.dumps(headers),
            v.received_at,
        )


def _conflict(message_id: object) -> Problem:
    return Problem(
        "message_id",
        "conflicting_duplicate",
        "this message id was already accepted with other content",
        str(message_id),
        "该消息编号已以不同内容被接收",
    )
