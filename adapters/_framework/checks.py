"""Submission checks: the statutory rules an adapter applies before anything is signed.

A department learns at once what to fix instead of waiting days for a refusal. The rules that
count deadlines count them from the same files as the SLA engine: :class:`DeadlineRules` is read
from the :class:`~bus.settings.Settings` the adapter is built with (``CASEBUS_SLA_POLICIES_FILE``,
``CASEBUS_SLA_HOLIDAYS_OVERRIDE_FILE``), never from the shipped files behind an operator's back.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bus.errors import Problem
from bus.settings import Settings
from bus.sla.calendar import DEFAULT_HOLIDAYS_OVERRIDE_PATH, WorkCalendar
from bus.sla.policy import PolicySet, load_policies

__all__ = ["Check", "DeadlineRules", "SubmissionCheck", "problem", "run_checks"]


@dataclass(frozen=True)
class DeadlineRules:
    """The deadline policies and the working-day calendar deadlines are counted with."""

    policies: PolicySet
    calendar: WorkCalendar

    @classmethod
    def from_settings(cls, settings: Settings) -> DeadlineRules:
        """The files ``settings`` name (no holiday override file: the shipped one, as the SLA
        engine reads it)."""
        holidays = settings.sla_holidays_override_file or DEFAULT_HOLIDAYS_OVERRIDE_PATH
        return cls(load_policies(settings.sla_policies_file), WorkCalendar(holidays))


Check = Callable[[Mapping[str, Any], Mapping[str, Any], DeadlineRules, datetime], list[Problem]]
"""A statutory check: (the department's document, the payload in our names, the deadline rules,
the time of submission) → every problem found."""


@dataclass(frozen=True, kw_only=True)
class SubmissionCheck:
    """One check of one kind, and the department-only fields it reads (they do not travel)."""

    kind: str
    check: Check
    own_fields: frozenset[str] = field(default_factory=frozenset)


def problem(path: str, rule: str, en: str, zh: str, value: Any = None) -> Problem:
    """A problem with a department's document, in English and Chinese."""
    return Problem(path=path, rule=rule, message=en, value=value, message_zh=zh)


def run_checks(
    checks: Sequence[SubmissionCheck],
    kind: str,
    doc: Mapping[str, Any],
    rules: DeadlineRules,
    now: datetime,
) -> tuple[dict[str, Any], Callable[[Mapping[str, Any]], list[Problem]]]:
    """``doc`` without the department-only fields of ``kind``'s checks, and the function that
    finds the problems once the payload (in our names) is known; a department-only field must
    be true or false."""
    mine = [c for c in checks if c.kind == kind]
    own = frozenset().union(*(c.own_fields for c in mine))
    flags = [
        problem(name, "bool_type", "must be true or false", "须为 true 或 false")
        for name in sorted(own)
        if name in doc and not isinstance(doc[name], bool)
    ]

    def problems(payload: Mapping[str, Any]) -> list[Problem]:
        found = list(flags)
        for c in mine:
            found += c.check(doc, payload, rules, now)
        return found

    return {k: v for k, v in doc.items() if k not in own}, problems
