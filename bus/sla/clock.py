"""An injectable time source, so deadline drills can run a week in minutes.

``CASEBUS_CLOCK`` selects it: ``real``, or ``accelerated:<start ISO 8601 with offset>:<rate>``,
where simulated time is ``start + monotonic elapsed × rate`` and a simulated sleep of ``s``
seconds takes ``s / rate`` real seconds.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

from bus.errors import ConfigError, NaiveDatetimeError

__all__ = ["AcceleratedClock", "Clock", "RealClock", "clock_from_setting"]

_ACCELERATED = "accelerated:"
# The start must end in a full offset, so that a missing ":<rate>" cannot silently turn the
# minutes of "+08:30" into a rate.
_OFFSET_AT_END = re.compile(r"(Z|[+-]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)$")
_EXPECTED = "expected 'real' or 'accelerated:<start ISO 8601 with UTC offset>:<rate>'"


@runtime_checkable
class Clock(Protocol):
    """Where the SLA engine gets the time from."""

    def now(self) -> datetime:
        """The current instant, tz-aware, in UTC."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time."""
        ...


class RealClock:
    """Wall-clock time."""

    def now(self) -> datetime:
        """The current instant, tz-aware, in UTC."""
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` real seconds."""
        import asyncio  # here, not at the top: `casebus sla due` loads this module

        await asyncio.sleep(max(0.0, seconds))

    def __repr__(self) -> str:
        return "RealClock()"


class AcceleratedClock:
    """Simulated time: ``start`` plus the monotonic time elapsed since creation × ``rate``."""

    def __init__(
        self,
        start: datetime,
        rate: float,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if start.tzinfo is None or start.utcoffset() is None:
            raise NaiveDatetimeError(f"accelerated clock start {start.isoformat()} has no offset")
        if not math.isfinite(rate) or rate <= 0:
            raise ConfigError(f"accelerated clock rate must be a finite number > 0, got {rate}")
        self.start = start.astimezone(UTC)
        self.rate = float(rate)
        self._monotonic = monotonic
        self._origin = monotonic()

    def now(self) -> datetime:
        """The simulated instant, tz-aware, in UTC."""
        elapsed = self._monotonic() - self._origin
        return self.start + timedelta(seconds=elapsed * self.rate)

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` simulated seconds, i.e. ``seconds / rate`` real ones."""
        import asyncio

        await asyncio.sleep(max(0.0, seconds) / self.rate)

    def __repr__(self) -> str:
        return f"AcceleratedClock(start={self.start.isoformat()}, rate={self.rate:g})"


def _bad(setting: str, why: str) -> ConfigError:
    return ConfigError(f"CASEBUS_CLOCK={setting!r}: {why}; {_EXPECTED}")


def clock_from_setting(setting: str) -> Clock:
    """The clock a ``CASEBUS_CLOCK`` value names; ConfigError naming the variable if bad."""
    text = setting.strip()
    if text == "real":
        return RealClock()
    if not text.startswith(_ACCELERATED):
        raise _bad(setting, "unknown clock")
    # The ISO start contains colons itself: the rate is what follows the last one.
    start_text, sep, rate_text = text[len(_ACCELERATED) :].rpartition(":")
    if not sep or not start_text:
        raise _bad(setting, "missing start or rate")
    if not _OFFSET_AT_END.search(start_text):
        raise _bad(setting, f"start {start_text!r} must end in a UTC offset such as +08:00 or Z")
    try:
        start = datetime.fromisoformat(start_text)
    except ValueError as e:
        raise _bad(setting, f"start {start_text!r} is not ISO 8601") from e
    try:
        rate = float(rate_text)
    except ValueError as e:
        raise _bad(setting, f"rate {rate_text!r} is not a number") from e
    if not math.isfinite(rate) or rate <= 0:
        raise _bad(setting, f"rate {rate_text!r} must be a finite number > 0")
    return AcceleratedClock(start, rate)
