"""The demo's clock: wall-clock time plus an offset the simulation moves a day at a time.

Why not :class:`~bus.sla.clock.AcceleratedClock`? The SLA engine counts a period from the
message's ``sent_at``, which the adapters stamp with the wall clock. Under a clock running
thousands of times faster than the wall, a deadline opened on the tenth simulated day would
count from (nearly) the first and be breached on arrival. A clock that jumps only when the
simulation says "next day" keeps every deadline of the fortnight where the traffic put it.
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
