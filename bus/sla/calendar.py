"""Day counting for deadlines: working days, holiday extension, due instants, warning points.

The rules are those of ``domain.md`` ("How days are counted"): the time zone is Asia/Shanghai;
the day an event happens is not counted; a period counted in days ends at 23:59:59 local time of
its last day; a working day is a day that is neither a public holiday nor a weekend day, unless it
is a make-up working day (调休). Holidays and make-up days come from the ``chinesecalendar``
package; a year it does not know is read from the override file (``deploy/holidays-override.yaml``)
or, failing that, counted with weekends only — loudly, with a log line and a metric.
"""

from __future__ import annotations

import calendar as _stdlib_calendar
import functools
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args
from zoneinfo import ZoneInfo

import chinese_calendar
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from bus.config_files import read_yaml
from bus.errors import ConfigError, NaiveDatetimeError, PeriodError

if TYPE_CHECKING:
    from prometheus_client import Counter

# structlog and prometheus_client are imported on first use (a year nobody knows), not here:
# `casebus sla due` starts without them (tests/test_cli_startup.py). The SLA engine registers
# the counter at start through bus.sla.metrics, as it does its other metrics.

__all__ = [
    "DEFAULT_HOLIDAYS_OVERRIDE_PATH",
    "SHANGHAI",
    "BeforeWarning",
    "FractionWarning",
    "PeriodUnit",
    "WarningSpec",
    "WorkCalendar",
    "add_months",
    "due_at",
    "end_of_day",
    "parse_warning",
    "unknown_year_counter",
    "warning_points",
]

SHANGHAI = ZoneInfo("Asia/Shanghai")
"""The one time zone every deadline is counted in."""

REPO_ROOT = Path(__file__).resolve().parents[2]
"""The checkout: :data:`bus.settings.REPO_ROOT`, without loading pydantic-settings."""

DEFAULT_HOLIDAYS_OVERRIDE_PATH = REPO_ROOT / "deploy" / "holidays-override.yaml"
"""Where the shipped override file lives."""

PeriodUnit = Literal["hours", "calendar_days", "working_days", "months"]
"""How a period is counted."""

_BEFORE_UNITS = ("hours", "calendar_days", "working_days")
_END_OF_DAY = time(23, 59, 59)

_COUNTER_LOCK = threading.Lock()


def unknown_year_counter() -> Counter:
    """``casebus_sla_calendar_unknown_year_total``, registered with Prometheus on first call."""
    with _COUNTER_LOCK:  # an adapter may count days in several threads at once
        return _unknown_year_counter()


@functools.cache
def _unknown_year_counter() -> Counter:
    from prometheus_client import Counter

    return Counter(
        "casebus_sla_calendar_unknown_year_total",
        "Years looked up that neither chinesecalendar nor the override file knows; "
        "such years count weekends only.",
        ["year"],
    )


def _require_aware(value: datetime, what: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise NaiveDatetimeError(f"{what} {value.isoformat()} has no UTC offset")
    return value


def end_of_day(day: date) -> datetime:
    """23:59:59 Asia/Shanghai on ``day``: where a period counted in days ends."""
    return datetime.combine(day, _END_OF_DAY, tzinfo=SHANGHAI)


def add_months(day: date, months: int) -> date:
    """The same day of the month ``months`` later, or that month's last day if it is shorter."""
    index = day.year * 12 + (day.month - 1) + months
    year, month = divmod(index, 12)
    last = _stdlib_calendar.monthrange(year, month + 1)[1]
    return date(year, month + 1, min(day.day, last))


# --- the override file -----------------------------------------------------------------------


class _OverrideYear(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    holidays: list[date] = []
    makeup_workdays: list[date] = []

    @field_validator("makeup_workdays")
    @classmethod
    def _weekend_only(cls, value: list[date]) -> list[date]:
        for d in value:
            if d.weekday() < 5:
                raise ValueError(f"{d} is a weekday; a make-up working day is a Saturday or Sunday")
        return value

    @model_validator(mode="after")
    def _disjoint(self) -> _OverrideYear:
        both = sorted(set(self.holidays) & set(self.makeup_workdays))
        if both:
            raise ValueError(f"dates listed as both holiday and make-up working day: {both}")
        return self


class _OverrideFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    years: dict[int, _OverrideYear] = {}

    @model_validator(mode="after")
    def _dates_in_their_year(self) -> _OverrideFile:
        for year, spec in self.years.items():
            stray = [d for d in (*spec.holidays, *spec.makeup_workdays) if d.year != year]
            if stray:
                raise ValueError(f"year {year} lists dates of another year: {stray}")
        return self


@dataclass(frozen=True, slots=True)
class _YearRule:
    holidays: frozenset[date]
    makeup_workdays: frozenset[date]


def _load_override(path: Path) -> dict[int, _YearRule]:
    raw = read_yaml(path, "holiday override file")
    try:
        parsed = _OverrideFile.model_validate(raw if raw is not None else {})
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(file)'}: {err['msg']}"
            for err in e.errors()
        )
        raise ConfigError(f"{path}: invalid holiday override file: {problems}") from e
    return {
        year: _YearRule(frozenset(spec.holidays), frozenset(spec.makeup_workdays))
        for year, spec in parsed.years.items()
    }


# --- the calendar ----------------------------------------------------------------------------


class WorkCalendar:
    """Which days are working days in mainland China.

    Years listed in the override file are taken from it (it overrides the package, so a late
    State Council notice can be applied before a new ``chinesecalendar`` release); other years
    come from ``chinesecalendar``; a year neither knows counts weekends only, and the first use
    of such a year by this calendar logs ``sla.calendar.unknown_year`` and increments
    ``casebus_sla_calendar_unknown_year_total``. A missing override file means no overrides; a
    malformed one raises :class:`~bus.errors.ConfigError` at construction.
    """

    def __init__(self, override_path: Path | str | None) -> None:
        self.override_path = Path(override_path) if override_path is not None else None
        self._overrides: dict[int, _YearRule] = {}
        if self.override_path is not None and self.override_path.exists():
            self._overrides = _load_override(self.override_path)
        self._reported_years: set[int] = set()

    def year_source(self, year: int) -> Literal["override", "chinesecalendar", "weekends_only"]:
        """Where this calendar takes ``year``'s holidays from."""
        if year in self._overrides:
            return "override"
        try:
            chinese_calendar.is_workday(date(year, 1, 1))
        except NotImplementedError:
            return "weekends_only"
        return "chinesecalendar"

    def is_working_day(self, day: date) -> bool:
        """True if ``day`` is a working day (make-up weekend days included)."""
        if isinstance(day, datetime):
            raise TypeError("is_working_day takes a date; convert instants with .astimezone first")
        rule = self._overrides.get(day.year)
        if rule is not None:
            if day in rule.makeup_workdays:
                return True
            return day.weekday() < 5 and day not in rule.holidays
        try:
            return bool(chinese_calendar.is_workday(day))
        except NotImplementedError:
            self._report_unknown_year(day.year)
            return day.weekday() < 5

    def next_working_day(self, day: date) -> date:
        """The first working day strictly after ``day``."""
        candidate = day + timedelta(days=1)
        while not self.is_working_day(candidate):
            candidate += timedelta(days=1)
        return candidate

    def add_working_days(self, day: date, n: int) -> date:
        """The ``n``-th working day after ``day`` (``day`` itself not counted).

        ``n == 0`` returns ``day``; a negative ``n`` counts back (the ``|n|``-th working day
        before ``day``).
        """
        step = timedelta(days=1 if n >= 0 else -1)
        current = day
        for _ in range(abs(n)):
            current += step
            while not self.is_working_day(current):
                current += step
        return current

    def _report_unknown_year(self, year: int) -> None:
        if year in self._reported_years:
            return
        self._reported_years.add(year)
        import structlog

        unknown_year_counter().labels(year=str(year)).inc()
        structlog.get_logger("bus.sla.calendar").warning(
            "sla.calendar.unknown_year",
            year=year,
            override_path=str(self.override_path) if self.override_path else None,
            counting="weekends_only",
        )


# --- due instants ----------------------------------------------------------------------------


def due_at(
    start: datetime,
    *,
    unit: PeriodUnit,
    amount: int,
    holiday_extension: bool,
    calendar: WorkCalendar,
) -> datetime:
    """When a period of ``amount`` ``unit`` that starts at ``start`` ends, in Asia/Shanghai.

    ``hours`` adds hours, never extended. ``calendar_days`` and ``months`` end at 23:59:59 of
    their last day, moved to the first working day after it when ``holiday_extension`` is set
    and that day is not a working day. ``working_days`` ends at 23:59:59 of the ``amount``-th
    working day after the start day. The start day is the local (Shanghai) date of ``start``.
    """
    _require_aware(start, "start")
    if amount < 0:
        raise PeriodError(f"amount must be >= 0, got {amount}")
    if unit == "hours":
        return (start.astimezone(UTC) + timedelta(hours=amount)).astimezone(SHANGHAI)
    start_day = start.astimezone(SHANGHAI).date()
    if unit == "working_days":
        return end_of_day(calendar.add_working_days(start_day, amount))
    if unit == "calendar_days":
        last = start_day + timedelta(days=amount)
    elif unit == "months":
        last = add_months(start_day, amount)
    else:
        raise PeriodError(f"unknown period unit {unit!r}; expected one of {get_args(PeriodUnit)}")
    if holiday_extension and not calendar.is_working_day(last):
        last = calendar.next_working_day(last)
    return end_of_day(last)


# --- warning points --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FractionWarning:
    """Warn when this fraction of the time from start to due has passed."""

    fraction: float


@dataclass(frozen=True, slots=True)
class BeforeWarning:
    """Warn this long before the due instant (``working_days`` counts back working days)."""

    unit: Literal["hours", "calendar_days", "working_days"]
    amount: int


WarningSpec = FractionWarning | BeforeWarning
"""One warning point of a policy."""


def parse_warning(spec: WarningSpec | Mapping[str, Any]) -> WarningSpec:
    """Read ``{"fraction": 0.5}`` or ``{"before": {"working_days": 1}}`` into a warning spec."""
    if isinstance(spec, FractionWarning | BeforeWarning):
        result: WarningSpec = spec
    elif set(spec) == {"fraction"}:
        fraction = spec["fraction"]
        if isinstance(fraction, bool) or not isinstance(fraction, int | float):
            raise PeriodError(f"warning fraction must be a number, got {fraction!r}")
        result = FractionWarning(float(fraction))
    elif set(spec) == {"before"} and isinstance(spec["before"], Mapping):
        before = spec["before"]
        if len(before) != 1:
            raise PeriodError(f"'before' takes exactly one unit, got {dict(before)!r}")
        ((unit, amount),) = before.items()
        if unit not in _BEFORE_UNITS:
            raise PeriodError(f"unknown 'before' unit {unit!r}; expected one of {_BEFORE_UNITS}")
        if isinstance(amount, bool) or not isinstance(amount, int):
            raise PeriodError(f"'before' amount must be an integer, got {amount!r}")
        result = BeforeWarning(unit, amount)
    else:
        raise PeriodError(
            f"a warning is {{'fraction': f}} or {{'before': {{unit: n}}}}, got {dict(spec)!r}"
        )
    if isinstance(result, FractionWarning) and not 0.0 < result.fraction < 1.0:
        raise PeriodError(f"warning fraction must be between 0 and 1, got {result.fraction}")
    if isinstance(result, BeforeWarning) and result.amount < 1:
        raise PeriodError(f"'before' amount must be >= 1, got {result.amount}")
    return result


def _warning_instant(
    spec: WarningSpec, start: datetime, due: datetime, calendar: WorkCalendar
) -> datetime:
    if isinstance(spec, FractionWarning):
        return start + (due - start) * spec.fraction
    if spec.unit == "hours":
        return due - timedelta(hours=spec.amount)
    local_due = due.astimezone(SHANGHAI)
    if spec.unit == "calendar_days":
        day = local_due.date() - timedelta(days=spec.amount)
    else:
        day = calendar.add_working_days(local_due.date(), -spec.amount)
    return datetime.combine(day, local_due.timetz())


def warning_points(
    start: datetime,
    due: datetime,
    warnings: Iterable[WarningSpec | Mapping[str, Any]],
    *,
    calendar: WorkCalendar,
) -> list[datetime]:
    """The instants (Asia/Shanghai, sorted, distinct) at which to warn before ``due``.

    A point that falls at or before ``start`` or at or after ``due`` is dropped: a warning that
    would fire the moment a deadline opens tells nobody anything.
    """
    _require_aware(start, "start")
    _require_aware(due, "due")
    points = {
        _warning_instant(parse_warning(spec), start, due, calendar).astimezone(SHANGHAI)
        for spec in warnings
    }
    return sorted(p for p in points if start < p < due)
