"""Payloads of applications to the court for compulsory execution (行政强制法): ``court.*``."""

from __future__ import annotations

from datetime import date
from typing import ClassVar

from pydantic import Field, model_validator

from bus.models._common import (
    AttachmentRef,
    AvroEnum,
    Fen,
    PayloadModel,
    Subject,
    Text,
    UtcDatetime,
    require_reasons,
)

__all__ = [
    "CourtAcceptance",
    "CourtAcceptanceDecision",
    "CourtExecutionApplication",
    "CourtRuling",
    "CourtRulingDecision",
]


class CourtExecutionApplication(PayloadModel):
    """``court.execution_application``: the agency asks the court to execute its decision.

    The law's timing rules (apply within 3 months of ``compliance_deadline``, reminder served at
    least 10 days before) are deadline policies, not model rules.
    """

    KIND: ClassVar[str] = "court.execution_application"
    SCHEMA_VERSION: ClassVar[int] = 1

    application_no: Text
    decision_no: Text
    decided_on: date
    party: Subject
    obligation: Text
    compliance_deadline: date
    reminder_served_on: date
    amount_fen: Fen | None = None
    documents: list[AttachmentRef] = Field(default_factory=list)
    applied_at: UtcDatetime


class CourtAcceptanceDecision(AvroEnum):
    """受理 or 不予受理."""

    ACCEPTED = "ACCEPTED"
    NOT_ACCEPTED = "NOT_ACCEPTED"


class CourtAcceptance(PayloadModel):
    """``court.acceptance``: whether the court accepts the application; a refusal gives reasons."""

    KIND: ClassVar[str] = "court.acceptance"
    SCHEMA_VERSION: ClassVar[int] = 1

    application_no: Text
    decision: CourtAcceptanceDecision
    decided_at: UtcDatetime
    court_case_no: Text | None = None
    reasons: list[Text] = Field(default_factory=list)
    hearing_required: bool = False

    @model_validator(mode="after")
    def _refusal_has_reasons(self) -> CourtAcceptance:
        require_reasons(
            self.decision,
            self.reasons,
            when=CourtAcceptanceDecision.NOT_ACCEPTED,
            what="a refusal to accept",
        )
        return self


class CourtRulingDecision(AvroEnum):
    """准予执行 or 不予执行."""

    EXECUTE = "EXECUTE"
    NOT_EXECUTE = "NOT_EXECUTE"


class CourtRuling(PayloadModel):
    """``court.ruling``: the court rules whether to execute; a refusal gives reasons."""

    KIND: ClassVar[str] = "court.ruling"
    SCHEMA_VERSION: ClassVar[int] = 1

    application_no: Text
    court_case_no: Text
    ruling_no: Text
    ruling: CourtRulingDecision
    ruled_at: UtcDatetime
    reasons: list[Text] = Field(default_factory=list)

    @model_validator(mode="after")
    def _refusal_has_reasons(self) -> CourtRuling:
        require_reasons(
            self.ruling,
            self.reasons,
            when=CourtRulingDecision.NOT_EXECUTE,
            what="a ruling not to execute",
        )
        return self
