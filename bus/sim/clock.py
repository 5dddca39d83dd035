"""The demo's clock: wall-clock time plus an offset the simulation moves a day at a time.

Every part of the demo reads this one clock: the SLA engine counts deadlines on it, and the
adapters stamp ``sent_at`` (and a bus.ack's time) with it, so a deadline opens and closes on
the simulated fortnight's days, and the console and ``casebus trace`` read as that
fortnight. Why not :class:`~bus.sla.clock.AcceleratedClock`? Its time runs on while the
departments work: under a clock thousands of times faster than the wall, a step taken "at
once" would land hours or days after the message it answers. A clock that jumps only when the
simulation says "next day" keeps every step where the day's traffic put it.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

__all__ = ["SteppedClock"]


class SteppedClock:
    """``now()`` is the wall clock plus ``offset``; :meth:`advance` moves the offset on."""

    def __init__(self, *, max_sleep_s: float = 0.2) -> None:
        self.offset = timedelta(0)
        self._max_sleep_s = max_sleep_s

    def now(self) -> datetime:
        """The simulated instant, tz-aware, in UTC."""
        return datetime.now(UTC) + self.offset

    def advance(self, by: timedelta) -> None:
        """Jump forward (never back: deadlines already emitted stay emitted)."""
        if by < timedelta(0):
            raise ValueError("the demo clock only moves forward")
        self.offset += by

    async def sleep(self, seconds: float) -> None:
        """Wait at most ``max_sleep_s`` real seconds: a jump may bring the instant closer."""
        await asyncio.sleep(min(max(0.0, seconds), self._max_sleep_s))

    def __repr__(self) -> str:
        return f"SteppedClock(offset={self.offset})"
