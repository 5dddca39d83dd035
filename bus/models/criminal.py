"""Payloads of the criminal-transfer chain (两法衔接, Decree 310) and its supervision.

``criminal.*`` between enforcement and police; ``supervision.*`` and ``obstruction.report`` with
the procuratorate, which supervises how transfers are made and received.
"""

from __future__ import annotations

from typing import Annotated, ClassVar
from uuid import UUID

from pydantic import Field, model_validator

from bus.models._common import (
    AgencyId,
    AttachmentRef,
    AvroEnum,
    AvroModel,
    Fen,
    IdDocumentType,
    PayloadModel,
    Quantity,
    Sha256Hex,
    Text,
    UtcDatetime,
    require_reasons,
    rule_error,
)
from bus.models._identifier import Identifier

__all__ = [
    "MANDATORY_TRANSFER_DOCUMENTS",
    "CriminalCaseStatus",
    "CriminalCaseUpdate",
    "CriminalEvidenceHandover",
    "CriminalFilingDecision",
    "CriminalJurisdictionForward",
    "CriminalReceipt",
    "CriminalReconsiderationDecision",
    "CriminalReconsiderationRequest",
    "CriminalTransfer",
    "EvidenceItem",
    "EvidenceItemType",
    "FilingOutcome",
    "ObstructionReport",
    "ObstructionType",
    "PartyRole",
    "ReconsiderationOutcome",
    "ReturnedMaterial",
    "SupervisionNotice",
    "SupervisionNoticeType",
    "SupervisionRequest",
    "TransferApproval",
    "TransferDocument",
    "TransferDocumentType",
    "TransferParty",
]


class PartyRole(AvroEnum):
    """A party's role in a transferred case."""

    SUSPECT = "SUSPECT"  # 犯罪嫌疑人
    SUSPECT_ORGANISATION = "SUSPECT_ORGANISATION"  # 涉嫌犯罪单位
    RESPONSIBLE_PERSON = "RESPONSIBLE_PERSON"  # 直接负责的主管人员
    LEGAL_REPRESENTATIVE = "LEGAL_REPRESENTATIVE"  # 法定代表人
    VICTIM = "VICTIM"  # 被害人
    WITNESS = "WITNESS"  # 证人
    OTHER = "OTHER"


class TransferDocumentType(AvroEnum):
    """The kinds of material Decree 310 art. 6 lists for a transfer."""

    TRANSFER_LETTER = "TRANSFER_LETTER"  # 涉嫌犯罪案件移送书
    INVESTIGATION_REPORT = "INVESTIGATION_REPORT"  # 涉嫌犯罪案件情况的调查报告
    SEIZED_ITEMS_LIST = "SEIZED_ITEMS_LIST"  # 涉案物品清单
    INSPECTION_OR_APPRAISAL_REPORT = "INSPECTION_OR_APPRAISAL_REPORT"  # 检验报告或者鉴定结论
    OTHER = "OTHER"  # 其他有关涉嫌犯罪的材料


MANDATORY_TRANSFER_DOCUMENTS: tuple[TransferDocumentType, ...] = (
    TransferDocumentType.TRANSFER_LETTER,
    TransferDocumentType.INVESTIGATION_REPORT,
    TransferDocumentType.SEIZED_ITEMS_LIST,
    TransferDocumentType.INSPECTION_OR_APPRAISAL_REPORT,
)
"""The documents Decree 310 art. 6 names, in its order."""


class TransferParty(AvroModel):
    """A person or organisation involved in a transferred case."""

    name: Text
    role: PartyRole
    id_type: IdDocumentType
    id_number: Text
    address: Text | None = None


class TransferApproval(AvroModel):
    """The agency head's approval of a transfer (Decree 310 art. 5)."""

    approver: Text
    approver_position: Text | None = None
    approved_at: UtcDatetime


class TransferDocument(AvroModel):
    """One entry of the art. 6 manifest, pointing at an envelope attachment."""

    document_type: TransferDocumentType
    title: Text
    attachment_name: Text
    attachment_sha256: Sha256Hex


class CriminalTransfer(PayloadModel):
    """``criminal.transfer``: a suspected-crime case sent to the police (涉嫌犯罪案件移送)."""

    KIND: ClassVar[str] = "criminal.transfer"
    SCHEMA_VERSION: ClassVar[int] = 1

    transfer_letter_no: Text
    case_id: Identifier
    case_name: Text
    suspected_offence: Text
    criminal_law_articles: list[Text] = Field(default_factory=list)
    parties: Annotated[list[TransferParty], Field(min_length=1)]
    facts_summary: Text
    amount_involved_fen: Fen | None = None
    approval: TransferApproval
    documents: Annotated[list[TransferDocument], Field(min_length=1)]
    contact_name: Text | None = None
    contact_phone: Text | None = None

    @model_validator(mode="after")
    def _has_transfer_letter(self) -> CriminalTransfer:
        if all(d.document_type != TransferDocumentType.TRANSFER_LETTER for d in self.documents):
            raise rule_error(
                "transfer_letter_missing",
                "the document manifest must list the transfer letter",
                field="documents",
            )
        return self

    def missing_mandatory_documents(self) -> list[TransferDocumentType]:
        """The art. 6 document kinds absent from the manifest, in the order art. 6 lists them.

        Only the transfer letter is enforced here; whether a case without seized items or without
        an appraisal may go without those lists is the enforcement adapter's call.
        """
        present = {d.document_type for d in self.documents}
        return [t for t in MANDATORY_TRANSFER_DOCUMENTS if t not in present]


class CriminalReceipt(PayloadModel):
    """``criminal.receipt``: the police sign the receipt on the transfer letter (回执)."""

    KIND: ClassVar[str] = "criminal.receipt"
    SCHEMA_VERSION: ClassVar[int] = 1

    transfer_letter_no: Text
    received_at: UtcDatetime
    receiver: Text
    signed_by: Text
    receipt_no: Text | None = None
    note: Text | None = None


class CriminalJurisdictionForward(PayloadModel):
    """``criminal.jurisdiction_forward``: a case outside the police's jurisdiction moves on."""

    KIND: ClassVar[str] = "criminal.jurisdiction_forward"
    SCHEMA_VERSION: ClassVar[int] = 1

    transfer_letter_no: Text
    competent_agency_id: AgencyId
    competent_agency_name: Text
    reason: Text
    forwarded_at: UtcDatetime
    notice_no: Text | None = None


class FilingOutcome(AvroEnum):
    """立案 or 不予立案."""

    FILED = "FILED"
    NOT_FILED = "NOT_FILED"


class ReturnedMaterial(AvroModel):
    """A material the police return with a refusal to file."""

    title: Text
    quantity: Quantity
    note: Text | None = None


class CriminalFilingDecision(PayloadModel):
    """``criminal.filing_decision``: filed or not; a refusal gives reasons, returns materials."""

    KIND: ClassVar[str] = "criminal.filing_decision"
    SCHEMA_VERSION: ClassVar[int] = 1

    transfer_letter_no: Text
    decision: FilingOutcome
    decision_no: Text
    decided_at: UtcDatetime
    criminal_case_no: Identifier | None = None
    reasons: list[Text] = Field(default_factory=list)
    returned_materials: list[ReturnedMaterial] = Field(default_factory=list)

    @model_validator(mode="after")
    def _refusal_has_reasons(self) -> CriminalFilingDecision:
        require_reasons(
            self.decision, self.reasons, when=FilingOutcome.NOT_FILED, what="a refusal to file"
        )
        return self


class CriminalReconsiderationRequest(PayloadModel):
    """``criminal.reconsideration_request``: the sender asks the police to reconsider (复议)."""

    KIND: ClassVar[str] = "criminal.reconsideration_request"
    SCHEMA_VERSION: ClassVar[int] = 1

    transfer_letter_no: Text
    request_no: Text
    refusal_decision_no: Text
    grounds: Text
    requested_at: UtcDatetime


class ReconsiderationOutcome(AvroEnum):
    """Keep the refusal, or reverse it and file."""

    MAINTAIN_REFUSAL = "MAINTAIN_REFUSAL"
    FILE_CASE = "FILE_CASE"


class CriminalReconsiderationDecision(PayloadModel):
    """``criminal.reconsideration_decision``: the police answer a reconsideration request."""

    KIND: ClassVar[str] = "criminal.reconsideration_decision"
    SCHEMA_VERSION: ClassVar[int] = 1

    transfer_letter_no: Text
    request_no: Text
    decision: ReconsiderationOutcome
    decision_no: Text
    decided_at: UtcDatetime
    reasons: list[Text] = Field(default_factory=list)
    criminal_case_no: Identifier | None = None

    @model_validator(mode="after")
    def _kept_refusal_has_reasons(self) -> CriminalReconsiderationDecision:
        require_reasons(
            self.decision,
            self.reasons,
            when=ReconsiderationOutcome.MAINTAIN_REFUSAL,
            what="keeping a refusal",
        )
        return self


class EvidenceItemType(AvroEnum):
    """What kind of thing is handed over."""

    SEIZED_ITEM = "SEIZED_ITEM"  # 涉案物品
    DOCUMENT = "DOCUMENT"  # 书证材料
    ELECTRONIC_DATA = "ELECTRONIC_DATA"  # 电子数据
    SAMPLE = "SAMPLE"  # 样品
    OTHER = "OTHER"


class EvidenceItem(AvroModel):
    """One item or material handed over; an attachment reference is all or nothing."""

    item_type: EvidenceItemType
    description: Text
    quantity: Quantity
    unit: Text | None = None
    attachment_name: Text | None = None
    attachment_sha256: Sha256Hex | None = None

    @model_validator(mode="after")
    def _attachment_ref_complete(self) -> EvidenceItem:
        if (self.attachment_name is None) != (self.attachment_sha256 is None):
            missing = "attachment_name" if self.attachment_name is None else "attachment_sha256"
            raise rule_error(
                "attachment_ref_incomplete",
                "attachment_name and attachment_sha256 go together",
                field=missing,
            )
        return self


class CriminalEvidenceHandover(PayloadModel):
    """``criminal.evidence_handover``: seized items and materials handed over after filing."""

    KIND: ClassVar[str] = "criminal.evidence_handover"
    SCHEMA_VERSION: ClassVar[int] = 1

    transfer_letter_no: Text
    criminal_case_no: Identifier | None = None
    items: Annotated[list[EvidenceItem], Field(min_length=1)]
    handed_over_at: UtcDatetime
    handed_over_by: Text
    received_by: Text


class CriminalCaseStatus(AvroEnum):
    """Where a transferred criminal case stands."""

    INVESTIGATING = "INVESTIGATING"  # 侦查中
    CASE_WITHDRAWN = "CASE_WITHDRAWN"  # 撤销案件
    RETURNED_FOR_ADMINISTRATIVE_PENALTY = "RETURNED_FOR_ADMINISTRATIVE_PENALTY"  # 移交行政处罚
    TRANSFERRED_FOR_PROSECUTION = "TRANSFERRED_FOR_PROSECUTION"  # 移送审查起诉
    PROSECUTED = "PROSECUTED"  # 提起公诉
    NOT_PROSECUTED = "NOT_PROSECUTED"  # 不起诉
    JUDGMENT_RENDERED = "JUDGMENT_RENDERED"  # 已判决
    CLOSED = "CLOSED"  # 结案
    OTHER = "OTHER"


class CriminalCaseUpdate(PayloadModel):
    """``criminal.case_update``: progress of a transferred case."""

    KIND: ClassVar[str] = "criminal.case_update"
    SCHEMA_VERSION: ClassVar[int] = 1

    transfer_letter_no: Text
    criminal_case_no: Identifier | None = None
    status: CriminalCaseStatus
    updated_at: UtcDatetime
    note: Text | None = None


class SupervisionRequest(PayloadModel):
    """``supervision.request``: enforcement asks the procuratorate for 立案监督 (supervision)."""

    KIND: ClassVar[str] = "supervision.request"
    SCHEMA_VERSION: ClassVar[int] = 1

    request_no: Text
    transfer_letter_no: Text
    refused_decision_no: Text
    refused_decision_message_id: UUID | None = None
    police_agency_id: AgencyId
    reason: Text
    requested_at: UtcDatetime


class SupervisionNoticeType(AvroEnum):
    """What the procuratorate asks of the police (Criminal Procedure Law art. 113)."""

    EXPLAIN_REFUSAL = "EXPLAIN_REFUSAL"  # 要求说明不立案理由
    FILE_CASE = "FILE_CASE"  # 通知立案


class SupervisionNotice(PayloadModel):
    """``supervision.notice``: the procuratorate asks the police to explain a refusal or to file."""

    KIND: ClassVar[str] = "supervision.notice"
    SCHEMA_VERSION: ClassVar[int] = 1

    notice_no: Text
    notice_type: SupervisionNoticeType
    transfer_letter_no: Text
    police_agency_id: AgencyId
    content: Text
    issued_at: UtcDatetime
    due_at: UtcDatetime


class ObstructionType(AvroEnum):
    """How a transfer was obstructed."""

    REFUSED_TO_ACCEPT = "REFUSED_TO_ACCEPT"  # 拒不接受移送
    NO_RECEIPT = "NO_RECEIPT"  # 不出具回执
    NO_DECISION_IN_TIME = "NO_DECISION_IN_TIME"  # 逾期不作立案决定
    MATERIALS_NOT_RETURNED = "MATERIALS_NOT_RETURNED"  # 不退回案卷材料
    INTERFERENCE = "INTERFERENCE"  # 干预移送
    OTHER = "OTHER"


class ObstructionReport(PayloadModel):
    """``obstruction.report``: enforcement tells the procuratorate a transfer is obstructed."""

    KIND: ClassVar[str] = "obstruction.report"
    SCHEMA_VERSION: ClassVar[int] = 1

    report_no: Text
    transfer_letter_no: Text | None = None
    obstruction_type: ObstructionType
    obstructing_agency_id: AgencyId | None = None
    description: Text
    occurred_at: UtcDatetime
    reported_at: UtcDatetime
    evidence: list[AttachmentRef] = Field(default_factory=list)
