"""Payloads the bus itself writes: delivery receipts, acks and nacks, SLA events, tree heads."""

from __future__ import annotations

from typing import Annotated, ClassVar, Final
from uuid import UUID

from pydantic import Field, StringConstraints

from bus.errors import Problem
from bus.models._common import (
    CODE_PATTERN,
    AgencyId,
    AvroModel,
    Count,
    PayloadModel,
    Text,
    UtcDatetime,
)
from bus.models._identifier import Identifier

__all__ = [
    "NACK_CODES",
    "SIGNAL_KINDS",
    "AuditTreeHead",
    "BusAck",
    "BusDelivered",
    "BusNack",
    "NackReason",
    "SlaBreach",
    "SlaMet",
    "SlaWarning",
]

NACK_CODES: Final = (
    "unauthorized_route",
    "invalid_payload",
    "bad_signature",
    "conflicting_duplicate",
    "undecodable",
    "rejected_by_department",
    "invalid_envelope",
    "unknown_kind",
    "party_mismatch",
    "principal_mismatch",
    "too_large",
    "undeliverable",
    "log_unwitnessed",
    "attachment_not_held",
)
"""The nack codes casebus emits today; the field stays an open string so new codes need no schema
change."""


class BusDelivered(PayloadModel):
    """``bus.delivered``: the bus audited a message and put it in the recipients' inboxes."""

    KIND: ClassVar[str] = "bus.delivered"
    SCHEMA_VERSION: ClassVar[int] = 1

    original_message_id: UUID
    original_kind: Text
    recipients: Annotated[list[AgencyId], Field(min_length=1)]
    audit_index: Count
    delivered_at: UtcDatetime


class BusAck(PayloadModel):
    """``bus.ack``: the recipient's departmental system accepted the message."""

    KIND: ClassVar[str] = "bus.ack"
    SCHEMA_VERSION: ClassVar[int] = 1
    AUTHOR_FIELDS: ClassVar[tuple[str, ...]] = ("acknowledged_by",)

    original_message_id: UUID
    acknowledged_by: AgencyId
    acknowledged_at: UtcDatetime


class NackReason(AvroModel):
    """One problem with a rejected message: where, which rule, what is wrong."""

    path: Text
    rule: Text
    message: Text
    message_zh: Text | None = None

    @classmethod
    def from_problem(cls, problem: Problem) -> NackReason:
        """The nack form of a validation :class:`Problem`."""
        return cls(
            path=problem.path or "$",
            rule=problem.rule or "invalid",
            message=problem.message or problem.rule or "invalid",
            message_zh=problem.message_zh or None,
        )


class BusNack(PayloadModel):
    """``bus.nack``: a message was rejected, with a stable code and every reason."""

    KIND: ClassVar[str] = "bus.nack"
    SCHEMA_VERSION: ClassVar[int] = 1
    AUTHOR_FIELDS: ClassVar[tuple[str, ...]] = ("rejected_by",)

    original_message_id: UUID
    code: Annotated[str, StringConstraints(pattern=CODE_PATTERN)]
    reasons: list[NackReason] = Field(default_factory=list)
    rejected_by: AgencyId
    rejected_at: UtcDatetime


SIGNAL_KINDS: Final = frozenset({BusAck.KIND, BusNack.KIND})
"""The signals: a recipient's answer to a message. The router delivers them without sending their
sender a ``bus.delivered`` (an answer to an answer, as AS4 never receipts its own receipts and
errors), and an adapter drops any such receipt it still finds in an inbox."""


class _SlaEvent(PayloadModel):
    """Fields every SLA event carries."""

    policy_id: Text
    deadline_id: Text
    case_id: Identifier
    opened_by: UUID
    due_at: UtcDatetime
    owner_agency: AgencyId
    waiting_agency: AgencyId


class SlaWarning(_SlaEvent):
    """``sla.warning``: a deadline is about to pass."""

    KIND: ClassVar[str] = "sla.warning"
    SCHEMA_VERSION: ClassVar[int] = 1

    occurred_at: UtcDatetime


class SlaBreach(_SlaEvent):
    """``sla.breach``: a deadline passed without the awaited step."""

    KIND: ClassVar[str] = "sla.breach"
    SCHEMA_VERSION: ClassVar[int] = 1

    occurred_at: UtcDatetime


class SlaMet(_SlaEvent):
    """``sla.met``: the awaited step happened; ``closed_by`` is the message that closed it."""

    KIND: ClassVar[str] = "sla.met"
    SCHEMA_VERSION: ClassVar[int] = 1

    closed_by: UUID
    occurred_at: UtcDatetime


class AuditTreeHead(PayloadModel):
    """``audit.tree_head``: a signed checkpoint of the audit log (C2SP signed note)."""

    KIND: ClassVar[str] = "audit.tree_head"
    SCHEMA_VERSION: ClassVar[int] = 1

    checkpoint: Text
    origin: Text
    tree_size: Count
    root_hash: Annotated[bytes, Field(min_length=32, max_length=32)]
    issued_at: UtcDatetime
