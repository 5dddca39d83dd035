"""The injectable clock: real and accelerated time, and parsing ``CASEBUS_CLOCK``."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone

import pytest

from bus.errors import ConfigError, NaiveDatetimeError
from bus.sla.clock import AcceleratedClock, Clock, RealClock, clock_from_setting


class FakeMonotonic:
    def __init__(self) -> None:
        self.value = 1000.0

    def __call__(self) -> float:
        return self.value


def test_real_clock_gives_aware_utc_now() -> None:
    clock = clock_from_setting("real")
    assert isinstance(clock, RealClock)
    assert isinstance(clock, Clock)
    now = clock.now()
    assert now.tzinfo is UTC
    assert abs(now - datetime.now(UTC)) < timedelta(seconds=5)


async def test_real_clock_sleeps() -> None:
    await RealClock().sleep(0)
    await RealClock().sleep(-1)  # a deadline already past: no wait, no error


def test_accelerated_setting_parses_start_with_offset_and_rate_from_the_right() -> None:
    clock = clock_from_setting("accelerated:2026-09-29T10:00:00+08:00:60")
    assert isinstance(clock, AcceleratedClock)
    assert clock.rate == 60
    assert clock.start == datetime(2026, 9, 29, 2, tzinfo=UTC)
    assert isinstance(clock, Clock)


@pytest.mark.parametrize(
    ("setting", "start", "rate"),
    [
        ("accelerated:2026-09-29T02:00:00Z:0.5", datetime(2026, 9, 29, 2, tzinfo=UTC), 0.5),
        (
            " accelerated:2026-09-29T10:00:00.250+05:30:1440 ",
            datetime(2026, 9, 29, 4, 30, 0, 250000, tzinfo=UTC),
            1440,
        ),
    ],
)
def test_accelerated_setting_accepts_z_fractions_and_odd_offsets(
    setting: str, start: datetime, rate: float
) -> None:
    clock = clock_from_setting(setting)
    assert isinstance(clock, AcceleratedClock)
    assert (clock.start, clock.rate) == (start, rate)


@pytest.mark.parametrize(
    "setting",
    [
        "",
        "fast",
        "Real",
        "accelerated",
        "accelerated:",
        "accelerated:60",
        "accelerated:2026-09-29T10:00:00+08:00",  # rate missing: must not read "00" as the rate
        "accelerated:2026-09-29T10:00:00+05:30",
        "accelerated:2026-09-29T10:00:00:60",  # no offset
        "accelerated:2026-13-29T10:00:00+08:00:60",
        "accelerated:tomorrow+08:00:60",
        "accelerated:2026-09-29T10:00:00+08:00:fast",
        "accelerated:2026-09-29T10:00:00+08:00:0",
        "accelerated:2026-09-29T10:00:00+08:00:-5",
        "accelerated:2026-09-29T10:00:00+08:00:nan",
        "accelerated:2026-09-29T10:00:00+08:00:inf",
    ],
)
def test_bad_clock_setting_is_a_config_error_naming_the_variable(setting: str) -> None:
    with pytest.raises(ConfigError) as caught:
        clock_from_setting(setting)
    assert "CASEBUS_CLOCK" in str(caught.value)
    assert "accelerated:<start ISO 8601" in str(caught.value)


def test_accelerated_time_runs_at_rate_times_monotonic_elapsed() -> None:
    ticks = FakeMonotonic()
    start = datetime(2026, 9, 29, 10, tzinfo=timezone(timedelta(hours=8)))
    clock = AcceleratedClock(start, 60, monotonic=ticks)
    assert clock.now() == start
    ticks.value += 10
    assert clock.now() == start + timedelta(minutes=10)
    assert clock.now().tzinfo is UTC
    ticks.value += 0.5
    assert clock.now() == start + timedelta(minutes=10, seconds=30)


async def test_accelerated_sleep_takes_simulated_seconds_divided_by_rate() -> None:
    clock = AcceleratedClock(datetime(2026, 9, 29, 2, tzinfo=UTC), 1000)
    before_real = time.monotonic()
    before_sim = clock.now()
    await clock.sleep(50)  # 50 simulated seconds = 0.05 real seconds
    real = time.monotonic() - before_real
    assert 0.04 <= real < 1.0
    assert clock.now() - before_sim >= timedelta(seconds=50)


def test_accelerated_clock_refuses_naive_start_and_non_positive_rate() -> None:
    with pytest.raises(NaiveDatetimeError):
        AcceleratedClock(datetime(2026, 9, 29, 10), 10)
    for rate in (0, -1, float("inf")):
        with pytest.raises(ConfigError):
            AcceleratedClock(datetime(2026, 9, 29, 2, tzinfo=UTC), rate)
