"""Day counting: working days, holiday extension, due instants and warning points."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import chinese_calendar
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from bus.errors import CasebusError, ConfigError, NaiveDatetimeError, PeriodError
from bus.sla.calendar import (
    DEFAULT_HOLIDAYS_OVERRIDE_PATH,
    SHANGHAI,
    BeforeWarning,
    FractionWarning,
    WorkCalendar,
    add_months,
    due_at,
    parse_warning,
    warning_points,
)

CAL = WorkCalendar(None)
UNKNOWN_YEAR = 2099  # far enough ahead that chinesecalendar will not know it for decades


def sh(y: int, m: int, d: int, hh: int = 0, mm: int = 0, ss: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, ss, tzinfo=SHANGHAI)


def eod(y: int, m: int, d: int) -> datetime:
    return sh(y, m, d, 23, 59, 59)


def unknown_year_count(year: int) -> float:
    value = REGISTRY.get_sample_value(
        "casebus_sla_calendar_unknown_year_total", {"year": str(year)}
    )
    return value or 0.0


# --- the facts the other tests rest on, checked against the installed package ------------------


def test_installed_chinesecalendar_knows_the_2026_holidays_and_make_up_days() -> None:
    spring = [date(2026, 2, d) for d in range(15, 24)]
    labour = [date(2026, 5, d) for d in range(1, 6)]
    national = [date(2026, 10, d) for d in range(1, 8)]
    for day in (*spring, *labour, *national):
        assert chinese_calendar.is_holiday(day), day
    make_up = [date(2026, 2, 14), date(2026, 2, 28), date(2026, 5, 9), date(2026, 9, 20)]
    make_up.append(date(2026, 10, 10))
    for day in make_up:
        assert day.weekday() >= 5 and chinese_calendar.is_workday(day), day
    assert not chinese_calendar.is_workday(date(2026, 10, 11))  # an ordinary Sunday
    with pytest.raises(NotImplementedError):
        chinese_calendar.is_workday(date(UNKNOWN_YEAR, 1, 1))


def test_work_calendar_follows_the_package_for_holidays_and_make_up_saturdays() -> None:
    assert not CAL.is_working_day(date(2026, 10, 1))
    assert CAL.is_working_day(date(2026, 10, 10))  # 调休 Saturday
    assert CAL.is_working_day(date(2026, 9, 20))  # 调休 Sunday
    assert not CAL.is_working_day(date(2026, 10, 11))
    assert CAL.year_source(2026) == "chinesecalendar"
    assert CAL.year_source(UNKNOWN_YEAR) == "weekends_only"


def test_next_working_day_is_strictly_after_and_skips_the_national_day_week() -> None:
    assert CAL.next_working_day(date(2026, 9, 30)) == date(2026, 10, 8)
    assert CAL.next_working_day(date(2026, 10, 9)) == date(2026, 10, 10)


def test_add_working_days_counts_forward_and_back() -> None:
    assert CAL.add_working_days(date(2026, 9, 29), 5) == date(2026, 10, 12)
    assert CAL.add_working_days(date(2026, 10, 8), -1) == date(2026, 9, 30)
    assert CAL.add_working_days(date(2026, 10, 3), 0) == date(2026, 10, 3)


# --- due_at ------------------------------------------------------------------------------------


def test_issue_example_court_acceptance_from_29_september_is_due_12_october() -> None:
    # 9/29 not counted; 9/30 (1), 10/1-7 National Day, 10/8 (2), 10/9 (3),
    # 10/10 make-up Saturday (4), 10/11 Sunday, 10/12 (5).
    due = due_at(
        sh(2026, 9, 29, 10), unit="working_days", amount=5, holiday_extension=False, calendar=CAL
    )
    assert due == eod(2026, 10, 12)
    assert due.isoformat() == "2026-10-12T23:59:59+08:00"


def test_working_days_cross_the_spring_festival_counting_its_make_up_saturday() -> None:
    # 2/13 Fri not counted; 2/14 make-up Saturday (1); 2/15-23 holiday; 2/24 (2).
    due = due_at(
        sh(2026, 2, 13, 16), unit="working_days", amount=2, holiday_extension=False, calendar=CAL
    )
    assert due == eod(2026, 2, 24)


def test_labour_day_make_up_saturday_is_a_working_day() -> None:
    due = due_at(
        sh(2026, 5, 8, 9), unit="working_days", amount=1, holiday_extension=False, calendar=CAL
    )
    assert due == eod(2026, 5, 9)


@pytest.mark.parametrize(
    ("start", "extended", "plain"),
    [
        (sh(2026, 2, 13, 16), eod(2026, 2, 24), eod(2026, 2, 16)),  # Spring Festival
        (sh(2026, 4, 29, 9), eod(2026, 5, 6), eod(2026, 5, 2)),  # Labour Day
        (sh(2026, 9, 28, 9), eod(2026, 10, 8), eod(2026, 10, 1)),  # National Day
    ],
)
def test_calendar_days_ending_in_a_holiday_extend_to_the_first_working_day_after_it(
    start: datetime, extended: datetime, plain: datetime
) -> None:
    def due(extension: bool) -> datetime:
        return due_at(
            start, unit="calendar_days", amount=3, holiday_extension=extension, calendar=CAL
        )

    assert due(True) == extended
    assert due(False) == plain


def test_calendar_days_ending_on_an_ordinary_weekend_also_extend() -> None:
    # 2026-10-15 Thu + 3 = Sun 10/18 -> Mon 10/19
    due = due_at(
        sh(2026, 10, 15, 9), unit="calendar_days", amount=3, holiday_extension=True, calendar=CAL
    )
    assert due == eod(2026, 10, 19)


def test_start_in_utc_that_is_already_the_next_day_in_shanghai_counts_from_the_shanghai_day() -> (
    None
):
    start = datetime(2026, 9, 29, 17, 30, tzinfo=UTC)  # 2026-09-30 01:30 in Shanghai
    one_day = due_at(start, unit="calendar_days", amount=1, holiday_extension=True, calendar=CAL)
    assert one_day == eod(2026, 10, 8)  # 10/1 is a holiday; counted from 9/29 it would be 9/30
    five_working = due_at(
        start, unit="working_days", amount=5, holiday_extension=False, calendar=CAL
    )
    assert five_working == eod(2026, 10, 13)


def test_hours_are_exact_never_extended_and_returned_in_shanghai_time() -> None:
    start = datetime(2026, 9, 30, 12, 0, tzinfo=UTC)
    due = due_at(start, unit="hours", amount=24, holiday_extension=True, calendar=CAL)
    assert due == sh(2026, 10, 1, 20)
    assert due.tzinfo == SHANGHAI
    assert due.utcoffset() == timedelta(hours=8)


@pytest.mark.parametrize(
    ("start_day", "months", "extension", "expected"),
    [
        (date(2026, 1, 31), 1, True, date(2026, 2, 28)),  # clamped; a make-up Saturday
        (date(2024, 1, 31), 1, False, date(2024, 2, 29)),  # leap year
        (date(2025, 11, 30), 3, False, date(2026, 2, 28)),  # across the year end
        (date(2026, 2, 1), 3, False, date(2026, 5, 1)),
        (date(2026, 2, 1), 3, True, date(2026, 5, 6)),  # 5/1 Labour Day -> 5/6
    ],
)
def test_months_keep_the_day_clamp_to_month_end_and_extend_over_holidays(
    start_day: date, months: int, extension: bool, expected: date
) -> None:
    start = datetime.combine(start_day, datetime.min.time(), tzinfo=SHANGHAI)
    due = due_at(start, unit="months", amount=months, holiday_extension=extension, calendar=CAL)
    assert due == eod(expected.year, expected.month, expected.day)


def test_add_months_clamps_to_the_last_day_of_a_shorter_month() -> None:
    assert add_months(date(2026, 3, 31), 1) == date(2026, 4, 30)
    assert add_months(date(2026, 12, 15), 1) == date(2027, 1, 15)


def test_naive_start_is_refused_with_a_casebus_value_error() -> None:
    with pytest.raises(NaiveDatetimeError) as caught:
        due_at(
            datetime(2026, 9, 29, 10),
            unit="hours",
            amount=1,
            holiday_extension=False,
            calendar=CAL,
        )
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, CasebusError)
    assert not isinstance(caught.value, ConfigError)


def test_negative_amount_and_unknown_unit_are_refused() -> None:
    with pytest.raises(PeriodError):
        due_at(sh(2026, 1, 5), unit="hours", amount=-1, holiday_extension=False, calendar=CAL)
    with pytest.raises(PeriodError, match="fortnights"):
        due_at(
            sh(2026, 1, 5),
            unit="fortnights",  # type: ignore[arg-type]
            amount=1,
            holiday_extension=False,
            calendar=CAL,
        )


# --- years chinesecalendar does not know -------------------------------------------------------


def test_unknown_year_without_override_counts_weekends_only_and_says_so_once(
    tmp_path: Path,
) -> None:
    calendar = WorkCalendar(tmp_path / "absent.yaml")
    before = unknown_year_count(UNKNOWN_YEAR)
    with capture_logs() as logs:
        assert calendar.is_working_day(date(UNKNOWN_YEAR, 1, 1))  # a Thursday; New Year unknown
        assert not calendar.is_working_day(date(UNKNOWN_YEAR, 1, 3))  # a Saturday
        due = due_at(
            datetime(UNKNOWN_YEAR, 1, 1, 9, tzinfo=SHANGHAI),
            unit="working_days",
            amount=2,
            holiday_extension=False,
            calendar=calendar,
        )
    assert due == eod(UNKNOWN_YEAR, 1, 5)
    warnings = [e for e in logs if e["event"] == "sla.calendar.unknown_year"]
    assert len(warnings) == 1
    assert warnings[0]["year"] == UNKNOWN_YEAR
    assert warnings[0]["log_level"] == "warning"
    assert unknown_year_count(UNKNOWN_YEAR) == before + 1


def test_unknown_year_is_read_from_the_override_file_without_warning(tmp_path: Path) -> None:
    # Made-up dates for a far-off year: a fixture, not a holiday schedule.
    override = tmp_path / "holidays.yaml"
    override.write_text(
        "years:\n"
        f"  {UNKNOWN_YEAR}:\n"
        f"    holidays: [{UNKNOWN_YEAR}-01-01, {UNKNOWN_YEAR}-01-02]\n"
        f"    makeup_workdays: [{UNKNOWN_YEAR}-01-04]\n",
        encoding="utf-8",
    )
    calendar = WorkCalendar(override)
    before = unknown_year_count(UNKNOWN_YEAR)
    with capture_logs() as logs:
        assert not calendar.is_working_day(date(UNKNOWN_YEAR, 1, 1))
        assert calendar.is_working_day(date(UNKNOWN_YEAR, 1, 4))  # a make-up Sunday
        due = due_at(
            datetime(UNKNOWN_YEAR, 1, 1, 9, tzinfo=SHANGHAI),
            unit="working_days",
            amount=1,
            holiday_extension=False,
            calendar=calendar,
        )
    assert due == eod(UNKNOWN_YEAR, 1, 4)
    assert calendar.year_source(UNKNOWN_YEAR) == "override"
    assert logs == []
    assert unknown_year_count(UNKNOWN_YEAR) == before


def test_a_year_in_the_override_file_replaces_the_package_data(tmp_path: Path) -> None:
    override = tmp_path / "holidays.yaml"
    override.write_text("years:\n  2026:\n    holidays: []\n", encoding="utf-8")
    calendar = WorkCalendar(override)
    assert calendar.is_working_day(date(2026, 10, 1))
    assert not calendar.is_working_day(date(2026, 10, 10))


def test_shipped_override_file_loads() -> None:
    calendar = WorkCalendar(DEFAULT_HOLIDAYS_OVERRIDE_PATH)
    assert calendar.is_working_day(date(2026, 10, 12))


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("years:\n  2099:\n    makeup_workdays: [2099-01-05]\n", "years.2099.makeup_workdays"),
        ("years:\n  2099:\n    holidays: [2098-12-31]\n", "another year"),
        (
            "years:\n  2099:\n    holidays: [2099-01-03]\n    makeup_workdays: [2099-01-03]\n",
            "both holiday and make-up",
        ),
        ("years:\n  2099:\n    holiday: [2099-01-01]\n", "years.2099.holiday"),
        ("years: [unclosed\n", "cannot read"),
    ],
)
def test_broken_override_file_raises_config_error_naming_the_problem(
    tmp_path: Path, text: str, names: str
) -> None:
    override = tmp_path / "holidays.yaml"
    override.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        WorkCalendar(override)
    assert names in str(caught.value)
    assert str(override) in str(caught.value)


# --- warning points ----------------------------------------------------------------------------


def test_warning_points_by_fraction_hours_and_working_days() -> None:
    start = sh(2026, 9, 29, 10)
    due = eod(2026, 10, 12)
    points = warning_points(
        start,
        due,
        [{"fraction": 0.5}, {"before": {"working_days": 1}}, {"before": {"hours": 6}}],
        calendar=CAL,
    )
    assert points == [
        start + (due - start) / 2,
        eod(2026, 10, 10),  # one working day before: the make-up Saturday
        sh(2026, 10, 12, 17, 59, 59),
    ]


def test_warning_points_before_the_start_are_dropped_and_duplicates_merged() -> None:
    start = sh(2026, 9, 30, 20)
    due = start + timedelta(hours=24)
    points = warning_points(
        start,
        due,
        [{"before": {"working_days": 2}}, {"before": {"hours": 12}}, {"fraction": 0.5}],
        calendar=CAL,
    )
    assert points == [sh(2026, 10, 1, 8)]


def test_warning_specs_parse_and_bad_ones_are_refused() -> None:
    assert parse_warning({"fraction": 0.25}) == FractionWarning(0.25)
    assert parse_warning({"before": {"calendar_days": 2}}) == BeforeWarning("calendar_days", 2)
    for bad in (
        {"fraction": 1.5},
        {"fraction": "half"},
        {"before": {"weeks": 1}},
        {"before": {"hours": 0}},
        {"before": {"hours": 1, "working_days": 1}},
        {"after": {"hours": 1}},
    ):
        with pytest.raises(PeriodError):
            parse_warning(bad)


# --- properties --------------------------------------------------------------------------------

_known_days = st.dates(min_value=date(2010, 1, 1), max_value=date(2026, 10, 31))


@settings(max_examples=200, deadline=None)
@given(day=_known_days, hour=st.integers(0, 23), n=st.integers(1, 30), extension=st.booleans())
def test_working_day_deadlines_fall_on_working_days_and_never_before_calendar_day_ones(
    day: date, hour: int, n: int, extension: bool
) -> None:
    start = datetime(day.year, day.month, day.day, hour, tzinfo=SHANGHAI)
    working = due_at(start, unit="working_days", amount=n, holiday_extension=False, calendar=CAL)
    calendar_days = due_at(
        start, unit="calendar_days", amount=n, holiday_extension=extension, calendar=CAL
    )
    assert CAL.is_working_day(working.date())
    assert working >= calendar_days > start
    if extension:
        assert CAL.is_working_day(calendar_days.date())
    assert working.timetz() == calendar_days.timetz()
