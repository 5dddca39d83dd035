"""Check a policy set against the payload models: every field it names must exist, hold an
instant where an instant is read, and every ``when`` value must be one the field can take.

A policy is data a ministry edits; a misspelt field would silently never open (or never start)
a deadline. The engine refuses to start on any problem found here, and ``tests/test_sla_policy.py``
runs the same check on the shipped file.
"""

from __future__ import annotations

import enum
import types
from collections.abc import Iterator
from datetime import date, datetime
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel

from bus.models import PAYLOAD_MODELS
from bus.sla.policy import Policy, PolicySet, Scalar

__all__ = ["policy_field_problems"]

# Envelope fields a policy may name instead of a payload field (see bus.sla.policy).
_ENVELOPE_START = "sent_at"
_ENVELOPE_DUE = "due_at"

_NOT_FOUND: Any = object()


def _unwrap(annotation: Any) -> Any:
    """Strip ``Annotated`` and ``Optional``: ``Annotated[datetime, ...] | None`` → datetime."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            rest = [a for a in get_args(annotation) if a is not type(None)]
            if len(rest) != 1:
                return annotation
            annotation = rest[0]
        else:
            return annotation


def _field_type(model: type[BaseModel], path: str) -> Any:
    """The (unwrapped) type of the dotted ``path`` in ``model``, or ``_NOT_FOUND``."""
    current: Any = model
    for part in path.split("."):
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return _NOT_FOUND
        field = current.model_fields.get(part)
        if field is None:
            return _NOT_FOUND
        current = _unwrap(field.annotation)
    return current


def _is_instant(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, datetime | date)


def _accepts(annotation: Any, value: Scalar) -> str | None:
    """Why ``value`` can never equal a value of this field, or None if it can."""
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        allowed = [m.value for m in annotation]
        if value not in allowed:
            return f"{value!r} is not one of {allowed}"
        return None
    if annotation is bool:
        return None if isinstance(value, bool) else f"{value!r} is not a boolean"
    if annotation is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        return None if ok else f"{value!r} is not an integer"
    if annotation is str:
        return None if isinstance(value, str) else f"{value!r} is not text"
    return f"the field's type {annotation!r} cannot be compared with a scalar"


def _instant_field(kind: str, path: str, where: str, envelope_field: str | None) -> Iterator[str]:
    if path == envelope_field:
        return
    model = PAYLOAD_MODELS[kind]
    found = _field_type(model, path)
    if found is _NOT_FOUND:
        also = f"; envelope: {envelope_field}" if envelope_field else ""
        yield (
            f"{where}: {kind} has no field {path!r} (payload fields: "
            f"{', '.join(model.model_fields)}{also})"
        )
    elif not _is_instant(found):
        yield f"{where}: {kind} field {path!r} is not a timestamp or date"


def _conditions(kind: str, when: dict[str, Scalar], where: str) -> Iterator[str]:
    model = PAYLOAD_MODELS[kind]
    for path, value in when.items():
        found = _field_type(model, path)
        if found is _NOT_FOUND:
            yield (
                f"{where}: {kind} has no field {path!r} (payload fields: "
                f"{', '.join(model.model_fields)})"
            )
            continue
        why = _accepts(found, value)
        if why is not None:
            yield f"{where}: {kind} field {path!r}: {why}"


def _policy_problems(policy: Policy) -> Iterator[str]:
    pid = policy.id
    if policy.opens_on is not None:
        kind = policy.opens_on.kind
        yield from _conditions(kind, policy.opens_on.when, f"{pid}: opens_on.when")
        if policy.opens_on.start_field is not None:
            yield from _instant_field(
                kind, policy.opens_on.start_field, f"{pid}: opens_on.start_field", _ENVELOPE_START
            )
        if policy.from_field is not None:
            yield from _instant_field(kind, policy.from_field, f"{pid}: from_field", _ENVELOPE_DUE)
        for i, conditional in enumerate(policy.conditional_periods):
            yield from _conditions(kind, conditional.when, f"{pid}: conditional_periods[{i}].when")
    if policy.moves_on is not None:
        moves = policy.moves_on
        yield from _instant_field(moves.kind, moves.due_field, f"{pid}: moves_on.due_field", None)
    if policy.schedule is not None:
        for kind in policy.closes_on:
            yield from _instant_field(
                kind, policy.schedule.period_field, f"{pid}: schedule.period_field", None
            )


def policy_field_problems(policies: PolicySet) -> list[str]:
    """Every field or enum value a policy names that its kind's payload model does not have."""
    return [problem for policy in policies for problem in _policy_problems(policy)]
