"""Sample payloads the bus writes itself: ``bus.*`` receipts, ``sla.*`` events, tree heads."""

from __future__ import annotations

import functools
import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bus.audit.checkpoint import Checkpoint, sign_checkpoint
from bus.models import NACK_CODES, NackReason
from bus.samples._agencies import (
    BUREAU,
    COURT,
    NAMES,
    POLICE,
    PROCURATORATE,
    REGULATORS,
    SAMPLE_ROUTES,
)
from bus.samples._context import Builder, Ctx

__all__ = ["AUDIT_ORIGIN", "BUILDERS", "OPTIONS", "sample_audit_key"]

AUDIT_ORIGIN = "casebus.local/audit"
"""The origin line of sample tree heads: the default of ``CASEBUS_AUDIT_ORIGIN``."""

_BUSINESS_KINDS = tuple(k for k in SAMPLE_ROUTES if not k.startswith(("bus.", "sla.", "audit.")))
_DAY = timedelta(days=1)

# policy id of deploy/sla-policies.yaml → (owner, waiting party, about how long its period runs);
# None stands for the regulator of the case.
_POLICIES: dict[str, tuple[str | None, str | None, timedelta]] = {
    "criminal.receipt": (POLICE, BUREAU, _DAY),
    "criminal.filing_decision": (POLICE, BUREAU, 3 * _DAY),
    "criminal.reconsideration_decision": (POLICE, BUREAU, 3 * _DAY),
    "criminal.evidence_handover": (BUREAU, POLICE, 3 * _DAY),
    "supervision.explanation": (POLICE, PROCURATORATE, 7 * _DAY),
    "supervision.filing": (POLICE, PROCURATORATE, 15 * _DAY),
    "clue.receipt": (BUREAU, None, 2 * _DAY),
    "opinion.response": (None, BUREAU, 14 * _DAY),
    "penalty.feedback": (BUREAU, None, 10 * _DAY),
    "court.acceptance": (COURT, BUREAU, 7 * _DAY),
    "court.ruling": (COURT, BUREAU, 9 * _DAY),
}


def _nack_reasons(code: str) -> list[NackReason]:
    reasons = {
        "unauthorized_route": [
            NackReason(
                path="recipients[0]",
                rule="unauthorized_route",
                message=f"ygh.regulator.environment (regulator) may not send criminal.transfer "
                f"to {POLICE}",
                message_zh=f"环保分局无权向{NAMES[POLICE]}发送涉嫌犯罪案件移送",
            )
        ],
        "invalid_payload": [
            NackReason(
                path="documents",
                rule="transfer_letter_missing",
                message="the document manifest must list the transfer letter",
                message_zh="移送材料清单必须包含涉嫌犯罪案件移送书",
            ),
            NackReason(
                path="parties",
                rule="too_short",
                message="List should have at least 1 item after validation, not 0",
                message_zh="至少应列明一名当事人",
            ),
        ],
        "bad_signature": [
            NackReason(
                path="signature",
                rule="bad_signature",
                message="signature does not verify over the envelope as received",
                message_zh="签名验证失败",
            )
        ],
        "conflicting_duplicate": [
            NackReason(
                path="message_id",
                rule="conflicting_duplicate",
                message="this message id was already used for a message with other content",
                message_zh="该消息编号已被内容不同的消息使用",
            )
        ],
        "undecodable": [
            NackReason(
                path="$",
                rule="undecodable",
                message="the value is not a single-object Avro envelope",
                message_zh="消息无法解码",
            )
        ],
    }
    return reasons.get(
        code,
        [
            NackReason(
                path="payload",
                rule=code,
                message="the receiving department's system refused the message",
                message_zh="收件机关业务系统拒收该消息",
            )
        ],
    )


def bus_delivered(ctx: Ctx) -> dict[str, Any]:
    """The router audited a message and delivered it (with its copies)."""
    kind = ctx.get("original_kind", ctx.pick(_BUSINESS_KINDS))
    recipients = SAMPLE_ROUTES[kind][1] if kind in SAMPLE_ROUTES else [BUREAU]
    return {
        "original_message_id": ctx.uuid(),
        "original_kind": kind,
        "recipients": list(recipients),
        "audit_index": ctx.rng.randint(0, 250_000),
        "delivered_at": ctx.before(min_h=0, max_h=0.002),
    }


def bus_ack(ctx: Ctx) -> dict[str, Any]:
    """A department's system accepted a message."""
    return {
        "original_message_id": ctx.uuid(),
        "acknowledged_by": ctx.pick((BUREAU, POLICE, PROCURATORATE, COURT, *REGULATORS)),
        "acknowledged_at": ctx.before(min_h=0, max_h=0.05),
    }


def bus_nack(ctx: Ctx) -> dict[str, Any]:
    """A message was rejected, with the code and reasons the router or department gives."""
    code = ctx.get("code", ctx.pick(NACK_CODES))
    department = ctx.pick((BUREAU, POLICE, *REGULATORS))
    return {
        "original_message_id": ctx.uuid(),
        "code": code,
        "reasons": _nack_reasons(code),
        "rejected_by": department if code == "rejected_by_department" else "casebus",
        "rejected_at": ctx.before(min_h=0, max_h=0.01),
    }


def _sla_event(ctx: Ctx, kind: str) -> dict[str, Any]:
    default = ctx.pick(list(_POLICIES))
    policy_id = ctx.get("policy_id", default)
    owner, waiting, period = _POLICIES.get(policy_id, _POLICIES[default])
    regulator = ctx.pick(REGULATORS)
    lead = timedelta(seconds=ctx.rng.randint(3600, int(period.total_seconds() // 2)))
    late = timedelta(seconds=ctx.rng.randint(1, 90))
    due = ctx.now - late if kind == "sla.breach" else ctx.now + lead
    data: dict[str, Any] = {
        "policy_id": policy_id,
        "deadline_id": str(ctx.uuid()),
        "case_id": ctx.case_id(),
        "opened_by": ctx.uuid(),
        "due_at": due,
        "owner_agency": owner or regulator,
        "waiting_agency": waiting or regulator,
        "occurred_at": ctx.now,
    }
    if kind == "sla.met":
        data["closed_by"] = ctx.uuid()
    return data


@functools.cache
def sample_audit_key() -> Ed25519PrivateKey:
    """The fixed key sample tree heads are signed with (its name is :data:`AUDIT_ORIGIN`)."""
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"casebus.samples.audit").digest())


def audit_tree_head(ctx: Ctx) -> dict[str, Any]:
    """A signed C2SP checkpoint of the audit log, as the router sends the procuratorate."""
    origin = ctx.get("origin", AUDIT_ORIGIN)
    size = ctx.get("tree_size", ctx.rng.randint(1_000, 400_000))
    root = ctx.get("root_hash", ctx.rng.randbytes(32))
    issued_at: datetime = ctx.get("issued_at", ctx.now)
    key: Ed25519PrivateKey = ctx.get("audit_key", sample_audit_key())
    millis = (issued_at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
    note = sign_checkpoint(Checkpoint(origin, size, root, millis), origin, key)
    return {
        "checkpoint": note,
        "origin": origin,
        "tree_size": size,
        "root_hash": root,
        "issued_at": issued_at,
    }


BUILDERS: dict[str, Builder] = {
    "bus.delivered": bus_delivered,
    "bus.ack": bus_ack,
    "bus.nack": bus_nack,
    "sla.warning": lambda ctx: _sla_event(ctx, "sla.warning"),
    "sla.breach": lambda ctx: _sla_event(ctx, "sla.breach"),
    "sla.met": lambda ctx: _sla_event(ctx, "sla.met"),
    "audit.tree_head": audit_tree_head,
}

OPTIONS: dict[str, tuple[str, ...]] = {"audit.tree_head": ("audit_key",)}
"""Kind → the overrides beyond the model's own fields that its builder understands."""
