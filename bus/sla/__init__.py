"""The SLA engine: day counting, deadline policies as data, an injectable clock, the deadline
store, the engine that opens and closes deadlines from its inbox, and the scheduler that emits
warnings and breaches (``run_sla_engine`` wires them together)."""

from __future__ import annotations

from bus.sla.app import DEFAULT_SLA_KEY_FILE, run_sla_engine
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
from bus.sla.deadline import SLA_AGENCY, Deadline, DeadlineState, Emission
from bus.sla.engine import SlaEngine
from bus.sla.events import SlaEmitter
from bus.sla.fields import policy_field_problems
from bus.sla.parties import Parties
from bus.sla.policy import (
    DEFAULT_POLICIES_PATH,
    KINDS,
    Policy,
    PolicyInputError,
    PolicySet,
    UnknownPolicyError,
    load_policies,
)
from bus.sla.scheduler import SlaScheduler
from bus.sla.store import DeadlineStore

__all__ = [
    "DEFAULT_HOLIDAYS_OVERRIDE_PATH",
    "DEFAULT_POLICIES_PATH",
    "DEFAULT_SLA_KEY_FILE",
    "KINDS",
    "SHANGHAI",
    "SLA_AGENCY",
    "AcceleratedClock",
    "BeforeWarning",
    "Clock",
    "Deadline",
    "DeadlineState",
    "DeadlineStore",
    "Emission",
    "FractionWarning",
    "NaiveDatetimeError",
    "Parties",
    "PeriodError",
    "PeriodUnit",
    "Policy",
    "PolicyInputError",
    "PolicySet",
    "RealClock",
    "SlaEmitter",
    "SlaEngine",
    "SlaScheduler",
    "UnknownPolicyError",
    "WarningSpec",
    "WorkCalendar",
    "clock_from_setting",
    "due_at",
    "load_policies",
    "policy_field_problems",
    "run_sla_engine",
    "warning_points",
]
