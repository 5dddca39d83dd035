"""How a casebus background loop starts, stops and waits before it tries again.

Every long-running part of the bus (inbox readers, outbox relays, the SLA scheduler, the
router and its tree-head publisher, adapters' deliverers) is a loop that runs until asked to
stop and backs off after a failure. They used to carry their own stop event, start/stop pair
and backoff formula, and the copies drifted. This module holds the one mechanism:

- :class:`Backoff`, the retry policy: the delay after the n-th consecutive failure, growing by
  ``factor`` from ``initial_s`` up to ``max_s``, optionally spread by a random ``jitter``.
- :func:`pause`, a wait that a stop event cuts short; :func:`cancel`, a task torn down.
- :class:`Stoppable`, a loop's stop request: set from anywhere (a signal handler, another
  loop), idempotent, cutting its pauses short.
- :class:`BackgroundService`, a :class:`Stoppable` that can also run itself as owned
  background tasks: ``start()`` / ``stop()`` or ``async with``, restartable after a stop.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import math
import random
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar, Final, Self

from bus.errors import CasebusError, ConfigError, ServiceMisuseError

__all__ = [
    "EQUAL_JITTER",
    "BackgroundService",
    "Backoff",
    "Every",
    "Stoppable",
    "cancel",
    "pause",
]

EQUAL_JITTER: Final = (0.5, 1.0)
""""Equal jitter": a delay between half the step and the whole step, so replicas that failed
together spread out, yet never retry in a busy loop."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Backoff:
    """The delay before the next try, after ``failures`` consecutive failures.

    The step is ``initial_s * factor ** (failures - 1)``, capped at ``max_s``; the delay is the
    step times a uniform draw from ``jitter`` (``(1.0, 1.0)``: no jitter).
    """

    initial_s: float
    max_s: float
    factor: float = 2.0
    jitter: tuple[float, float] = (1.0, 1.0)

    def __post_init__(self) -> None:
        low, high = self.jitter
        if not 0 < self.initial_s <= self.max_s:
            raise ConfigError(
                f"backoff needs 0 < initial_s <= max_s, not {self.initial_s} and {self.max_s}"
            )
        if self.factor < 1:
            raise ConfigError(f"backoff factor must be at least 1, not {self.factor}")
        if not 0 < low <= high:
            raise ConfigError(f"backoff jitter must be a range 0 < low <= high, not {self.jitter}")

    def step_s(self, failures: int) -> float:
        """The delay after ``failures`` (>= 1) consecutive failures, before jitter."""
        if failures < 1:
            raise ValueError(f"a backoff follows at least one failure, not {failures}")
        # Past the exponent that reaches max_s the step is max_s: computing a larger power
        # would change nothing, and a long outage would overflow it.
        if self.factor > 1:
            reaching = math.ceil(math.log(self.max_s / self.initial_s, self.factor)) + 1
        else:
            reaching = 0
        step: float = min(self.max_s, self.initial_s * self.factor ** min(failures - 1, reaching))
        return step

    def delay(self, failures: int) -> float:
        """The delay after ``failures`` (>= 1) consecutive failures, jitter included."""
        step = self.step_s(failures)
        low, high = self.jitter
        if low == high:
            return step * low
        return step * random.uniform(low, high)


async def pause(seconds: float, stop: asyncio.Event) -> bool:
    """Wait ``seconds``, or less if ``stop`` is set first; True if ``stop`` is set."""
    if not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()


async def cancel(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` and wait until it ended; whatever it raised, its cancellation included,
    is dropped: the caller is tearing down, and the task's own work is abandoned."""
    task.cancel()
    with contextlib.suppress(BaseException):
        await task


class Stoppable:
    """A loop's stop request: :meth:`request_stop` asks every loop of the object to finish
    what it is doing and return; :meth:`pause` waits, unless a stop is asked for.

    A subclass that must also wake a loop sleeping on something else (a wake-up event)
    overrides :meth:`request_stop` and calls ``super()``.
    """

    def __init__(self) -> None:
        self._stopping = asyncio.Event()

    @property
    def stopping(self) -> bool:
        """True once a stop was asked for (until a restart)."""
        return self._stopping.is_set()

    def request_stop(self) -> None:
        """Ask the loops to finish and return; synchronous (a signal handler may call it) and
        idempotent."""
        self._stopping.set()

    async def pause(self, seconds: float) -> bool:
        """Wait ``seconds``, or less if a stop is asked for; True if one is."""
        return await pause(seconds, self._stopping)


class BackgroundService(Stoppable, abc.ABC):
    """A :class:`Stoppable` whose :meth:`run` can be awaited directly or owned as a background
    task: :meth:`start` / :meth:`stop`, or ``async with``. A stopped service may be started
    again."""

    _misuse: ClassVar[type[CasebusError]] = ServiceMisuseError
    """What :meth:`start` raises when the service is already running."""

    def __init__(self, *, task_name: str) -> None:
        super().__init__()
        self._task_name = task_name
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def running(self) -> bool:
        """True from :meth:`start` until :meth:`stop` (also if the loop ended on its own)."""
        return bool(self._tasks)

    @abc.abstractmethod
    async def run(self) -> None:
        """Loop until a stop is asked for."""

    async def start(self) -> None:
        """Run :meth:`run` as a background task."""
        self._begin()
        self._spawn(self.run(), name=self._task_name)

    def _begin(self) -> None:
        """Check the service is not running and take back an earlier stop request."""
        if self._tasks:
            raise self._misuse(f"{self._task_name} is already running")
        self._stopping.clear()

    def _spawn(self, coro: Coroutine[Any, Any, None], *, name: str) -> asyncio.Task[None]:
        """Run ``coro`` as a task the service owns: :meth:`stop` waits for it."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.append(task)
        return task

    async def stop(self) -> None:
        """Ask the loops to finish, wait until every owned task ended and re-raise what the
        first one that failed raised. Idempotent."""
        self.request_stop()
        tasks, self._tasks = self._tasks, []
        ended = await asyncio.gather(*tasks, return_exceptions=True)
        for outcome in ended:
            if isinstance(outcome, BaseException):
                raise outcome

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


class Every:
    """Work a loop does at most once per ``seconds`` (a gauge's statement, an offset commit, an
    alert's query) rather than on each of its rounds: :meth:`due` is True the first time, then
    again once ``seconds`` have passed on the monotonic clock since it last said so."""

    __slots__ = ("_last", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._last = -math.inf

    def due(self, *, force: bool = False) -> bool:
        """True (and the clock starts again) if ``seconds`` passed since the last True, or
        with ``force`` (the work is done now anyway, e.g. at a stop)."""
        now = time.monotonic()
        if now - self._last < self.seconds and not force:
            return False
        self._last = now
        return True
