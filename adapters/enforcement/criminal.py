"""The enforcement side of the criminal-transfer chain (两法衔接) and of court applications.

The bureau sends ``criminal.transfer``, ``criminal.reconsideration_request``,
``criminal.evidence_handover``, ``supervision.request``, ``obstruction.report`` and
``court.execution_application``, and receives the police's, the procuratorate's and the court's
answers. Two statutory rules are enforced here, before anything is signed, so a department learns
at once what to fix instead of waiting for a refusal days later:

- Decree 310 art. 6: a transfer carries the transfer letter (移送书), the investigation report
  (调查报告), the list of seized items (涉案物品清单) and, where the case has one, the inspection
  report or appraisal conclusion (检验报告/鉴定结论). A case without any inspection or appraisal
  says so with the department-only flag ``wjyjd`` (无检验鉴定: true); the flag does not travel.
- Administrative Compulsion Law arts. 53, 54 and 69: an application to the court is made only after
  the reminder (催告书) has been served for ten working days, and no later than three months after
  the party's compliance deadline. The three months come from the ``court.execution_application``
  deadline policy of the file the adapter's settings name (``CASEBUS_SLA_POLICIES_FILE``, as the
  SLA engine reads it); both count on the Chinese working-day calendar.

The checks are listed in :data:`CRIMINAL_CHECKS`, which the bureau's spec hands the framework.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, time
from typing import Any, Final

from adapters._framework.chain import CHAIN_KINDS, DOCUMENT_TYPES
from adapters._framework.checks import DeadlineRules, SubmissionCheck
from adapters._framework.checks import problem as _problem
from adapters._framework.vocabulary import KindVocabulary
from bus.errors import Problem
from bus.models import MANDATORY_TRANSFER_DOCUMENTS
from bus.sla.calendar import SHANGHAI, due_at

__all__ = [
    "COURT_APPLICATION_POLICY",
    "CRIMINAL_CHECKS",
    "CRIMINAL_KINDS",
    "CRIMINAL_RECEIVES",
    "CRIMINAL_SENDS",
    "DOCUMENT_TYPES",
    "NO_INSPECTION_FIELD",
    "REMINDER_WAIT_WORKING_DAYS",
    "check_court_application",
    "check_transfer",
]

CRIMINAL_SENDS: Final = [
    "criminal.transfer",
    "criminal.reconsideration_request",
    "criminal.evidence_handover",
    "supervision.request",
    "obstruction.report",
    "court.execution_application",
]
"""What the bureau submits in the criminal chain and to the court."""
CRIMINAL_RECEIVES: Final = [
    "criminal.receipt",
    "criminal.jurisdiction_forward",
    "criminal.filing_decision",
    "criminal.reconsideration_decision",
    "criminal.case_update",
    "supervision.notice",
    "court.acceptance",
    "court.ruling",
]
"""What the bureau is sent in the criminal chain and by the court."""

NO_INSPECTION_FIELD: Final = "wjyjd"
"""无检验鉴定: the case had no inspection or appraisal, so art. 6 asks for no such report."""
REMINDER_WAIT_WORKING_DAYS: Final = 10
"""行政强制法 art. 54: apply only after the reminder has been served for ten days; art. 69 makes
periods of ten days or less working days."""
COURT_APPLICATION_POLICY: Final = "court.execution_application"
"""The deadline policy whose period bounds an application after the compliance deadline."""

CRIMINAL_KINDS: Final[tuple[KindVocabulary, ...]] = tuple(CHAIN_KINDS.values())
"""The chain's kinds in the bureau's terms: the bureau takes part in every one."""

_DOCUMENT_NAMES: Final = {ours: theirs for theirs, ours in DOCUMENT_TYPES.items()}


def check_transfer(
    doc: Mapping[str, Any], payload: Mapping[str, Any], _rules: DeadlineRules, _now: datetime
) -> list[Problem]:
    """Decree 310 art. 6: one problem per mandatory document missing from ``yscl``."""
    documents = payload.get("documents")
    if not isinstance(documents, list):
        return []  # the model reports a missing or malformed manifest
    present = {d.get("document_type") for d in documents if isinstance(d, Mapping)}
    no_inspection = doc.get(NO_INSPECTION_FIELD) is True
    problems = []
    for wanted in MANDATORY_TRANSFER_DOCUMENTS:
        if wanted.value in present:
            continue
        if wanted.value == "INSPECTION_OR_APPRAISAL_REPORT" and no_inspection:
            continue
        if wanted.value == "TRANSFER_LETTER":
            continue  # the payload model itself refuses a manifest without the letter
        name = _DOCUMENT_NAMES[wanted.value]
        problems.append(
            _problem(
                "yscl",
                "mandatory_document_missing",
                f"Decree 310 art. 6: the transfer lacks the {wanted.value.lower()} ({name})"
                + (
                    f"; if the case had no inspection or appraisal, set {NO_INSPECTION_FIELD}"
                    if wanted.value == "INSPECTION_OR_APPRAISAL_REPORT"
                    else ""
                ),
                f"《行政执法机关移送涉嫌犯罪案件的规定》第六条：移送材料缺少{name}",
                name,
            )
        )
    return problems


def _as_date(value: Any) -> date | None:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            return None
    return None


def check_court_application(
    _doc: Mapping[str, Any], payload: Mapping[str, Any], rules: DeadlineRules, now: datetime
) -> list[Problem]:
    """行政强制法 arts. 53-54 and 69: the application is made (``now``) inside its window, the
    window's period read from ``rules`` (the operator's policy file)."""
    made = now.astimezone(SHANGHAI)
    calendar = rules.calendar
    problems: list[Problem] = []
    served = _as_date(payload.get("reminder_served_on"))
    if served is not None:
        last_wait_day = calendar.add_working_days(served, REMINDER_WAIT_WORKING_DAYS)
        if made.date() <= last_wait_day:
            earliest = calendar.next_working_day(last_wait_day)
            problems.append(
                _problem(
                    "cgsdrq",
                    "reminder_period_not_elapsed",
                    "Administrative Compulsion Law arts. 54 and 69: apply only after the reminder"
                    f" has been served for {REMINDER_WAIT_WORKING_DAYS} working days; served on"
                    f" {served}, the earliest application day is {earliest}",
                    f"《行政强制法》第五十四条、第六十九条：催告书送达十个工作日后方可申请，"
                    f"最早可于{earliest}申请",
                    served.isoformat(),
                )
            )
    deadline = _as_date(payload.get("compliance_deadline"))
    if deadline is not None:
        policy = rules.policies.get(COURT_APPLICATION_POLICY)
        period = policy.period_for(payload)
        closes = due_at(
            datetime.combine(deadline, time(0), SHANGHAI),
            unit=period.unit,
            amount=period.amount,
            holiday_extension=policy.holiday_extension,
            calendar=calendar,
        )
        if made > closes:
            problems.append(
                _problem(
                    "lxqx",
                    "application_window_passed",
                    "Administrative Compulsion Law art. 53: apply within "
                    f"{period.amount} {period.unit} of the compliance deadline {deadline}; "
                    f"the window closed at {closes.isoformat()}",
                    f"《行政强制法》第五十三条：应自履行期限届满之日起三个月内申请，"
                    f"申请期限已于{closes.date()}届满",
                    deadline.isoformat(),
                )
            )
    return problems


CRIMINAL_CHECKS: Final = (
    SubmissionCheck(
        kind="criminal.transfer", check=check_transfer, own_fields=frozenset({NO_INSPECTION_FIELD})
    ),
    SubmissionCheck(kind="court.execution_application", check=check_court_application),
)
"""The bureau's statutory checks, applied by the framework's submitter before signing."""
