"""The background-service lifecycle and the retry policy, without Kafka or PostgreSQL: delays grow
and stop at their cap, jitter stays in its range, a stop cuts a pause short, and a service
starts, stops (idempotently), restarts and reports what ended its loop."""

from __future__ import annotations

import asyncio
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bus import lifecycle
from bus.errors import CasebusError, ConfigError, ServiceMisuseError
from bus.lifecycle import (
    EQUAL_JITTER,
    BackgroundService,
    Backoff,
    Every,
    Stoppable,
    cancel,
    pause,
)

# -- Backoff ----------------------------------------------------------------------------------


def test_the_delay_doubles_from_initial_and_stops_at_the_cap() -> None:
    policy = Backoff(initial_s=0.5, max_s=5.0)
    assert [policy.delay(n) for n in range(1, 8)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]


def test_the_factor_sets_the_growth() -> None:
    policy = Backoff(initial_s=1.0, max_s=100.0, factor=3.0)
    assert [policy.step_s(n) for n in range(1, 6)] == [1.0, 3.0, 9.0, 27.0, 81.0]
    assert policy.step_s(6) == 100.0


def test_a_factor_of_one_keeps_the_delay_constant() -> None:
    policy = Backoff(initial_s=0.3, max_s=2.0, factor=1.0)
    assert {policy.delay(n) for n in (1, 2, 50, 10**6)} == {0.3}


def test_a_very_long_outage_stays_at_the_cap_without_overflowing() -> None:
    assert Backoff(initial_s=0.1, max_s=5.0).delay(10**9) == 5.0
    assert Backoff(initial_s=1e-9, max_s=1e9, factor=10.0).step_s(10**6) == 1e9


@given(
    initial_s=st.floats(min_value=1e-3, max_value=10.0),
    cap=st.floats(min_value=1.0, max_value=1000.0),
    factor=st.floats(min_value=1.0, max_value=10.0),
    failures=st.integers(min_value=1, max_value=10_000),
)
def test_the_step_never_shrinks_and_never_passes_the_cap(
    initial_s: float, cap: float, factor: float, failures: int
) -> None:
    policy = Backoff(initial_s=initial_s, max_s=initial_s * cap, factor=factor)
    step = policy.step_s(failures)
    assert initial_s <= step <= policy.max_s
    assert policy.step_s(failures + 1) >= step


@given(
    failures=st.integers(min_value=1, max_value=100),
    low=st.floats(min_value=0.01, max_value=1.0),
    spread=st.floats(min_value=0.0, max_value=1.0),
)
def test_jitter_keeps_the_delay_within_its_range_of_the_step(
    failures: int, low: float, spread: float
) -> None:
    policy = Backoff(initial_s=0.2, max_s=10.0, jitter=(low, low + spread))
    step = policy.step_s(failures)
    delay = policy.delay(failures)
    assert step * low <= delay <= step * (low + spread)


def test_equal_jitter_spreads_between_half_the_step_and_the_step() -> None:
    policy = Backoff(initial_s=1.0, max_s=1.0, jitter=EQUAL_JITTER)
    delays = [policy.delay(3) for _ in range(2000)]
    assert min(delays) >= 0.5
    assert max(delays) <= 1.0
    # Spread over the whole range, not stuck at one end.
    assert min(delays) < 0.6
    assert max(delays) > 0.9


def test_the_jitter_is_drawn_from_the_random_module(monkeypatch: pytest.MonkeyPatch) -> None:
    draws: list[tuple[float, float]] = []

    def fake_uniform(a: float, b: float) -> float:
        draws.append((a, b))
        return b

    monkeypatch.setattr("bus.lifecycle.random.uniform", fake_uniform)
    assert Backoff(initial_s=0.1, max_s=5.0, jitter=(0.8, 1.2)).delay(3) == pytest.approx(0.48)
    assert draws == [(0.8, 1.2)]


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"initial_s": 0.0, "max_s": 1.0}, "initial_s"),
        ({"initial_s": 2.0, "max_s": 1.0}, "max_s"),
        ({"initial_s": 0.1, "max_s": 1.0, "factor": 0.5}, "factor"),
        ({"initial_s": 0.1, "max_s": 1.0, "jitter": (0.0, 1.0)}, "jitter"),
        ({"initial_s": 0.1, "max_s": 1.0, "jitter": (1.2, 0.8)}, "jitter"),
    ],
)
def test_a_nonsensical_policy_is_refused(kwargs: dict[str, object], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        Backoff(**kwargs)  # type: ignore[arg-type]


def test_a_delay_before_any_failure_is_a_mistake() -> None:
    with pytest.raises(ValueError, match="at least one failure"):
        Backoff(initial_s=0.1, max_s=1.0).delay(0)


# -- pause and cancel -------------------------------------------------------------------------


async def test_a_pause_lasts_its_delay_when_nobody_stops_it() -> None:
    began = time.monotonic()
    assert await pause(0.05, asyncio.Event()) is False
    assert time.monotonic() - began >= 0.04


async def test_a_stop_cuts_a_pause_short() -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.02, stop.set)
    began = time.monotonic()
    assert await pause(30.0, stop) is True
    assert time.monotonic() - began < 5.0


async def test_a_pause_after_the_stop_returns_at_once() -> None:
    stop = asyncio.Event()
    stop.set()
    began = time.monotonic()
    assert await pause(30.0, stop) is True
    assert time.monotonic() - began < 1.0


async def test_cancel_ends_a_task_and_drops_what_it_raised() -> None:
    ran_cleanup = asyncio.Event()

    async def forever() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            ran_cleanup.set()

    task = asyncio.create_task(forever())
    await asyncio.sleep(0)
    await cancel(task)
    assert task.cancelled()
    assert ran_cleanup.is_set()

    async def fails() -> None:
        raise RuntimeError("boom")

    failed = asyncio.create_task(fails())
    await asyncio.sleep(0)
    await cancel(failed)  # does not raise
    assert isinstance(failed.exception(), RuntimeError)


# -- Stoppable and BackgroundService ----------------------------------------------------------


class _Loop(BackgroundService):
    """Counts its rounds; pauses between them; can be told to fail."""

    def __init__(self, *, fail_after: int | None = None) -> None:
        super().__init__(task_name="test-loop")
        self.rounds = 0
        self.runs = 0
        self.stop_requests = 0
        self.fail_after = fail_after
        self.round_done = asyncio.Event()

    def request_stop(self) -> None:
        super().request_stop()
        self.stop_requests += 1

    async def run(self) -> None:
        self.runs += 1
        while not self.stopping:
            self.rounds += 1
            self.round_done.set()
            if self.fail_after is not None and self.rounds >= self.fail_after:
                raise RuntimeError(f"round {self.rounds} failed")
            await self.pause(3600)


async def test_a_service_runs_in_the_background_until_stopped() -> None:
    loop = _Loop()
    await loop.start()
    assert loop.running
    await asyncio.wait_for(loop.round_done.wait(), 5)
    await asyncio.wait_for(loop.stop(), 5)  # the hour-long pause was cut short
    assert not loop.running
    assert loop.stopping
    assert loop.rounds == 1


async def test_async_with_starts_and_stops_the_service() -> None:
    async with _Loop() as loop:
        await asyncio.wait_for(loop.round_done.wait(), 5)
        assert loop.running
    assert not loop.running
    assert loop.stopping


async def test_stop_is_idempotent_and_harmless_before_start() -> None:
    loop = _Loop()
    await loop.stop()  # never started
    await loop.start()
    await asyncio.wait_for(loop.round_done.wait(), 5)
    await loop.stop()
    await loop.stop()
    assert loop.stop_requests == 3  # each call asked; only the running loop had to end
    assert loop.runs == 1


async def test_a_stopped_service_starts_again() -> None:
    loop = _Loop()
    await loop.start()
    await asyncio.wait_for(loop.round_done.wait(), 5)
    await loop.stop()
    loop.round_done.clear()
    await loop.start()  # the earlier stop request does not end the new run at once
    await asyncio.wait_for(loop.round_done.wait(), 5)
    assert not loop.stopping
    await loop.stop()
    assert (loop.runs, loop.rounds) == (2, 2)


async def test_starting_a_running_service_is_refused() -> None:
    async with _Loop() as loop:
        with pytest.raises(ServiceMisuseError, match="test-loop is already running") as refused:
            await loop.start()
        assert isinstance(refused.value, CasebusError)
        assert isinstance(refused.value, ValueError)
        assert loop.runs <= 1


async def test_a_service_may_say_what_a_double_start_raises() -> None:
    class OwnMisuse(CasebusError):
        pass

    class Strict(_Loop):
        _misuse = OwnMisuse

    async with Strict() as loop:
        with pytest.raises(OwnMisuse):
            await loop.start()


async def test_stop_reraises_what_ended_the_loop_once() -> None:
    loop = _Loop(fail_after=1)
    await loop.start()
    with pytest.raises(RuntimeError, match="round 1 failed"):
        await asyncio.wait_for(loop.stop(), 5)
    assert not loop.running
    await loop.stop()  # the failure was reported once; the service is simply stopped now


async def test_a_loop_that_failed_on_its_own_counts_as_running_until_stopped() -> None:
    loop = _Loop(fail_after=1)
    await loop.start()
    await asyncio.wait_for(loop.round_done.wait(), 5)
    await asyncio.sleep(0)
    assert loop.running
    with pytest.raises(ServiceMisuseError):
        await loop.start()
    with pytest.raises(RuntimeError, match="round 1 failed"):
        await loop.stop()
    assert not loop.running
    loop.fail_after = None
    await loop.start()  # after the stop it may run again
    await loop.stop()
    assert loop.runs == 2


async def test_stop_waits_for_every_owned_task_and_reports_the_first_failure() -> None:
    finished: list[str] = []

    class Several(BackgroundService):
        async def run(self) -> None:
            await self.pause(3600)
            finished.append("run")

        async def start(self) -> None:
            await super().start()
            self._spawn(self._helper("a"), name="helper-a")
            self._spawn(self._helper("b"), name="helper-b")

        async def _helper(self, name: str) -> None:
            await self.pause(3600)
            finished.append(name)
            if name == "a":
                raise LookupError("helper a failed")

    service = Several(task_name="several")
    await service.start()
    await asyncio.sleep(0)
    with pytest.raises(LookupError, match="helper a failed"):
        await asyncio.wait_for(service.stop(), 5)
    assert sorted(finished) == ["a", "b", "run"]


async def test_a_foreground_run_ends_when_a_stop_is_requested() -> None:
    loop = _Loop()
    running = asyncio.create_task(loop.run())
    await asyncio.wait_for(loop.round_done.wait(), 5)
    loop.request_stop()
    await asyncio.wait_for(running, 5)
    assert not loop.running  # run() was awaited directly: the service owns no task
    await loop.stop()  # and stopping it is harmless


async def test_a_stoppable_tells_its_pauses_to_end() -> None:
    stoppable = Stoppable()
    waiting = asyncio.create_task(stoppable.pause(3600))
    await asyncio.sleep(0)
    assert not stoppable.stopping
    stoppable.request_stop()
    stoppable.request_stop()
    assert await asyncio.wait_for(waiting, 5) is True
    assert stoppable.stopping


def test_every_is_due_first_then_once_per_period_or_when_forced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [100.0]
    monkeypatch.setattr(lifecycle.time, "monotonic", lambda: clock[0])
    every = Every(1.0)
    assert every.due()
    assert not every.due()
    clock[0] += 0.99
    assert not every.due()
    assert every.due(force=True)  # and the period starts again from here
    clock[0] += 0.5
    assert not every.due()
    clock[0] += 0.5
    assert every.due()
