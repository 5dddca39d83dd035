"""The SLA engine's Prometheus metrics (defined once per process); alert rules on them live in
``deploy/prometheus/sla-rules.yaml``."""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Gauge, Histogram

from bus.sla.calendar import unknown_year_counter

__all__ = [
    "BREACHES",
    "EMISSION_DELAY",
    "LAPSED",
    "MET",
    "OPEN",
    "OVERDUE",
    "SKIPPED",
    "TICK",
    "TIME_TO_CLOSE",
    "UNKNOWN_YEAR",
    "WARNINGS",
]

_HOUR: Final = 3600.0
_DAY: Final = 24 * _HOUR

OPEN = Gauge(
    "casebus_sla_open_deadlines",
    "Open deadlines (not yet due, not closed), by policy and owing agency.",
    ["policy", "owner"],
)
OVERDUE = Gauge(
    "casebus_sla_overdue_deadlines",
    "Breached deadlines whose awaited step has still not come, by policy and owing agency.",
    ["policy", "owner"],
)
WARNINGS = Counter(
    "casebus_sla_warnings_total", "sla.warning events written to the outbox.", ["policy"]
)
BREACHES = Counter(
    "casebus_sla_breaches_total", "sla.breach events written to the outbox.", ["policy"]
)
MET = Counter("casebus_sla_met_total", "sla.met events written to the outbox.", ["policy"])
LAPSED = Counter(
    "casebus_sla_lapsed_total", "Windows (obligation: window) that passed unused.", ["policy"]
)
SKIPPED = Counter(
    "casebus_sla_skipped_total",
    "Messages a policy could not use (a field missing or malformed, no party to owe it).",
    ["policy", "reason"],
)
TIME_TO_CLOSE = Histogram(
    "casebus_sla_time_to_close_seconds",
    "From a deadline's start to the step that closed it, by policy (deadline time, not engine "
    "time).",
    ["policy"],
    buckets=(
        _HOUR,
        6 * _HOUR,
        12 * _HOUR,
        _DAY,
        2 * _DAY,
        3 * _DAY,
        5 * _DAY,
        7 * _DAY,
        10 * _DAY,
        15 * _DAY,
        30 * _DAY,
        90 * _DAY,
    ),
)
EMISSION_DELAY = Histogram(
    "casebus_sla_emission_delay_seconds",
    "From a warning point or due instant (by the engine's clock) to its event in the outbox.",
    ["kind"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
TICK = Histogram(
    "casebus_sla_scheduler_tick_seconds",
    "Wall time of one scheduler tick (claim, emit, commit, until nothing is due).",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
UNKNOWN_YEAR = unknown_year_counter()
"""``casebus_sla_calendar_unknown_year_total``: defined by :mod:`bus.sla.calendar`, on first use
there (so ``casebus sla due`` need not load prometheus_client), and here, so the engine's
``/metrics`` lists it from the start, as before."""
