"""Assemble samples: one payload of any kind, and a signed envelope carrying it with attachments."""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final, TypeVar

from bus.errors import UnknownOverrideError
from bus.models import KINDS, Envelope, PayloadModel, Signature, payload_model, validate_payload
from bus.party import Party
from bus.samples import _bus, _court, _criminal, _regulators
from bus.samples._agencies import REGULATORS, SAMPLE_ROUTES
from bus.samples._context import Builder, Ctx, local_date, sample_case_id, sample_time
from bus.samples._documents import sample_attachments
from bus.signing import sign_envelope

__all__ = [
    "SAMPLE_OPTIONS",
    "sample",
    "sample_envelope",
    "sample_payload",
]

M = TypeVar("M", bound=PayloadModel)

_BUILDERS: Final[dict[str, Builder]] = {
    **_criminal.BUILDERS,
    **_regulators.BUILDERS,
    **_court.BUILDERS,
    **_bus.BUILDERS,
}
_EXTRA = {**_criminal.OPTIONS, **_regulators.OPTIONS, **_court.OPTIONS, **_bus.OPTIONS}

SAMPLE_OPTIONS: Final[dict[str, tuple[str, ...]]] = {
    kind: ("now", *_EXTRA.get(kind, ())) for kind in KINDS
}
"""Kind → the overrides :func:`sample_payload` takes besides the payload model's own fields."""

# The envelope's due_at mirrors the payload's where the payload sets the deadline of the reply
# (the opinion.response policy reads it from the envelope).
_DUE_FROM_PAYLOAD = frozenset({"opinion.request", "supervision.notice"})


def _now(overrides: dict[str, Any], rng: random.Random) -> datetime:
    """The ``now`` override, else an instant of the sample fortnight drawn from ``rng``."""
    now = overrides.get("now")
    if now is None:
        return sample_time(rng)
    if not isinstance(now, datetime):
        raise TypeError(f"now must be an aware datetime, got {type(now).__name__}")
    return now


def sample_payload(kind: str, rng: random.Random, **overrides: Any) -> PayloadModel:
    """A valid, plausible payload of ``kind`` drawn from ``rng``; ``overrides`` replace fields.

    An override named like a field of the kind's model replaces that field; fields derived from
    it follow (``decision="NOT_FILED"`` brings reasons and returned materials). The options in
    :data:`SAMPLE_OPTIONS` steer the draw instead. Anything else raises
    :class:`UnknownOverrideError`; a result that breaks the model's rules raises
    :class:`~bus.errors.ValidationFailedError`, as for department input.
    """
    model = payload_model(kind)
    options = SAMPLE_OPTIONS[kind]
    unknown = sorted(set(overrides) - set(model.model_fields) - set(options))
    if unknown:
        allowed = ", ".join(sorted({*model.model_fields, *options}))
        raise UnknownOverrideError(f"{kind}: unknown override(s) {unknown}; allowed: {allowed}")
    ctx = Ctx(rng, overrides, _now(overrides, rng))
    data = _BUILDERS[kind](ctx)
    data.update((k, v) for k, v in overrides.items() if k in model.model_fields)
    return validate_payload(kind, data)


def sample(model: type[M], rng: random.Random, **overrides: Any) -> M:
    """:func:`sample_payload` typed by its model: ``sample(CriminalTransfer, rng)``."""
    payload = sample_payload(model.KIND, rng, **overrides)
    if not isinstance(payload, model):  # pragma: no cover - PAYLOAD_MODELS maps KIND to model
        raise TypeError(f"{model.KIND} sampled as {type(payload).__name__}")
    return payload


def sample_envelope(
    party: Party,
    kind: str,
    rng: random.Random,
    *,
    recipients: Sequence[str] | None = None,
    case_id: str | None = None,
    payload: PayloadModel | None = None,
    message_id: uuid.UUID | None = None,
    correlation_id: str | None = None,
    causation_id: str | None = None,
    sent_at: datetime | None = None,
    **payload_overrides: Any,
) -> Envelope:
    """A ``kind`` message from ``party``, signed, with the attachments its payload refers to.

    The payload is :func:`sample_payload` of ``payload_overrides`` (or ``payload`` as given);
    its ``case_id``, where the model has one, defaults to the envelope's. A regulator among the
    sender and recipients picks the violation (``regulator`` option) unless the caller does.
    ``recipients`` default to :data:`SAMPLE_ROUTES`; ``case_id`` to the payload's or a new one;
    ``sent_at`` to the sample's ``now``; ``message_id`` is drawn from ``rng``.
    """
    model = payload_model(kind)
    if payload is not None and (payload_overrides or kind != payload.KIND):
        raise ValueError(f"give either a {kind} payload or overrides for one, not both or another")
    to = list(recipients) if recipients is not None else list(SAMPLE_ROUTES[kind][1])
    now = _now(payload_overrides, rng)
    if payload is None:
        overrides = {**payload_overrides, "now": now}
        if case_id is not None and "case_id" in model.model_fields:
            overrides.setdefault("case_id", case_id)
        for name in model.AUTHOR_FIELDS:  # who acknowledged or refused is who signs
            overrides.setdefault(name, party.agency_id)
        regulators = [a for a in (party.agency_id, *to) if a in REGULATORS]
        if "regulator" in SAMPLE_OPTIONS[kind] and regulators:
            overrides.setdefault("regulator", regulators[0])
        payload = sample_payload(kind, rng, **overrides)
    own_case = getattr(payload, "case_id", None)
    if case_id is None:
        case_id = (
            own_case
            if isinstance(own_case, str)
            else sample_case_id(rng, year=local_date(now).year)
        )
    mid = message_id or uuid.UUID(int=rng.getrandbits(128), version=4)
    due = getattr(payload, "due_at", None) if kind in _DUE_FROM_PAYLOAD else None
    unsigned = Envelope(
        message_id=mid,
        kind=kind,
        schema_version=payload.SCHEMA_VERSION,
        sender=party.agency_id,
        recipients=to,
        case_id=case_id,
        correlation_id=correlation_id or str(mid),
        causation_id=causation_id,
        sent_at=sent_at or now,
        due_at=due,
        payload=party.codec.encode_payload(kind, payload),
        attachments=sample_attachments(payload),
        signature=Signature(
            algorithm=party.signer.algorithm, key_id=party.signer.key_id, value=b""
        ),
    )
    return sign_envelope(unsigned, party.signer, codec=party.codec)
