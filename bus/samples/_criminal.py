"""Sample payloads of the criminal-transfer chain (两法衔接) and its supervision.

``criminal.*`` between enforcement and police; ``supervision.*`` and ``obstruction.report`` with
the procuratorate.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import time
from typing import Any

from bus.models import (
    CriminalCaseStatus,
    EvidenceItem,
    FilingOutcome,
    ObstructionType,
    PartyRole,
    ReconsiderationOutcome,
    ReturnedMaterial,
    SupervisionNoticeType,
    TransferApproval,
    TransferDocument,
    TransferDocumentType,
    TransferParty,
)
from bus.samples import _people
from bus.samples._agencies import BUREAU, NAMES, POLICE, POLICE_ECO, PROCURATORATE
from bus.samples._context import Builder, Ctx, local_date
from bus.samples._documents import document_sha256, sample_ref
from bus.samples._scenarios import Scenario, incident, scenario_for

__all__ = ["BUILDERS", "OPTIONS"]

_T = TransferDocumentType
_POLICE_DOC = "阳公（食药环）"  # the branch's food, drug and environment crime unit numbers these
_DECREE_310_ART_9 = "《行政执法机关移送涉嫌犯罪案件的规定》第九条"
_NOT_FILED_REASONS = (
    "经审查，现有证据不足以证明有犯罪事实发生。",
    "涉案数额经核定未达到立案追诉标准。",
    "犯罪事实显著轻微，不需要追究刑事责任。",
)
_MAINTAINED_REASONS = (
    "经复议，原不予立案决定认定事实清楚，适用法律正确。",
    "移送机关补充的材料仍不足以证明涉案数额达到立案追诉标准。",
)


def _letter_no(ctx: Ctx) -> str:
    return ctx.doc_no("阳城执移")


def _criminal_case_no(ctx: Ctx) -> str:
    """A police case number: A, the division code, a unit code, year, month, sequence."""
    return f"A5301910500{ctx.today:%Y%m}{ctx.rng.randint(1, 300):04d}"


def _documents(ctx: Ctx, letter_no: str, s: Scenario) -> list[TransferDocument]:
    """The Decree 310 art. 6 manifest, less the ``omit_documents`` the caller names."""
    omit: Iterable[Any] = ctx.overrides.get("omit_documents", ())
    skipped = {_T(t) for t in omit}
    wanted: list[tuple[TransferDocumentType, str, str]] = [
        (_T.TRANSFER_LETTER, "涉嫌犯罪案件移送书", ".pdf"),
        (_T.INVESTIGATION_REPORT, "涉嫌犯罪案件情况的调查报告", ".pdf"),
        (_T.SEIZED_ITEMS_LIST, "涉案物品清单", ".pdf"),
        (_T.INSPECTION_OR_APPRAISAL_REPORT, s.appraisal_title, ".pdf"),
        (_T.OTHER, "现场勘验笔录及询问笔录", ".pdf"),
        (_T.OTHER, "现场照片", ".jpg"),
    ]
    out = []
    for doc_type, title, suffix in wanted:
        if doc_type in skipped:
            continue
        name = f"{letter_no} {title}{suffix}"
        out.append(
            TransferDocument(
                document_type=doc_type,
                title=title,
                attachment_name=name,
                attachment_sha256=document_sha256(name),
            )
        )
    return out


def criminal_transfer(ctx: Ctx) -> dict[str, Any]:
    """Enforcement transfers a suspected-crime case to the police, with the art. 6 documents."""
    s = scenario_for(ctx, criminal=True)
    found = incident(ctx, s)
    letter_no = _letter_no(ctx)
    parties: list[TransferParty]
    if len(found.parties) == 2:
        parties = [
            _people.transfer_party(found.parties[0], PartyRole.SUSPECT_ORGANISATION),
            _people.transfer_party(found.parties[1], PartyRole.LEGAL_REPRESENTATIVE),
        ]
    else:
        parties = [_people.transfer_party(found.party, PartyRole.SUSPECT)]
    witness = _people.transfer_party(_people.person(ctx.rng), PartyRole.WITNESS)
    if ctx.chance(0.3):
        parties.append(witness)
    return {
        "transfer_letter_no": letter_no,
        "case_id": ctx.case_id(),
        "case_name": f"{found.party.name}涉嫌{s.offence}案",
        "suspected_offence": s.offence,
        "criminal_law_articles": list(s.criminal_articles),
        "parties": parties,
        "facts_summary": found.text(s.crime_facts),
        "amount_involved_fen": found.value_yuan * 100 if found.value_yuan else None,
        "approval": TransferApproval(
            approver=_people.official(ctx.rng),
            approver_position="大队长",
            approved_at=ctx.before(min_h=1, max_h=20),
        ),
        "documents": _documents(ctx, letter_no, s),
        "contact_name": _people.official(ctx.rng),
        "contact_phone": _people.phone(ctx.rng),
    }


def criminal_receipt(ctx: Ctx) -> dict[str, Any]:
    """The police sign the receipt on the transfer letter (回执)."""
    note = ctx.pick((None, "移送材料齐全，已签收。", "涉案物品待立案后另行移交。"))
    receipt_no = ctx.doc_no(f"{_POLICE_DOC}收字")
    return {
        "transfer_letter_no": _letter_no(ctx),
        "received_at": ctx.before(min_h=0.1, max_h=3),
        "receiver": f"{NAMES[POLICE]}法制大队",
        "signed_by": _people.official(ctx.rng),
        "receipt_no": receipt_no if ctx.chance(0.8) else None,
        "note": note,
    }


def criminal_jurisdiction_forward(ctx: Ctx) -> dict[str, Any]:
    """A case for the city's environment crime division is forwarded there."""
    return {
        "transfer_letter_no": _letter_no(ctx),
        "competent_agency_id": POLICE_ECO,
        "competent_agency_name": NAMES[POLICE_ECO],
        "reason": "本案系跨区域重大环境资源犯罪案件，依照公安机关刑事案件管辖分工，由"
        f"{NAMES[POLICE_ECO]}管辖。",
        "forwarded_at": ctx.before(min_h=0.1, max_h=6),
        "notice_no": ctx.doc_no("阳公移管字"),
    }


def criminal_filing_decision(ctx: Ctx) -> dict[str, Any]:
    """Filed (most often), or not filed with reasons and the materials returned."""
    default = FilingOutcome.FILED if ctx.chance(0.75) else FilingOutcome.NOT_FILED
    decision = ctx.enum("decision", FilingOutcome, default)
    filed = decision is FilingOutcome.FILED
    number = ctx.doc_no(f"{_POLICE_DOC}{'立' if filed else '不立'}字")
    case_no = _criminal_case_no(ctx)
    reasons = [
        *ctx.rng.sample(_NOT_FILED_REASONS, ctx.rng.randint(1, 2)),
        "依照《中华人民共和国刑事诉讼法》第一百一十二条的规定，决定不予立案。",
    ]
    returned = [
        ReturnedMaterial(title=title, quantity=1, note="原件")
        for title in ("涉嫌犯罪案件移送书", "涉嫌犯罪案件情况的调查报告", "涉案物品清单")
    ]
    return {
        "transfer_letter_no": _letter_no(ctx),
        "decision": decision,
        "decision_no": number,
        "decided_at": ctx.before(min_h=0.1, max_h=6),
        "criminal_case_no": case_no if filed else None,
        "reasons": [] if filed else reasons,
        "returned_materials": [] if filed else returned,
    }


def criminal_reconsideration_request(ctx: Ctx) -> dict[str, Any]:
    """Enforcement asks the police to reconsider a refusal to file (Decree 310 art. 9)."""
    s = scenario_for(ctx, criminal=True)
    found = incident(ctx, s)
    grounds = (
        f"{found.text(s.crime_facts)}我大队认为，本案犯罪事实清楚，证据确实，已达到立案追诉标准，"
        f"贵局作出的不予立案决定认定事实有误。依照{_DECREE_310_ART_9}，特提请复议。"
    )
    return {
        "transfer_letter_no": _letter_no(ctx),
        "request_no": ctx.doc_no("阳城执复议"),
        "refusal_decision_no": ctx.doc_no(f"{_POLICE_DOC}不立字"),
        "grounds": grounds,
        "requested_at": ctx.before(min_h=0.1, max_h=6),
    }


def criminal_reconsideration_decision(ctx: Ctx) -> dict[str, Any]:
    """The police keep the refusal with reasons, or reverse it and file."""
    default = ctx.pick((ReconsiderationOutcome.MAINTAIN_REFUSAL, ReconsiderationOutcome.FILE_CASE))
    decision = ctx.enum("decision", ReconsiderationOutcome, default)
    kept = decision is ReconsiderationOutcome.MAINTAIN_REFUSAL
    case_no = _criminal_case_no(ctx)
    return {
        "transfer_letter_no": _letter_no(ctx),
        "request_no": ctx.doc_no("阳城执复议"),
        "decision": decision,
        "decision_no": ctx.doc_no(f"{_POLICE_DOC}复决字"),
        "decided_at": ctx.before(min_h=0.1, max_h=6),
        "reasons": list(_MAINTAINED_REASONS) if kept else [],
        "criminal_case_no": None if kept else case_no,
    }


def criminal_evidence_handover(ctx: Ctx) -> dict[str, Any]:
    """After filing, the seized items, samples and materials go to the police."""
    s = scenario_for(ctx, criminal=True)
    letter_no = _letter_no(ctx)
    items = []
    for item_type, description, quantity, unit, suffix in s.evidence:
        name = f"{letter_no} {description}{suffix}" if suffix else None
        items.append(
            EvidenceItem(
                item_type=item_type,
                description=description,
                quantity=max(1, quantity + ctx.rng.randint(-1, 2)) if not suffix else quantity,
                unit=unit,
                attachment_name=name,
                attachment_sha256=document_sha256(name) if name else None,
            )
        )
    officers = f"{_people.official(ctx.rng)}、{_people.official(ctx.rng)}"
    return {
        "transfer_letter_no": letter_no,
        "criminal_case_no": _criminal_case_no(ctx),
        "items": items,
        "handed_over_at": ctx.before(min_h=0.1, max_h=6),
        "handed_over_by": f"{NAMES[BUREAU]} {officers}",
        "received_by": f"{NAMES[POLICE]} {_people.official(ctx.rng)}",
    }


_STATUS_NOTES = {
    CriminalCaseStatus.INVESTIGATING: "已对犯罪嫌疑人{name}采取取保候审强制措施，案件正在侦查中。",
    CriminalCaseStatus.CASE_WITHDRAWN: "经侦查，不应对犯罪嫌疑人{name}追究刑事责任，决定撤销案件。",
    CriminalCaseStatus.RETURNED_FOR_ADMINISTRATIVE_PENALTY: "犯罪嫌疑人{name}的行为不构成犯罪但依法"
    "应当给予行政处罚，已将案件移回你大队依法处理。",
    CriminalCaseStatus.TRANSFERRED_FOR_PROSECUTION: "侦查终结，已将犯罪嫌疑人{name}移送"
    f"{NAMES[PROCURATORATE]}审查起诉。",
    CriminalCaseStatus.PROSECUTED: "检察机关已对被告人{name}向人民法院提起公诉。",
    CriminalCaseStatus.NOT_PROSECUTED: "检察机关对犯罪嫌疑人{name}作出不起诉决定。",
    CriminalCaseStatus.JUDGMENT_RENDERED: "人民法院已对被告人{name}作出一审判决。",
    CriminalCaseStatus.CLOSED: "案件已办结。",
    CriminalCaseStatus.OTHER: "案件办理情况另行函告。",
}


def criminal_case_update(ctx: Ctx) -> dict[str, Any]:
    """The police report how far a transferred case has got."""
    default = ctx.pick(
        (CriminalCaseStatus.INVESTIGATING,) * 3
        + (CriminalCaseStatus.TRANSFERRED_FOR_PROSECUTION, CriminalCaseStatus.CASE_WITHDRAWN)
        + (CriminalCaseStatus.RETURNED_FOR_ADMINISTRATIVE_PENALTY,)
    )
    status = ctx.enum("status", CriminalCaseStatus, default)
    name = _people.person(ctx.rng).name
    return {
        "transfer_letter_no": _letter_no(ctx),
        "criminal_case_no": _criminal_case_no(ctx),
        "status": status,
        "updated_at": ctx.before(min_h=0.1, max_h=6),
        "note": _STATUS_NOTES[status].format(name=name),
    }


def supervision_request(ctx: Ctx) -> dict[str, Any]:
    """Enforcement asks the procuratorate for filing supervision (立案监督)."""
    s = scenario_for(ctx, criminal=True)
    message_id = ctx.uuid()
    reason = (
        f"{NAMES[POLICE]}对我大队移送的涉嫌{s.offence}案作出不予立案决定，我大队认为该决定认定"
        f"事实有误，依照{_DECREE_310_ART_9}，建议人民检察院依法进行立案监督。"
    )
    return {
        "request_no": ctx.doc_no("阳城执监建"),
        "transfer_letter_no": _letter_no(ctx),
        "refused_decision_no": ctx.doc_no(f"{_POLICE_DOC}不立字"),
        "refused_decision_message_id": message_id if ctx.chance(0.7) else None,
        "police_agency_id": POLICE,
        "reason": reason,
        "requested_at": ctx.before(min_h=0.1, max_h=6),
    }


_NOTICES = {
    SupervisionNoticeType.EXPLAIN_REFUSAL: (
        "阳检刑监说",
        7,
        "你局于{day}对{bureau}移送的{letter}案件作出不予立案决定。根据《中华人民共和国刑事诉讼法》"
        "第一百一十三条的规定，请你局在收到本通知书后七日内书面说明不立案的理由。",
    ),
    SupervisionNoticeType.FILE_CASE: (
        "阳检刑监立",
        15,
        "本院经审查认为，你局对{bureau}移送的{letter}案件不立案的理由不能成立。根据《中华人民共和国"
        "刑事诉讼法》第一百一十三条的规定，通知你局立案，并在十五日内将立案决定书复印件送达本院。",
    ),
}


def supervision_notice(ctx: Ctx) -> dict[str, Any]:
    """The procuratorate asks the police to explain a refusal (7 days) or to file (15 days)."""
    default = ctx.pick(
        (SupervisionNoticeType.EXPLAIN_REFUSAL,) * 2 + (SupervisionNoticeType.FILE_CASE,)
    )
    notice_type = ctx.enum("notice_type", SupervisionNoticeType, default)
    prefix, days, content = _NOTICES[notice_type]
    letter_no = ctx.get("transfer_letter_no", _letter_no(ctx))
    refused_on = local_date(ctx.before(min_h=24 * 4, max_h=24 * 20))
    issued_at = ctx.before(min_h=0.1, max_h=6)
    return {
        "notice_no": ctx.doc_no(prefix),
        "notice_type": notice_type,
        "transfer_letter_no": letter_no,
        "police_agency_id": POLICE,
        "content": content.format(
            day=f"{refused_on:%Y年%m月%d日}", bureau=NAMES[BUREAU], letter=letter_no
        ),
        "issued_at": issued_at,
        "due_at": ctx.end_of_day(days, at=time(23, 59, 59)),
    }


_OBSTRUCTIONS = {
    ObstructionType.REFUSED_TO_ACCEPT: "我大队向{police}移送涉嫌{offence}案，对方以证据不足为由"
    "拒绝接收移送材料。",
    ObstructionType.NO_RECEIPT: "我大队移送的涉嫌{offence}案材料已送达{police}，对方至今未在"
    "移送书回执上签字。",
    ObstructionType.NO_DECISION_IN_TIME: "{police}接受我大队移送的涉嫌{offence}案已超过3日，"
    "至今未作出立案或者不予立案的决定。",
    ObstructionType.MATERIALS_NOT_RETURNED: "{police}对我大队移送的涉嫌{offence}案作出不予立案"
    "决定后，未按规定退回案卷材料。",
    ObstructionType.INTERFERENCE: "在移送涉嫌{offence}案过程中，有关单位人员多次要求我大队以"
    "罚款代替移送。",
    ObstructionType.OTHER: "涉嫌{offence}案移送过程中出现其他阻碍移送的情形，详见情况说明。",
}


def obstruction_report(ctx: Ctx) -> dict[str, Any]:
    """Enforcement tells the procuratorate that a transfer is being obstructed."""
    s = scenario_for(ctx, criminal=True)
    kind = ctx.enum("obstruction_type", ObstructionType, ctx.pick(list(ObstructionType)))
    report_no = ctx.doc_no("阳城执报")
    by_police = kind not in (ObstructionType.INTERFERENCE, ObstructionType.OTHER)
    evidence = [sample_ref("情况说明", f"{report_no} 情况说明.pdf")]
    if by_police:
        evidence.append(sample_ref("移送书送达回证", f"{report_no} 移送书送达回证.jpg"))
    return {
        "report_no": report_no,
        "transfer_letter_no": _letter_no(ctx),
        "obstruction_type": kind,
        "obstructing_agency_id": POLICE if by_police else None,
        "description": _OBSTRUCTIONS[kind].format(police=NAMES[POLICE], offence=s.offence),
        "occurred_at": ctx.before(min_h=24, max_h=24 * 5),
        "reported_at": ctx.before(min_h=0.1, max_h=4),
        "evidence": evidence,
    }


BUILDERS: dict[str, Builder] = {
    "criminal.transfer": criminal_transfer,
    "criminal.receipt": criminal_receipt,
    "criminal.jurisdiction_forward": criminal_jurisdiction_forward,
    "criminal.filing_decision": criminal_filing_decision,
    "criminal.reconsideration_request": criminal_reconsideration_request,
    "criminal.reconsideration_decision": criminal_reconsideration_decision,
    "criminal.evidence_handover": criminal_evidence_handover,
    "criminal.case_update": criminal_case_update,
    "supervision.request": supervision_request,
    "supervision.notice": supervision_notice,
    "obstruction.report": obstruction_report,
}

OPTIONS: dict[str, tuple[str, ...]] = {
    "criminal.transfer": ("scenario", "omit_documents"),
    "criminal.reconsideration_request": ("scenario",),
    "criminal.evidence_handover": ("scenario",),
    "supervision.request": ("scenario",),
    "obstruction.report": ("scenario",),
}
"""Kind → the overrides beyond the model's own fields that its builder understands."""
