"""What a batch becomes once classified: its audit entries, appended through the store port
in the router's one transaction, and the records to produce in one Kafka transaction
(design §6, §7).

bus.router.plan decides; this module loads what the rules need, appends what they decided
and builds the records. The audit is idempotent per message and event: a batch planned again
after a crash or a failed transaction appends nothing new and produces exactly what the log
says was produced (the receipt the log holds, not a new one).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import structlog

from bus.audit.events import decode_leaf, leaf_envelope
from bus.audit.log import AuditRecord
from bus.models import Envelope
from bus.router.outputs import Outputs, Send
from bus.router.plan import (
    ATTACHMENT_NOT_HELD,
    Decision,
    claims_to_check,
    decide,
    ids_to_look_up,
)
from bus.router.store import RouterStore, Seen
from bus.router.verdict import Accepted, Refused, Verdict

__all__ = ["BatchPlan", "audit_batch"]

log = structlog.get_logger("casebus.router")


@dataclass(slots=True)
class BatchPlan:
    """What one batch turned into: the records to produce, and the tallies for logs."""

    sends: list[Send] = field(default_factory=list)
    origins: list[Verdict] = field(default_factory=list)
    """For each send, the verdict (the submitted record) it was produced for."""
    accepted: list[Accepted] = field(default_factory=list)
    duplicates: list[Accepted] = field(default_factory=list)
    refused: list[Refused] = field(default_factory=list)

    def add(self, origin: Verdict, *sends: Send) -> None:
        self.sends.extend(sends)
        self.origins.extend(origin for _ in sends)


async def audit_batch(
    store: RouterStore, verdicts: Sequence[Verdict], *, outputs: Outputs
) -> BatchPlan:
    """Apply the batch rules, append every audit entry, and say what to produce."""
    seen = await store.seen(ids_to_look_up(verdicts))
    claims = claims_to_check(verdicts, seen)
    decision = decide(verdicts, seen, await store.held(claims) if claims else set())
    _log_decision(decision)

    first_pass: list[AuditRecord] = []
    nacks: list[Envelope | None] = []
    for p in decision.items:
        if (accepted := p.delivered) is not None:
            first_pass.append(outputs.accepted_record(accepted))
        elif (refused := p.refused) is not None:
            nack = outputs.nack(refused)
            nacks.append(nack)
            first_pass.append(outputs.rejected_record(refused, nack))
    await store.keep_bodies(
        [p.refused for p in decision.items if p.refused and p.refused.digest_only]
    )
    appended = {(e.message_id, e.event_kind): e for e in await store.append(first_pass)}

    delivered = [a for p in decision.items if (a := p.delivered) is not None]
    indexes = [appended[(a.envelope.message_id, "accepted")] for a in delivered]
    second_pass: list[AuditRecord] = []
    receipts: dict[object, tuple[bytes, Envelope | None]] = {}
    for a, entry in zip(delivered, indexes, strict=True):
        record, receipt, value = outputs.receipt(a, audit_index=entry.index)
        receipts[a.envelope.message_id] = (value, receipt)
        second_pass.append(record)
    await store.remember(
        [
            (
                a.envelope.message_id,
                Seen(a.value_sha256, a.record.partition, a.record.offset, e.index),
            )
            for a, e in zip(delivered, indexes, strict=True)
            if e.new
        ]
    )
    for e in await store.append(second_pass):
        if not e.new:  # a re-run: send exactly what the log already says was sent
            logged = leaf_envelope(decode_leaf(await store.leaf(e.message_id, "delivered")))
            if logged:
                receipts[e.message_id] = (logged, None)

    plan = BatchPlan()
    nacked = iter(nacks)
    for p in decision.items:
        if (accepted := p.delivered) is not None:
            index = appended[(accepted.envelope.message_id, "accepted")].index
            plan.add(accepted, *outputs.deliveries(accepted, audit_index=index))
            plan.add(
                accepted, outputs.receipt_send(accepted, *receipts[accepted.envelope.message_id])
            )
            plan.accepted.append(accepted)
        elif (refused := p.refused) is not None:
            plan.add(refused, outputs.dead_letter(refused))
            nack = next(nacked)
            if nack is not None:
                plan.add(refused, outputs.nack_send(refused, nack))
            plan.refused.append(refused)
        elif isinstance(p.verdict, Accepted):
            plan.duplicates.append(p.verdict)
    return plan


def _log_decision(decision: Decision) -> None:
    """The security events first, then the duplicates: the order the log has always had."""
    for p in decision.items:
        if p.fate == "not_held" and p.verdict.envelope is not None:
            log.warning(
                "router.security_event",
                event_type=ATTACHMENT_NOT_HELD,
                **_about(p.verdict.envelope),
                attachments=[problem.value for problem in p.verdict.problems],
            )
    for p in decision.items:
        if p.fate == "duplicate" and p.verdict.envelope is not None:
            log.info("router.duplicate", **_about(p.verdict.envelope))


def _about(env: Envelope) -> dict[str, str]:
    """The log context of a message."""
    return {
        "message_id": str(env.message_id),
        "case_id": env.case_id,
        "kind": env.kind,
        "sender": env.sender,
    }
