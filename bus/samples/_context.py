"""The state one sample is built from: the seeded generator, its clock and the caller's overrides.

Everything random comes from the caller's :class:`random.Random`, never from the global one or the
wall clock, so a seed always gives the same payload. China keeps no daylight saving time, so a
fixed +08:00 offset stands in for Asia/Shanghai and the samples need no time-zone database.
"""

from __future__ import annotations

import enum
import random
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any, TypeVar, cast

__all__ = [
    "CHINA",
    "FORTNIGHT_START",
    "Builder",
    "Ctx",
    "local_date",
    "sample_case_id",
    "sample_time",
]

T = TypeVar("T")
E = TypeVar("E", bound=enum.Enum)

CHINA = timezone(timedelta(hours=8), "CST")
"""China Standard Time; Asia/Shanghai has had no daylight saving time since 1991."""

FORTNIGHT_START = date(2026, 3, 2)
"""A Monday: the simulated fortnight of traffic starts here (no public holiday in it)."""


def local_date(instant: datetime) -> date:
    """The calendar day in China of an aware instant."""
    return instant.astimezone(CHINA).date()


def sample_time(rng: random.Random, *, start: date = FORTNIGHT_START, days: int = 14) -> datetime:
    """An instant in office hours (09:00-17:30 China time) on a weekday of ``days`` from ``start``.

    Returned in UTC, whole seconds, as the wire carries it.
    """
    workdays = [d for d in (start + timedelta(days=i) for i in range(days)) if d.weekday() < 5]
    if not workdays:
        raise ValueError(f"no weekday in the {days} day(s) from {start.isoformat()}")
    day = rng.choice(workdays)
    minute = rng.randrange(9 * 60, 17 * 60 + 30)
    local = datetime.combine(day, time(minute // 60, minute % 60, rng.randrange(60)), CHINA)
    return local.astimezone(UTC)


def sample_case_id(rng: random.Random, *, year: int = FORTNIGHT_START.year) -> str:
    """An enforcement case id of the form ``YGH-2026-0042``."""
    return f"YGH-{year}-{rng.randint(1, 1999):04d}"


Builder = Callable[["Ctx"], dict[str, Any]]
"""Makes the field values of one kind's payload from a :class:`Ctx`."""


class Ctx:
    """One sample in the making: draws values and resolves overrides against defaults.

    Defaults are always drawn, even when an override replaces them, so overriding one field
    leaves every unrelated field of the sample as the seed made it.
    """

    def __init__(self, rng: random.Random, overrides: Mapping[str, Any], now: datetime) -> None:
        if now.tzinfo is None or now.utcoffset() is None:
            raise ValueError(f"now must be time-zone aware, got naive {now.isoformat()}")
        self.rng = rng
        self.overrides = overrides
        self.now = now.astimezone(UTC)

    # -- overrides -------------------------------------------------------------------------

    def get(self, name: str, default: T) -> T:
        """The caller's value for ``name`` if given, else ``default``."""
        if name in self.overrides:
            return cast(T, self.overrides[name])
        return default

    def enum(self, name: str, cls: type[E], default: E) -> E:
        """Like :meth:`get` for an enum field: a plain string override becomes the member."""
        return cls(self.overrides.get(name, default))

    # -- drawing ---------------------------------------------------------------------------

    def pick(self, choices: Sequence[T]) -> T:
        """One of ``choices``."""
        return self.rng.choice(choices)

    def chance(self, p: float) -> bool:
        """True with probability ``p``."""
        return self.rng.random() < p

    def uuid(self) -> uuid.UUID:
        """A version-4 UUID from the seeded generator."""
        return uuid.UUID(int=self.rng.getrandbits(128), version=4)

    def before(self, *, min_h: float, max_h: float, start: datetime | None = None) -> datetime:
        """An instant ``min_h``..``max_h`` hours before ``start`` (now), whole seconds."""
        seconds = self.rng.randint(int(min_h * 3600), int(max_h * 3600))
        return (start or self.now) - timedelta(seconds=seconds)

    def after(self, *, min_h: float, max_h: float, start: datetime | None = None) -> datetime:
        """An instant ``min_h``..``max_h`` hours after ``start`` (now), whole seconds."""
        seconds = self.rng.randint(int(min_h * 3600), int(max_h * 3600))
        return (start or self.now) + timedelta(seconds=seconds)

    def end_of_day(self, days: int, *, at: time = time(17, 30)) -> datetime:
        """``at`` (by default 17:30, close of office) China time, ``days`` days after today."""
        day = local_date(self.now) + timedelta(days=days)
        return datetime.combine(day, at, CHINA).astimezone(UTC)

    @property
    def today(self) -> date:
        """Today in China."""
        return local_date(self.now)

    def doc_no(self, prefix: str, *, year: int | None = None) -> str:
        """An official document number such as ``阳城执罚〔2026〕第0123号``."""
        return f"{prefix}〔{year or self.today.year}〕第{self.rng.randint(1, 480):04d}号"

    def case_id(self) -> str:
        """An enforcement case id of this year."""
        return sample_case_id(self.rng, year=self.today.year)
