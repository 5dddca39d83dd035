"""Payloads between regulators and enforcement: ``clue.*``, ``opinion.*``, ``penalty.feedback``."""

from __future__ import annotations

from datetime import date
from typing import Annotated, ClassVar

from pydantic import Field, model_validator

from bus.models._common import (
    AttachmentRef,
    AvroEnum,
    AvroModel,
    CreditCode,
    Fen,
    PayloadModel,
    Subject,
    Text,
    UtcDatetime,
    require_reasons,
    rule_error,
)
from bus.models._identifier import Identifier

__all__ = [
    "ClueDecision",
    "ClueHandover",
    "ClueReceipt",
    "CompulsoryMeasure",
    "ExecutionStatus",
    "OpinionDelegated",
    "OpinionRequest",
    "OpinionResponse",
    "OpinionType",
    "PenaltyDecision",
    "PenaltyFeedback",
    "PenaltyType",
]


class ClueHandover(PayloadModel):
    """``clue.handover``: a regulator hands a violation clue and its records to enforcement."""

    KIND: ClassVar[str] = "clue.handover"
    SCHEMA_VERSION: ClassVar[int] = 1

    clue_no: Text
    violation_type: Text
    description: Text
    location: Text
    discovered_at: UtcDatetime
    legal_basis: list[Text] = Field(default_factory=list)
    parties: list[Subject] = Field(default_factory=list)
    supervision_records: list[AttachmentRef] = Field(default_factory=list)


class ClueDecision(AvroEnum):
    """Enforcement takes the clue, or sends it back."""

    ACCEPTED = "ACCEPTED"
    REJECTED = "REJECTED"


class ClueReceipt(PayloadModel):
    """``clue.receipt``: enforcement accepts a clue, or rejects it with a reason."""

    KIND: ClassVar[str] = "clue.receipt"
    SCHEMA_VERSION: ClassVar[int] = 1

    clue_no: Text
    decision: ClueDecision
    decided_at: UtcDatetime
    reason: Text | None = None
    enforcement_case_id: Identifier | None = None

    @model_validator(mode="after")
    def _rejection_has_reason(self) -> ClueReceipt:
        require_reasons(
            self.decision,
            self.reason,
            when=ClueDecision.REJECTED,
            what="a rejection",
            field="reason",
        )
        return self


class OpinionType(AvroEnum):
    """What enforcement asks a regulator for (出具专业意见、提供资料、检测、鉴定、认定)."""

    PROFESSIONAL_OPINION = "PROFESSIONAL_OPINION"
    MATERIALS = "MATERIALS"
    INSPECTION_TESTING = "INSPECTION_TESTING"
    APPRAISAL = "APPRAISAL"
    CERTIFICATION = "CERTIFICATION"


class OpinionRequest(PayloadModel):
    """``opinion.request``: enforcement asks a regulator for an opinion, due by a set time.

    v2 added ``reference_standards``; a v1 payload reads with it empty.
    """

    KIND: ClassVar[str] = "opinion.request"
    SCHEMA_VERSION: ClassVar[int] = 2

    request_no: Text
    opinion_type: OpinionType
    subject: Text
    background: Text | None = None
    questions: Annotated[list[Text], Field(min_length=1)]
    materials: list[AttachmentRef] = Field(default_factory=list)
    reference_standards: list[Text] = Field(default_factory=list)
    due_at: UtcDatetime | None = None
    contact_name: Text | None = None
    contact_phone: Text | None = None


class OpinionResponse(PayloadModel):
    """``opinion.response``: the regulator's written answer."""

    KIND: ClassVar[str] = "opinion.response"
    SCHEMA_VERSION: ClassVar[int] = 1

    request_no: Text
    response_no: Text
    answer: Text
    conclusions: list[Text] = Field(default_factory=list)
    documents: list[AttachmentRef] = Field(default_factory=list)
    answered_at: UtcDatetime
    signed_by: Text


class OpinionDelegated(PayloadModel):
    """``opinion.delegated``: the regulator commissioned a qualified institution; expect it then."""

    KIND: ClassVar[str] = "opinion.delegated"
    SCHEMA_VERSION: ClassVar[int] = 1

    request_no: Text
    institution_name: Text
    institution_credit_code: CreditCode | None = None
    qualification_certificate_no: Text
    scope: Text | None = None
    delegated_at: UtcDatetime
    expected_at: UtcDatetime


class PenaltyType(AvroEnum):
    """Kinds of administrative penalty (行政处罚法 art. 9), plus 城管's demolition orders."""

    WARNING = "WARNING"  # 警告
    FINE = "FINE"  # 罚款
    CONFISCATION_OF_ILLEGAL_GAINS = "CONFISCATION_OF_ILLEGAL_GAINS"  # 没收违法所得
    CONFISCATION_OF_ILLEGAL_PROPERTY = "CONFISCATION_OF_ILLEGAL_PROPERTY"  # 没收非法财物
    SUSPENSION_OF_BUSINESS = "SUSPENSION_OF_BUSINESS"  # 责令停产停业
    PERMIT_SUSPENSION_OR_REVOCATION = "PERMIT_SUSPENSION_OR_REVOCATION"  # 暂扣或吊销许可证照
    DETENTION = "DETENTION"  # 行政拘留
    ORDER_TO_DEMOLISH = "ORDER_TO_DEMOLISH"  # 限期拆除
    OTHER = "OTHER"


class CompulsoryMeasure(AvroEnum):
    """Administrative compulsory measures (行政强制法 art. 9)."""

    SEAL_UP = "SEAL_UP"  # 查封场所、设施或者财物
    SEIZE = "SEIZE"  # 扣押财物
    FREEZE_DEPOSITS = "FREEZE_DEPOSITS"  # 冻结存款、汇款
    RESTRICT_PERSONAL_FREEDOM = "RESTRICT_PERSONAL_FREEDOM"  # 限制公民人身自由
    OTHER = "OTHER"


class ExecutionStatus(AvroEnum):
    """How far a penalty decision has been executed."""

    NOT_EXECUTED = "NOT_EXECUTED"  # 未执行
    EXECUTING = "EXECUTING"  # 执行中
    EXECUTED = "EXECUTED"  # 执行完毕
    COURT_ENFORCEMENT_APPLIED = "COURT_ENFORCEMENT_APPLIED"  # 已申请法院强制执行
    SUSPENDED = "SUSPENDED"  # 中止执行
    TERMINATED = "TERMINATED"  # 终结执行


class PenaltyDecision(AvroModel):
    """One penalty decision in a feedback report; ``suspected_crime`` feeds 以罚代刑 screening."""

    case_id: Identifier
    decision_no: Text
    decided_on: date
    party: Subject
    violation: Text
    legal_basis: Text
    penalty_type: PenaltyType
    amount_fen: Fen
    compulsory_measures: list[CompulsoryMeasure] = Field(default_factory=list)
    execution_status: ExecutionStatus
    suspected_crime: bool = False


class PenaltyFeedback(PayloadModel):
    """``penalty.feedback``: enforcement's periodic report of penalties to a regulator."""

    KIND: ClassVar[str] = "penalty.feedback"
    SCHEMA_VERSION: ClassVar[int] = 1

    report_no: Text
    period_start: date
    period_end: date
    decisions: list[PenaltyDecision]

    @model_validator(mode="after")
    def _period_in_order(self) -> PenaltyFeedback:
        if self.period_end < self.period_start:
            raise rule_error(
                "period_reversed",
                "period_end may not be before period_start",
                field="period_end",
            )
        return self

    def suspected_crimes(self) -> list[PenaltyDecision]:
        """Decisions flagged as suspected crimes: the procuratorate checks each has a transfer."""
        return [d for d in self.decisions if d.suspected_crime]
