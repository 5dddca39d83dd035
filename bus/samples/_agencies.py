"""Who sends each kind in the samples, who may not, and how each agency numbers its documents.

The ids are those of ``deploy/agencies.yaml``; ``tests/test_samples.py`` checks every route below
against ``deploy/routing.yaml``, so a change of policy that breaks a sample fails a test.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "BUREAU",
    "COURT",
    "DOC_PREFIXES",
    "NAMES",
    "POLICE",
    "POLICE_ECO",
    "PROCURATORATE",
    "REFUSED_ROUTES",
    "REGULATORS",
    "SAMPLE_ROUTES",
    "refused_route",
]

BUREAU = "ygh.enforcement.bureau"
POLICE = "ygh.police.bureau"
POLICE_ECO = "kmg.police.eco"
PROCURATORATE = "ygh.procuratorate"
COURT = "ygh.court"
BUS = "casebus"
SLA = "casebus.sla"

NAMES: Final[dict[str, str]] = {
    BUREAU: "阳宗海风景名胜区城乡管理综合执法大队",
    "ygh.enforcement.tangchi": "汤池街道城乡管理执法中队",
    "ygh.enforcement.qidian": "七甸街道城乡管理执法中队",
    "ygh.enforcement.yangzong": "阳宗镇城乡管理执法中队",
    "ygh.regulator.planning": "规划局",
    "ygh.regulator.construction": "城乡建设和交通运输局",
    "ygh.regulator.environment": "环保分局",
    "ygh.regulator.water": "环境和水资源保护局",
    "ygh.regulator.market": "工商分局",
    "ygh.regulator.fooddrug": "食品药品监督管理局",
    "ygh.regulator.land": "国土分局",
    "ygh.regulator.park": "工业园区管委会",
    POLICE: "昆明市公安局阳宗海风景名胜区分局",
    POLICE_ECO: "昆明市公安局环境食品药品和旅游犯罪侦查支队",
    PROCURATORATE: "昆明市阳宗海风景名胜区人民检察院",
    COURT: "昆明市阳宗海风景名胜区人民法院",
}
"""Display names, as in the agency registry."""

REGULATORS: Final = tuple(a for a in NAMES if a.startswith("ygh.regulator."))

DOC_PREFIXES: Final[dict[str, str]] = {
    BUREAU: "阳城执",
    "ygh.regulator.planning": "阳规",
    "ygh.regulator.construction": "阳建交",
    "ygh.regulator.environment": "阳环",
    "ygh.regulator.water": "阳环水",
    "ygh.regulator.market": "阳工商",
    "ygh.regulator.fooddrug": "阳食药监",
    "ygh.regulator.land": "阳国土",
    "ygh.regulator.park": "阳园管",
    POLICE: "阳公",
    PROCURATORATE: "阳检",
}
"""The short agency name that opens its document numbers (阳城执罚〔2026〕第0123号)."""

SAMPLE_ROUTES: Final[dict[str, tuple[str, list[str]]]] = {
    "criminal.transfer": (BUREAU, [POLICE]),
    "criminal.receipt": (POLICE, [BUREAU]),
    "criminal.jurisdiction_forward": (POLICE, [POLICE_ECO, BUREAU]),
    "criminal.filing_decision": (POLICE, [BUREAU]),
    "criminal.reconsideration_request": (BUREAU, [POLICE]),
    "criminal.reconsideration_decision": (POLICE, [BUREAU]),
    "criminal.evidence_handover": (BUREAU, [POLICE]),
    "criminal.case_update": (POLICE, [BUREAU]),
    "supervision.request": (BUREAU, [PROCURATORATE]),
    "supervision.notice": (PROCURATORATE, [POLICE, BUREAU]),
    "obstruction.report": (BUREAU, [PROCURATORATE]),
    "clue.handover": ("ygh.regulator.environment", [BUREAU]),
    "clue.receipt": (BUREAU, ["ygh.regulator.environment"]),
    "opinion.request": (BUREAU, ["ygh.regulator.environment"]),
    "opinion.response": ("ygh.regulator.environment", [BUREAU]),
    "opinion.delegated": ("ygh.regulator.environment", [BUREAU]),
    "penalty.feedback": (BUREAU, ["ygh.regulator.planning"]),
    "court.execution_application": (BUREAU, [COURT]),
    "court.acceptance": (COURT, [BUREAU]),
    "court.ruling": (COURT, [BUREAU]),
    "bus.delivered": (BUS, [BUREAU]),
    "bus.ack": (POLICE, [BUREAU]),
    "bus.nack": (BUS, ["ygh.regulator.environment"]),
    "sla.warning": (SLA, [POLICE]),
    "sla.breach": (SLA, [POLICE, PROCURATORATE]),
    "sla.met": (SLA, ["ygh.regulator.environment"]),
    "audit.tree_head": (BUS, [PROCURATORATE]),
}
"""Kind → one typical ``(sender, recipients)`` the routing policy allows."""

REFUSED_ROUTES: Final[dict[str, tuple[str, list[str]]]] = {
    # A regulator may hand clues to enforcement, never a case to the police.
    "criminal.transfer": ("ygh.regulator.environment", [POLICE]),
    "criminal.receipt": (POLICE, ["ygh.regulator.environment"]),
    "criminal.jurisdiction_forward": (POLICE, [COURT]),
    # The procuratorate gets every criminal.* as a copy; it is never named as a recipient.
    "criminal.filing_decision": (POLICE, [PROCURATORATE]),
    "criminal.reconsideration_request": (BUREAU, [COURT]),
    "criminal.reconsideration_decision": (PROCURATORATE, [BUREAU]),
    "criminal.evidence_handover": (BUREAU, [PROCURATORATE]),
    "criminal.case_update": (COURT, [BUREAU]),
    "supervision.request": ("ygh.regulator.land", [PROCURATORATE]),
    "supervision.notice": (POLICE, [BUREAU]),
    "obstruction.report": (POLICE, [PROCURATORATE]),
    "clue.handover": (BUREAU, ["ygh.regulator.planning"]),
    "clue.receipt": (POLICE, ["ygh.regulator.planning"]),
    "opinion.request": ("ygh.regulator.planning", ["ygh.regulator.land"]),
    "opinion.response": (BUREAU, ["ygh.regulator.planning"]),
    "opinion.delegated": (COURT, [BUREAU]),
    "penalty.feedback": (BUREAU, [POLICE]),
    "court.execution_application": ("ygh.regulator.market", [COURT]),
    "court.acceptance": (PROCURATORATE, [BUREAU]),
    "court.ruling": (COURT, [POLICE]),
    # Only the router writes delivery receipts and tree heads; only the SLA engine writes sla.*.
    "bus.delivered": (POLICE, [BUREAU]),
    "bus.ack": (SLA, [BUREAU]),
    "bus.nack": (SLA, [BUREAU]),
    "sla.warning": (BUREAU, [POLICE]),
    "sla.breach": (BUS, [POLICE]),
    "sla.met": (PROCURATORATE, [POLICE]),
    "audit.tree_head": (BUS, [BUREAU]),
}
"""Kind → one ``(sender, recipients)`` of registered agencies that the routing policy refuses."""


def refused_route(kind: str) -> tuple[str, list[str]]:
    """A sender and recipients, all in the agency registry, that the policy refuses for ``kind``."""
    try:
        sender, recipients = REFUSED_ROUTES[kind]
    except KeyError:
        raise ValueError(f"no sample route for unknown kind {kind!r}") from None
    return sender, list(recipients)
