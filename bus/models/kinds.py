"""Which model carries which kind: ``KINDS``, ``PAYLOAD_MODELS`` and :func:`validate_payload`.

``KINDS`` is read from the models' own ``KIND``, so a kind is registered here once, by adding its
model to ``_MODELS``; docs/changing-casebus.md lists the other places a new kind touches.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from pydantic import ValidationError

from bus.errors import Problem, ValidationFailedError
from bus.models import bus_kinds, court, criminal, regulators
from bus.models._common import PayloadModel
from bus.models._problems import problems_from_validation_error

__all__ = [
    "BUSINESS_KINDS",
    "BUS_OWN_PREFIXES",
    "KINDS",
    "PAYLOAD_MODELS",
    "payload_model",
    "validate_payload",
]

_MODELS: tuple[type[PayloadModel], ...] = (
    criminal.CriminalTransfer,
    criminal.CriminalReceipt,
    criminal.CriminalJurisdictionForward,
    criminal.CriminalFilingDecision,
    criminal.CriminalReconsiderationRequest,
    criminal.CriminalReconsiderationDecision,
    criminal.CriminalEvidenceHandover,
    criminal.CriminalCaseUpdate,
    criminal.SupervisionRequest,
    criminal.SupervisionNotice,
    criminal.ObstructionReport,
    regulators.ClueHandover,
    regulators.ClueReceipt,
    regulators.OpinionRequest,
    regulators.OpinionResponse,
    regulators.OpinionDelegated,
    regulators.PenaltyFeedback,
    court.CourtExecutionApplication,
    court.CourtAcceptance,
    court.CourtRuling,
    bus_kinds.BusDelivered,
    bus_kinds.BusAck,
    bus_kinds.BusNack,
    bus_kinds.SlaWarning,
    bus_kinds.SlaBreach,
    bus_kinds.SlaMet,
    bus_kinds.AuditTreeHead,
)

KINDS: Final[tuple[str, ...]] = tuple(m.KIND for m in _MODELS)
"""Every message kind of design §4, in its order: the one list (docs/changing-casebus.md)."""

BUS_OWN_PREFIXES: Final[tuple[str, ...]] = ("bus.", "sla.", "audit.")
"""The families the bus writes itself (receipts, deadline events, tree heads); no agency does."""

BUSINESS_KINDS: Final[tuple[str, ...]] = tuple(
    k for k in KINDS if not k.startswith(BUS_OWN_PREFIXES)
)
"""The kinds agencies send one another: the ones a deadline policy may name."""

PAYLOAD_MODELS: Final[dict[str, type[PayloadModel]]] = {m.KIND: m for m in _MODELS}
"""Message kind → the pydantic model of its payload (each has ``to_avro`` / ``from_avro``)."""


def payload_model(kind: str) -> type[PayloadModel]:
    """The payload model of ``kind``; raises :class:`ValidationFailedError` for an unknown kind."""
    model = PAYLOAD_MODELS.get(kind)
    if model is None:
        problem = Problem(
            path="kind",
            rule="unknown_kind",
            message="unknown message kind",
            value=kind,
            message_zh="未知的消息类型",
        )
        raise ValidationFailedError([problem])
    return model


def validate_payload(kind: str, data: Mapping[str, Any]) -> PayloadModel:
    """Validate ``data`` as a ``kind`` payload (:class:`ValidationFailedError` lists problems)."""
    model = payload_model(kind)
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ValidationFailedError(problems_from_validation_error(e)) from e
