"""What a batch becomes once classified: its audit entries, appended through the store port
in the router's one transaction, and the records to produce in one Kafka transaction
(design §6, §7).

bus.router.plan decides; this module loads what the rules need, appends what they decided
and builds the records. The audit is idempotent per message and event: a batch planned again
after a crash or a failed transaction appends nothing new and produces exactly what the log
says was produced (the receipt the log holds, not a new one).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import structlog

from bus.audit.events import decode_leaf, leaf_envelope
from bus.audit.log import AuditRecord
from bus.models import SIGNAL_KINDS, Envelope
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

Headers = list[tuple[str, bytes]]

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
        self.origins.extend([origin] * len(sends))


async def audit_batch(
    store: RouterStore, verdicts: Sequence[Verdict], *, outputs: Outputs
) -> BatchPlan:
    """Apply the batch rules, append every audit entry, and say what to produce."""
    seen = await store.seen(ids_to_look_up(verdicts))
    claims = claims_to_check(verdicts, seen)
    decision = decide(verdicts, seen, await store.held(claims) if claims else set())
    _log_decision(decision)
    nacks = [outputs.nack(r) for p in decision.items if (r := p.refused) is not None]
    first_pass = _first_pass(decision, iter(nacks), outputs)
    await store.keep_bodies([r for p in decision.items if (r := p.refused) and r.digest_only])
    indexes = {
        e.message_id: (e.index, e.new)
        for e in await store.append(first_pass)
        if e.event_kind == "accepted"
    }
    receipts = await _receipts(store, decision, indexes, outputs)
    return _produce(decision, iter(nacks), indexes, receipts, outputs)


def _first_pass(
    decision: Decision, nacks: Iterator[Envelope | None], outputs: Outputs
) -> list[AuditRecord]:
    """The audit record of each delivered or refused submission, in record order."""
    records = []
    for p in decision.items:
        if (accepted := p.delivered) is not None:
            records.append(outputs.accepted_record(accepted))
        elif (refused := p.refused) is not None:
            records.append(outputs.rejected_record(refused, next(nacks)))
    return records


async def _receipts(
    store: RouterStore,
    decision: Decision,
    indexes: dict[uuid.UUID, tuple[int, bool]],
    outputs: Outputs,
) -> dict[uuid.UUID, tuple[bytes, Headers | None]]:
    """Note the newly accepted messages and audit their receipts; a receipt the log holds
    already (a re-run) is sent as the log says it was, not made again."""
    delivered = [a for p in decision.items if (a := p.delivered) is not None]
    receipts: dict[uuid.UUID, tuple[bytes, Headers | None]] = {}
    second_pass = []
    fresh = []
    for a in delivered:
        index, new = indexes[a.envelope.message_id]
        record, value, headers = outputs.receipt(a, audit_index=index)
        receipts[a.envelope.message_id] = (value, headers)
        second_pass.append(record)
        if new:
            seen = Seen(a.value_sha256, a.record.partition, a.record.offset, index)
            fresh.append((a.envelope.message_id, seen))
    await store.remember(fresh)
    for e in await store.append(second_pass):
        if not e.new:
            logged = leaf_envelope(decode_leaf(await store.leaf(e.message_id, "delivered")))
            if logged:
                receipts[e.message_id] = (logged, None)
    return receipts


def _produce(
    decision: Decision,
    nacks: Iterator[Envelope | None],
    indexes: dict[uuid.UUID, tuple[int, bool]],
    receipts: dict[uuid.UUID, tuple[bytes, Headers | None]],
    outputs: Outputs,
) -> BatchPlan:
    """The records to produce, in record order: deliveries and the receipt of each delivered
    submission (but a signal's, SIGNAL_KINDS), the dead letter and the nack of each refused
    one, nothing for a duplicate."""
    plan = BatchPlan()
    for p in decision.items:
        if (a := p.delivered) is not None:
            mid = a.envelope.message_id
            plan.add(a, *outputs.deliveries(a, audit_index=indexes[mid][0]))
            if a.envelope.kind not in SIGNAL_KINDS:
                plan.add(a, outputs.receipt_send(a, *receipts[mid]))
            plan.accepted.append(a)
        elif (r := p.refused) is not None:
            plan.add(r, outputs.dead_letter(r))
            nack = next(nacks)
            if nack is not None:
                plan.add(r, outputs.nack_send(r, nack))
            plan.refused.append(r)
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
