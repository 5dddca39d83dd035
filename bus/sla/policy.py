"""Deadline policies as data: the model of ``deploy/sla-policies.yaml`` and its loader.

A policy says which message opens a deadline (or that it recurs monthly), which kinds close it,
how the due instant is computed, when to warn, who owes the action and who waits, and on which
legal basis. A bad file raises :class:`~bus.errors.ConfigError` naming the policy id and field.
Field names in ``start_field``, ``from_field``, ``moves_on.due_field`` and ``when`` are looked
up in the message payload first, then in the envelope (``sent_at``, ``due_at``); a dotted name
(``approval.approved_at``) reaches into a nested record. :mod:`bus.sla.fields` checks every
such name against the payload models.
"""

from __future__ import annotations

from calendar import monthrange
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from bus.config_files import read_yaml
from bus.errors import (
    ConfigError,
    NaiveDatetimeError,
    PolicyInputError,
    UnknownPolicyError,
)
from bus.models.kinds import BUSINESS_KINDS
from bus.sla.calendar import (
    REPO_ROOT,
    SHANGHAI,
    PeriodUnit,
    WarningSpec,
    WorkCalendar,
    add_months,
    due_at,
    end_of_day,
    parse_warning,
    warning_points,
)

__all__ = [
    "DEFAULT_POLICIES_PATH",
    "KINDS",
    "ConditionalPeriod",
    "MovesOn",
    "OpensOn",
    "Period",
    "Policy",
    "PolicySet",
    "Schedule",
    "field_value",
    "load_policies",
]

DEFAULT_POLICIES_PATH = REPO_ROOT / "deploy" / "sla-policies.yaml"
"""The shipped policy file."""

KINDS: tuple[str, ...] = BUSINESS_KINDS
"""Every message kind a policy may name: :data:`bus.models.kinds.BUSINESS_KINDS`."""

Party = Literal[
    "recipient", "sender", "enforcement", "regulator", "police", "procuratorate", "court"
]
Scalar = bool | int | float | str


def _known_kind(value: str) -> str:
    if value not in KINDS:
        raise ValueError(f"unknown kind {value!r}; known kinds: {', '.join(KINDS)}")
    return value


Kind = Annotated[str, AfterValidator(_known_kind)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _same(a: object, b: object) -> bool:
    # True == 1 in Python; a condition on a flag must not match a count.
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b


_MISSING: Any = object()


def field_value(payload: Mapping[str, Any], name: str) -> Any:
    """The value at ``name`` in ``payload``; a dotted name (``approval.approved_at``) walks
    nested records. A field that is absent anywhere along the way reads as ``None``."""
    value = _walk(payload, name)
    return None if value is _MISSING else value


def _walk(payload: Mapping[str, Any], name: str) -> Any:
    value: Any = payload
    for part in name.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _matches(when: Mapping[str, Scalar], payload: Mapping[str, Any]) -> bool:
    return all(
        (value := _walk(payload, key)) is not _MISSING and _same(value, want)
        for key, want in when.items()
    )


class Period(_Strict):
    """A period: ``amount`` of ``unit``."""

    unit: PeriodUnit
    amount: int = Field(ge=1)


class ConditionalPeriod(_Strict):
    """A period that applies instead of the default when the opening payload matches ``when``."""

    when: dict[str, Scalar] = Field(min_length=1)
    period: Period


class OpensOn(_Strict):
    """The message that opens the deadline, its start field, and an optional payload condition.

    ``start_of`` names another policy instead of a field: the period starts when that
    policy's deadline in the same thread started (a jurisdiction forward's 24 hours run from
    the receipt that started the police's filing review; the forward itself does not say).
    """

    kind: Kind
    start_field: str | None = None
    start_of: str | None = None
    when: dict[str, Scalar] = {}

    @model_validator(mode="after")
    def _one_start(self) -> Self:
        if self.start_field is not None and self.start_of is not None:
            raise ValueError("give at most one of start_field and start_of")
        return self


class MovesOn(_Strict):
    """A message that replaces the due instant with one of its fields (e.g. ``expected_at``)."""

    kind: Kind
    due_field: str


class Schedule(_Strict):
    """A recurring deadline: for each month, due on ``due_day`` of the following month."""

    every: Literal["month"]
    due_day: int = Field(ge=1, le=31)
    period_field: str = "period"


class _Warning(_Strict):
    fraction: float | None = None
    before: dict[Literal["hours", "calendar_days", "working_days"], int] | None = None

    @model_validator(mode="after")
    def _valid(self) -> Self:
        given = (("fraction", self.fraction), ("before", self.before))
        spec = {key: value for key, value in given if value is not None}
        parse_warning(spec)  # raises PeriodError (a ValueError) with the reason
        return self

    def spec(self) -> WarningSpec:
        if self.fraction is not None:
            return parse_warning({"fraction": self.fraction})
        return parse_warning({"before": dict(self.before or {})})


class Policy(_Strict):
    """One deadline policy; see ``deploy/sla-policies.yaml`` for the annotated format."""

    id: str = Field(pattern=r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
    opens_on: OpensOn | None = None
    schedule: Schedule | None = None
    closes_on: list[Kind] = Field(min_length=1)
    match_by: Literal["correlation_id", "case_id", "period"] = "correlation_id"
    moves_on: MovesOn | None = None
    period: Period | None = None
    from_field: str | None = None
    conditional_periods: list[ConditionalPeriod] = []
    holiday_extension: bool
    warnings: list[_Warning] = []
    owner: Party
    waiting: Party
    notify_procuratorate: bool = False
    obligation: Literal["duty", "window"] = "duty"
    policy_default: bool = False
    legal_basis: str = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if (self.opens_on is None) == (self.schedule is None):
            raise ValueError("give exactly one of opens_on and schedule")
        if self.schedule is not None:
            if self.period or self.from_field or self.conditional_periods or self.moves_on:
                raise ValueError(
                    "a scheduled policy takes no period, from_field, conditional_periods "
                    "or moves_on"
                )
            if self.match_by != "period":
                raise ValueError("a scheduled policy is matched by period (match_by: period)")
            if "sender" in (self.owner, self.waiting) or "recipient" in (self.owner, self.waiting):
                raise ValueError("a scheduled policy has no opening message: name agency kinds")
        else:
            if self.period is None:
                raise ValueError("period is required (it is the fallback when from_field is set)")
            if self.match_by == "period":
                raise ValueError("match_by: period is only for scheduled policies")
        return self

    # --- what the engine asks ----------------------------------------------------------------

    def opened_by(self, kind: str, payload: Mapping[str, Any]) -> bool:
        """True if a message of ``kind`` with ``payload`` opens this deadline."""
        return (
            self.opens_on is not None
            and self.opens_on.kind == kind
            and _matches(self.opens_on.when, payload)
        )

    def closed_by(self, kind: str) -> bool:
        """True if a message of ``kind`` (matched by ``match_by``) closes this deadline."""
        return kind in self.closes_on

    def period_for(self, payload: Mapping[str, Any]) -> Period:
        """The period that applies: the first matching conditional period, else ``period``."""
        for conditional in self.conditional_periods:
            if _matches(conditional.when, payload):
                return conditional.period
        if self.period is None:
            raise PolicyInputError(f"policy {self.id!r} is scheduled; use due_for_month")
        return self.period

    def start_from(
        self, *, sent_at: datetime, payload: Mapping[str, Any], thread_start: datetime | None = None
    ) -> datetime:
        """The start instant: the payload's ``start_field`` if the policy names one, the
        ``thread_start`` the engine found for ``opens_on.start_of``, else the envelope's
        ``sent_at``."""
        if self.opens_on is not None and self.opens_on.start_of is not None:
            if thread_start is None:
                raise PolicyInputError(
                    f"policy {self.id!r}: no {self.opens_on.start_of!r} deadline in this "
                    "thread to count from"
                )
            return self._instant(thread_start, "start_of")
        field = self.opens_on.start_field if self.opens_on else None
        if field is None:
            return self._instant(sent_at, "sent_at")
        value = _lookup(field, payload, {"sent_at": sent_at})
        if value is None:
            raise PolicyInputError(f"policy {self.id!r}: the opening message has no {field!r}")
        return self._instant(value, field)

    def due_from(
        self,
        start: datetime,
        *,
        payload: Mapping[str, Any],
        envelope_due_at: datetime | None = None,
        calendar: WorkCalendar,
    ) -> datetime:
        """The due instant of a deadline opened at ``start`` by a message with ``payload``.

        With ``from_field`` set and present (payload first, then the envelope's ``due_at``),
        that instant is the due instant as given; otherwise the period applies.
        """
        if self.from_field is not None:
            value = _lookup(self.from_field, payload, {"due_at": envelope_due_at})
            if value is not None:
                return self._instant(value, self.from_field).astimezone(SHANGHAI)
        period = self.period_for(payload)
        return due_at(
            start,
            unit=period.unit,
            amount=period.amount,
            holiday_extension=self.holiday_extension,
            calendar=calendar,
        )

    def moved_due(self, payload: Mapping[str, Any]) -> datetime:
        """The new due instant carried by a ``moves_on`` message's payload."""
        if self.moves_on is None:
            raise PolicyInputError(f"policy {self.id!r} has no moves_on")
        field = self.moves_on.due_field
        value = field_value(payload, field)
        if value is None:
            raise PolicyInputError(f"policy {self.id!r}: the {self.moves_on.kind} has no {field!r}")
        return self._instant(value, field).astimezone(SHANGHAI)

    def due_for_month(self, year: int, month: int, *, calendar: WorkCalendar) -> datetime:
        """For a scheduled policy: the due instant for reporting month ``year``-``month``."""
        if self.schedule is None:
            raise PolicyInputError(f"policy {self.id!r} is not scheduled")
        following = add_months(date(year, month, 1), 1)
        days_in_month = monthrange(following.year, following.month)[1]
        day = following.replace(day=min(self.schedule.due_day, days_in_month))
        if self.holiday_extension and not calendar.is_working_day(day):
            day = calendar.next_working_day(day)
        return end_of_day(day)

    def warning_instants(
        self, start: datetime, due: datetime, *, calendar: WorkCalendar
    ) -> list[datetime]:
        """The instants at which to warn about a deadline from ``start`` to ``due``."""
        return warning_points(start, due, [w.spec() for w in self.warnings], calendar=calendar)

    def _instant(self, value: object, field: str) -> datetime:
        try:
            return _to_instant(value)
        except (ValueError, TypeError) as e:
            raise PolicyInputError(f"policy {self.id!r}: field {field!r}: {e}") from e


def _lookup(name: str, payload: Mapping[str, Any], envelope: Mapping[str, Any]) -> Any:
    value = field_value(payload, name)
    return value if value is not None else envelope.get(name)


def _to_instant(value: object) -> datetime:
    """An aware datetime from a datetime, a date (its end), ISO 8601 text or epoch ms."""
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise NaiveDatetimeError(f"{value.isoformat()} has no UTC offset")
        return value
    if isinstance(value, date):
        return end_of_day(value)
    if isinstance(value, str):
        text = value.strip()
        if len(text) == 10:
            return end_of_day(date.fromisoformat(text))
        return _to_instant(datetime.fromisoformat(text))
    if isinstance(value, int) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    raise TypeError(f"expected a timestamp, got {type(value).__name__} {value!r}")


class _PolicyFile(_Strict):
    version: Literal[1]
    policies: list[Policy] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_ids(self) -> Self:
        seen: set[str] = set()
        dupes: set[str] = set()
        for policy in self.policies:
            (dupes if policy.id in seen else seen).add(policy.id)
        if dupes:
            raise ValueError(f"duplicate policy ids: {', '.join(sorted(dupes))}")
        for policy in self.policies:
            source = policy.opens_on.start_of if policy.opens_on else None
            if source is not None and (source not in seen or source == policy.id):
                raise ValueError(
                    f"policy {policy.id!r}: opens_on.start_of {source!r} is not another "
                    "policy of this file"
                )
        return self


class PolicySet:
    """The loaded policies, by id, in file order."""

    def __init__(self, policies: Sequence[Policy], *, source: Path | None = None) -> None:
        self._by_id = {p.id: p for p in policies}
        self.source = source

    def __iter__(self) -> Iterator[Policy]:
        return iter(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, policy_id: object) -> bool:
        return policy_id in self._by_id

    @property
    def ids(self) -> list[str]:
        """Every policy id, in file order."""
        return list(self._by_id)

    def get(self, policy_id: str) -> Policy:
        """The policy with this id; :class:`UnknownPolicyError` lists the known ids if none."""
        try:
            return self._by_id[policy_id]
        except KeyError:
            raise UnknownPolicyError(policy_id, self.ids) from None

    def opened_by(self, kind: str, payload: Mapping[str, Any]) -> list[Policy]:
        """The policies a message of ``kind`` with ``payload`` opens."""
        return [p for p in self if p.opened_by(kind, payload)]

    def closed_by(self, kind: str) -> list[Policy]:
        """The policies a message of ``kind`` may close."""
        return [p for p in self if p.closed_by(kind)]

    def moved_by(self, kind: str) -> list[Policy]:
        """The policies whose deadline a message of ``kind`` moves."""
        return [p for p in self if p.moves_on is not None and p.moves_on.kind == kind]

    def replies(self) -> dict[str, tuple[str, ...]]:
        """Kinds that answer an earlier message → the policies whose deadline they close or
        move, in file order.

        Such a deadline is found by the answer's thread (``match_by: correlation_id``): the
        answer must carry the original's message id (or its thread) as ``correlation_id`` or
        ``causation_id``, or the deadline is never closed. A kind that closes only what it
        opens itself (a transfer) answers nothing; deadlines matched by case or by reporting
        month need no thread.
        """
        out: dict[str, list[str]] = {}
        for policy in self:
            if policy.match_by != "correlation_id" or policy.opens_on is None:
                continue
            kinds = list(policy.closes_on)
            if policy.moves_on is not None:
                kinds.append(policy.moves_on.kind)
            for kind in kinds:
                if kind != policy.opens_on.kind and policy.id not in out.get(kind, []):
                    out.setdefault(kind, []).append(policy.id)
        return {kind: tuple(ids) for kind, ids in out.items()}


def _describe(err: Mapping[str, Any], raw: object) -> str:
    loc = [str(p) for p in err["loc"]]
    where = ".".join(loc) or "(file)"
    if len(loc) >= 2 and loc[0] == "policies" and loc[1].isdigit():
        index = int(loc[1])
        items = raw.get("policies") if isinstance(raw, dict) else None
        item = items[index] if isinstance(items, list) and index < len(items) else None
        pid = item.get("id") if isinstance(item, dict) else None
        field = ".".join(loc[2:]) or "(policy)"
        where = f"policy {pid!r} (policies[{index}]) field {field}"
    return f"{where}: {err['msg']}"


def load_policies(path: Path | str = DEFAULT_POLICIES_PATH) -> PolicySet:
    """Read and validate a policy file; a bad file raises ConfigError naming id and field."""
    path = Path(path)
    raw = read_yaml(path, "SLA policy file")
    try:
        parsed = _PolicyFile.model_validate(raw)
    except ValidationError as e:
        problems = "; ".join(_describe(err, raw) for err in e.errors())
        raise ConfigError(f"{path}: invalid SLA policy file: {problems}") from e
    return PolicySet(parsed.policies, source=path)
