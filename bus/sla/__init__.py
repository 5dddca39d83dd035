"""The SLA engine's pure logic: day counting, deadline policies as data, an injectable clock."""

from __future__ import annotations

from bus.sla.calendar import (
    DEFAULT_HOLIDAYS_OVERRIDE_PATH,
    SHANGHAI,
    BeforeWarning,
    FractionWarning,
    NaiveDatetimeError,
    PeriodError,
    PeriodUnit,
    WarningSpec,
    WorkCalendar,
    due_at,
    warning_points,
)
from bus.sla.clock import AcceleratedClock, Clock, RealClock, clock_from_setting
from bus.sla.policy import (
    DEFAULT_POLICIES_PATH,
    KINDS,
    Policy,
    PolicyInputError,
    PolicySet,
    UnknownPolicyError,
    load_policies,
)

__all__ = [
    "DEFAULT_HOLIDAYS_OVERRIDE_PATH",
    "DEFAULT_POLICIES_PATH",
    "KINDS",
    "SHANGHAI",
    "AcceleratedClock",
    "BeforeWarning",
    "Clock",
    "FractionWarning",
    "NaiveDatetimeError",
    "PeriodError",
    "PeriodUnit",
    "Policy",
    "PolicyInputError",
    "PolicySet",
    "RealClock",
    "UnknownPolicyError",
    "WarningSpec",
    "WorkCalendar",
    "clock_from_setting",
    "due_at",
    "load_policies",
    "warning_points",
]
