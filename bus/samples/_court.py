"""Sample payloads of applications to the court for compulsory execution: ``court.*``."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from bus.models import CourtAcceptanceDecision, CourtRulingDecision, PenaltyType
from bus.samples._context import Builder, Ctx
from bus.samples._documents import sample_ref
from bus.samples._scenarios import incident, scenario_for

__all__ = ["BUILDERS", "OPTIONS"]

_EXECUTABLE = (
    PenaltyType.FINE,
    PenaltyType.CONFISCATION_OF_ILLEGAL_GAINS,
    PenaltyType.ORDER_TO_DEMOLISH,
)
_ACT = "《中华人民共和国行政强制法》"
_NOT_ACCEPTED = (
    f"申请人未提交催告书送达回证，不符合{_ACT}第五十五条规定的申请材料要求。",
    f"申请超过{_ACT}第五十三条规定的申请期限。",
    "被执行人住所地及被执行的财产所在地均不在本院辖区。",
)
_NOT_EXECUTED = (
    f"依照{_ACT}第五十八条，被申请执行的行政决定明显缺乏事实根据。",
    f"依照{_ACT}第五十八条，被申请执行的行政决定明显缺乏法律、法规依据。",
    f"依照{_ACT}第五十八条，被申请执行的行政决定存在其他明显违法并损害被执行人合法权益的情形。",
)


def _court_case_no(ctx: Ctx) -> str:
    """A case number of the court's non-litigation administrative execution review (行审)."""
    return f"（{ctx.today.year}）云0191行审{ctx.rng.randint(1, 160)}号"


def court_execution_application(ctx: Ctx) -> dict[str, Any]:
    """Enforcement applies to execute a penalty decision the party neither obeyed nor contested."""
    s = scenario_for(ctx)
    found = incident(ctx, s)
    penalty_type, low, high = ctx.pick([p for p in s.penalties if p[0] in _EXECUTABLE])
    amount = ctx.rng.randint(low // 100, high // 100) * 100
    compliance_deadline = ctx.today - timedelta(days=ctx.rng.randint(35, 80))
    decided_on = compliance_deadline - timedelta(days=ctx.rng.randint(15, 30))
    reminder_served_on = ctx.today - timedelta(days=ctx.rng.randint(11, 25))
    application_no = ctx.doc_no("阳城执强申")
    decision_no = ctx.doc_no("阳城执罚决字", year=decided_on.year)
    if penalty_type is PenaltyType.ORDER_TO_DEMOLISH:
        obligation, amount_fen = found.text(s.obligation), None
    elif penalty_type is PenaltyType.FINE:
        obligation, amount_fen = f"缴纳罚款人民币{amount:,}元及加处罚款", amount * 100
    else:
        obligation, amount_fen = f"缴纳没收的违法所得人民币{amount:,}元", amount * 100
    documents = [
        sample_ref("行政处罚决定书", f"{decision_no} 行政处罚决定书.pdf"),
        sample_ref("强制执行申请书", f"{application_no} 强制执行申请书.pdf"),
        sample_ref("履行义务催告书及送达回证", f"{application_no} 催告书及送达回证.pdf"),
        sample_ref("证据材料", f"{application_no} 证据材料.pdf"),
    ]
    return {
        "application_no": application_no,
        "decision_no": decision_no,
        "decided_on": decided_on,
        "party": found.party,
        "obligation": obligation,
        "compliance_deadline": compliance_deadline,
        "reminder_served_on": reminder_served_on,
        "amount_fen": amount_fen,
        "documents": documents,
        "applied_at": ctx.before(min_h=0.1, max_h=6),
    }


def court_acceptance(ctx: Ctx) -> dict[str, Any]:
    """The court accepts (most often; some cases need a hearing) or refuses with reasons."""
    default = ctx.pick(
        (CourtAcceptanceDecision.ACCEPTED,) * 9 + (CourtAcceptanceDecision.NOT_ACCEPTED,)
    )
    decision = ctx.enum("decision", CourtAcceptanceDecision, default)
    accepted = decision is CourtAcceptanceDecision.ACCEPTED
    case_no = _court_case_no(ctx)
    reasons = [ctx.pick(_NOT_ACCEPTED)]
    hearing = ctx.chance(0.25)
    return {
        "application_no": ctx.doc_no("阳城执强申"),
        "decision": decision,
        "decided_at": ctx.before(min_h=0.1, max_h=6),
        "court_case_no": case_no if accepted else None,
        "reasons": [] if accepted else reasons,
        "hearing_required": hearing and accepted,
    }


def court_ruling(ctx: Ctx) -> dict[str, Any]:
    """The court rules to execute (most often) or not, with the art. 58 ground."""
    default = ctx.pick((CourtRulingDecision.EXECUTE,) * 6 + (CourtRulingDecision.NOT_EXECUTE,))
    ruling = ctx.enum("ruling", CourtRulingDecision, default)
    case_no = ctx.get("court_case_no", _court_case_no(ctx))
    reasons = [ctx.pick(_NOT_EXECUTED)]
    return {
        "application_no": ctx.doc_no("阳城执强申"),
        "court_case_no": case_no,
        "ruling_no": case_no,  # a ruling (裁定书) bears its case's number
        "ruling": ruling,
        "ruled_at": ctx.before(min_h=0.1, max_h=6),
        "reasons": [] if ruling is CourtRulingDecision.EXECUTE else reasons,
    }


BUILDERS: dict[str, Builder] = {
    "court.execution_application": court_execution_application,
    "court.acceptance": court_acceptance,
    "court.ruling": court_ruling,
}

OPTIONS: dict[str, tuple[str, ...]] = {"court.execution_application": ("scenario",)}
"""Kind → the overrides beyond the model's own fields that its builder understands."""
