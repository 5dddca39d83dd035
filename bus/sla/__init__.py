"""The SLA engine: day counting, deadline policies as data, an injectable clock, the deadline
store, the engine that opens and closes deadlines from its inbox, and the scheduler that emits
warnings and breaches (``run_sla_engine`` wires them together).

The day counting, clock, deadline and policy names load at once; the engine's I/O parts (Kafka,
PostgreSQL, the payload models) load on first use, so ``casebus sla due`` and anything else that
only computes deadlines starts without them (tests/test_cli_startup.py)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from bus.sla.calendar import (
    DEFAULT_HOLIDAYS_OVERRIDE_PATH,
    SHANGHAI,
    BeforeWarning,
    FractionWarning,
    PeriodUnit,
    WarningSpec,
    WorkCalendar,
    due_at,
    warning_points,
)
from bus.sla.clock import AcceleratedClock, Clock, RealClock, clock_from_setting
from bus.sla.deadline import SLA_AGENCY, Deadline, DeadlineState, Emission
from bus.sla.policy import DEFAULT_POLICIES_PATH, KINDS, Policy, PolicySet, load_policies

if TYPE_CHECKING:
    from bus.sla.app import DEFAULT_SLA_KEY_FILE, run_sla_engine
    from bus.sla.engine import SlaEngine
    from bus.sla.events import SlaEmitter
    from bus.sla.fields import policy_field_problems
    from bus.sla.parties import Parties
    from bus.sla.scheduler import SlaScheduler
    from bus.sla.store import DeadlineStore

_LAZY: dict[str, str] = {
    "DEFAULT_SLA_KEY_FILE": "bus.sla.app",
    "DeadlineStore": "bus.sla.store",
    "Parties": "bus.sla.parties",
    "SlaEmitter": "bus.sla.events",
    "SlaEngine": "bus.sla.engine",
    "SlaScheduler": "bus.sla.scheduler",
    "policy_field_problems": "bus.sla.fields",
    "run_sla_engine": "bus.sla.app",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


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
    "Parties",
    "PeriodUnit",
    "Policy",
    "PolicySet",
    "RealClock",
    "SlaEmitter",
    "SlaEngine",
    "SlaScheduler",
    "WarningSpec",
    "WorkCalendar",
    "clock_from_setting",
    "due_at",
    "load_policies",
    "policy_field_problems",
    "run_sla_engine",
    "warning_points",
]
