"""Sample payloads between regulators and enforcement: ``clue.*``, ``opinion.*``, feedback."""

from __future__ import annotations

import calendar
from datetime import date, timedelta
from typing import Any

from bus.models import (
    ClueDecision,
    CompulsoryMeasure,
    ExecutionStatus,
    PenaltyDecision,
    PenaltyType,
)
from bus.samples import _people
from bus.samples._agencies import DOC_PREFIXES, NAMES, REGULATORS
from bus.samples._context import Builder, Ctx
from bus.samples._documents import sample_ref
from bus.samples._scenarios import Incident, Scenario, incident, scenario_for

__all__ = ["BUILDERS", "OPTIONS"]

_CLUE_REJECTIONS = (
    "该线索所涉违法行为不属于相对集中行政处罚权划转范围，请贵局依法处理。",
    "线索材料缺少当事人身份信息及现场检查笔录，无法确定违法主体，请补充后重新移交。",
    "经核查，该违法行为已于移交前由本大队立案查处，不再重复受理。",
)
_OPINION_DELAY = {"PROFESSIONAL_OPINION": 10, "MATERIALS": 5, "CERTIFICATION": 10}


def _regulator(ctx: Ctx, scenario: Scenario | None = None) -> str:
    chosen = ctx.overrides.get("regulator")
    if chosen is not None:
        if chosen not in REGULATORS:
            raise ValueError(f"unknown regulator {chosen!r}; known: {', '.join(REGULATORS)}")
        return str(chosen)
    return ctx.pick(scenario.regulators if scenario else REGULATORS)


def _found(ctx: Ctx) -> tuple[str, Incident]:
    """The regulator concerned and a violation in its field."""
    regulator = ctx.overrides.get("regulator")
    scenario = scenario_for(ctx, regulator=regulator if isinstance(regulator, str) else None)
    return _regulator(ctx, scenario), incident(ctx, scenario)


def clue_handover(ctx: Ctx) -> dict[str, Any]:
    """A regulator hands over a violation it found during supervision (线索移交)."""
    regulator, found = _found(ctx)
    s = found.scenario
    clue_no = ctx.doc_no(f"{DOC_PREFIXES[regulator]}线移")
    discovered_at = ctx.before(min_h=20, max_h=24 * 12)
    records = []
    for title in s.records:
        suffix = ".jpg" if "照片" in title else ".pdf"
        records.append(sample_ref(title, f"{clue_no} {title}{suffix}"))
    return {
        "clue_no": clue_no,
        "violation_type": s.violation,
        "description": found.text(s.facts) + f"经{NAMES[regulator]}现场检查发现，现移交查处。",
        "location": f"阳宗海风景名胜区{found.place}",
        "discovered_at": discovered_at,
        "legal_basis": list(s.legal_basis),
        "parties": list(found.parties[:1] if ctx.chance(0.5) else found.parties),
        "supervision_records": records,
    }


def clue_receipt(ctx: Ctx) -> dict[str, Any]:
    """Enforcement accepts a clue (most of the time) or sends it back with its reason."""
    regulator = _regulator(ctx)
    default = ClueDecision.ACCEPTED if ctx.chance(0.85) else ClueDecision.REJECTED
    decision = ctx.enum("decision", ClueDecision, default)
    reason = ctx.pick(_CLUE_REJECTIONS)
    case_id = ctx.case_id()
    accepted = decision is ClueDecision.ACCEPTED
    return {
        "clue_no": ctx.doc_no(f"{DOC_PREFIXES[regulator]}线移"),
        "decision": decision,
        "decided_at": ctx.before(min_h=0.1, max_h=6),
        "reason": None if accepted else reason,
        "enforcement_case_id": case_id if accepted else None,
    }


def opinion_request(ctx: Ctx) -> dict[str, Any]:
    """Enforcement asks the regulator for an opinion, inspection or appraisal by a set day."""
    _, found = _found(ctx)
    s = found.scenario
    request_no = ctx.doc_no("阳城执函")
    due_at = ctx.end_of_day(_OPINION_DELAY.get(s.opinion_type.value, 15) + ctx.rng.randint(0, 5))
    materials = [
        sample_ref("现场检查（勘验）笔录", f"{request_no} 现场检查笔录.pdf"),
        sample_ref("现场照片", f"{request_no} 现场照片.jpg"),
    ]
    return {
        "request_no": request_no,
        "opinion_type": s.opinion_type,
        "subject": found.text(s.opinion_subject),
        "background": found.text(s.facts) + "为查明案件事实，请贵单位协助。",
        "questions": list(s.questions),
        "materials": materials,
        "reference_standards": list(s.standards),
        "due_at": due_at,
        "contact_name": _people.official(ctx.rng),
        "contact_phone": _people.phone(ctx.rng),
    }


def opinion_response(ctx: Ctx) -> dict[str, Any]:
    """The regulator answers in writing, with its signed opinion attached."""
    regulator, found = _found(ctx)
    s = found.scenario
    response_no = ctx.doc_no(f"{DOC_PREFIXES[regulator]}函")
    title = s.appraisal_title or f"关于{s.violation}有关问题的复函"
    return {
        "request_no": ctx.doc_no("阳城执函"),
        "response_no": response_no,
        "answer": found.text(s.answer),
        "conclusions": [found.text(c) for c in s.conclusions],
        "documents": [sample_ref(title, f"{response_no} {title}.pdf")],
        "answered_at": ctx.before(min_h=0.1, max_h=4),
        "signed_by": f"{_people.official(ctx.rng)}（{NAMES[regulator]}）",
    }


def opinion_delegated(ctx: Ctx) -> dict[str, Any]:
    """The regulator has commissioned a qualified institution and says when to expect it."""
    _, found = _found(ctx)
    s = found.scenario
    name, code = _people.institution(ctx.rng, s.institution_trade)
    delegated_at = ctx.before(min_h=0.1, max_h=4)
    certificate = {
        "测绘有限公司": f"乙测资字5350{ctx.rng.randrange(10**4):04d}",
        "资产评估有限公司": f"云财资评〔{ctx.today.year - 3}〕{ctx.rng.randint(1, 60)}号",
    }.get(s.institution_trade, f"CMA {ctx.today.year - 2}25{ctx.rng.randrange(10**6):06d}")
    return {
        "request_no": ctx.doc_no("阳城执函"),
        "institution_name": name,
        "institution_credit_code": code,
        "qualification_certificate_no": certificate,
        "scope": found.text(s.opinion_subject),
        "delegated_at": delegated_at,
        "expected_at": ctx.end_of_day(ctx.rng.randint(12, 30)),
    }


def _decision(ctx: Ctx, found: Incident, day: date, *, suspected: bool) -> PenaltyDecision:
    s = found.scenario
    penalty_type, low, high = ctx.pick(s.penalties)
    amount_yuan = ctx.rng.randint(low // 100, high // 100) * 100 if high else 0
    if suspected and penalty_type is not PenaltyType.FINE:
        # 以罚代刑 looks like this: a fine, at the top of its range, where a transfer was due
        fines = [top for kind, _, top in s.penalties if kind is PenaltyType.FINE]
        penalty_type, amount_yuan = PenaltyType.FINE, max(fines, default=100_000)
    measures: list[CompulsoryMeasure] = [m for m in s.measures if ctx.chance(0.5)]
    status = ctx.pick(
        (ExecutionStatus.EXECUTED,) * 3
        + (ExecutionStatus.EXECUTING, ExecutionStatus.NOT_EXECUTED)
        + (ExecutionStatus.COURT_ENFORCEMENT_APPLIED,)
    )
    violation = found.text(s.facts)
    return PenaltyDecision(
        case_id=ctx.case_id(),
        decision_no=ctx.doc_no("阳城执罚决字", year=day.year),
        decided_on=day,
        party=found.party,
        violation=violation,
        legal_basis=s.penalty_basis,
        penalty_type=penalty_type,
        amount_fen=amount_yuan * 100,
        compulsory_measures=measures,
        execution_status=status,
        suspected_crime=suspected,
    )


def penalty_feedback(ctx: Ctx) -> dict[str, Any]:
    """Last month's penalties and compulsory measures in the regulator's field (定期反馈)."""
    regulator = _regulator(ctx)
    end = ctx.today.replace(day=1) - timedelta(days=1)
    start = end.replace(day=1)
    count = int(ctx.overrides.get("decision_count", ctx.rng.randint(1, 4)))
    suspected = bool(ctx.overrides.get("suspected_crime", False))
    decisions = []
    for i in range(count):
        flagged = suspected and i == 0
        scenario = scenario_for(ctx, regulator=regulator, criminal=flagged)
        day = start + timedelta(
            days=ctx.rng.randrange(calendar.monthrange(start.year, start.month)[1])
        )
        decisions.append(_decision(ctx, incident(ctx, scenario), day, suspected=flagged))
    return {
        "report_no": ctx.doc_no("阳城执反馈"),
        "period_start": start,
        "period_end": end,
        "decisions": decisions,
    }


BUILDERS: dict[str, Builder] = {
    "clue.handover": clue_handover,
    "clue.receipt": clue_receipt,
    "opinion.request": opinion_request,
    "opinion.response": opinion_response,
    "opinion.delegated": opinion_delegated,
    "penalty.feedback": penalty_feedback,
}

OPTIONS: dict[str, tuple[str, ...]] = {
    "clue.handover": ("regulator", "scenario"),
    "clue.receipt": ("regulator",),
    "opinion.request": ("regulator", "scenario"),
    "opinion.response": ("regulator", "scenario"),
    "opinion.delegated": ("regulator", "scenario"),
    "penalty.feedback": ("regulator", "scenario", "decision_count", "suspected_crime"),
}
"""Kind → the overrides beyond the model's own fields that its builder understands."""
