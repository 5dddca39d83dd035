"""The court's vocabulary (人民法院非诉执行审查系统) ↔ ours.

Field names are pinyin initials of the Chinese terms; enum values are the Chinese words the court
uses. ``ywlx`` (业务类型) names the kind.
"""

from __future__ import annotations

from typing import Final

from adapters._framework.vocabulary import (
    BUS_KINDS,
    DOCUMENT_REF_FIELDS,
    ID_TYPES,
    SUBJECT_FIELDS,
    KindVocabulary,
    Nested,
    Vocabulary,
)

__all__ = ["RECEIVES", "SENDS", "VOCABULARY"]

SENDS: Final = ["court.acceptance", "court.ruling"]
"""What the department submits."""
RECEIVES: Final = ["court.execution_application"]
"""What the department is sent (besides the bus's own receipts and SLA events)."""

_ACCEPTANCE: Final = {"受理": "ACCEPTED", "不予受理": "NOT_ACCEPTED"}
_RULINGS: Final = {"准予执行": "EXECUTE", "不予执行": "NOT_EXECUTE"}


VOCABULARY: Final = Vocabulary(
    [
        KindVocabulary(
            "court.acceptance",
            "受理决定",
            {
                "sqh": "application_no",
                "jd": "decision",
                "jdsj": "decided_at",
                "fyah": "court_case_no",  # 法院案号
                "ly": "reasons",
                "xtz": "hearing_required",  # 需听证（听取被执行人意见）
            },
            {"decision": _ACCEPTANCE},
        ),
        KindVocabulary(
            "court.ruling",
            "执行裁定",
            {
                "sqh": "application_no",
                "fyah": "court_case_no",
                "cdsh": "ruling_no",  # 裁定书号
                "cd": "ruling",  # 裁定
                "cdsj": "ruled_at",  # 裁定时间
                "ly": "reasons",
            },
            {"ruling": _RULINGS},
        ),
        KindVocabulary(
            "court.execution_application",
            "强制执行申请",
            {
                "sqh": "application_no",  # 申请号
                "jdsh": "decision_no",  # 行政决定书号
                "jdrq": "decided_on",  # 决定日期
                "bzxr": Nested("party", SUBJECT_FIELDS),  # 被执行人
                "yw": "obligation",  # 应履行的义务
                "lxqx": "compliance_deadline",  # 履行期限
                "cgsdrq": "reminder_served_on",  # 催告书送达日期
                "je": "amount_fen",  # 金额（分）
                "cl": Nested("documents", DOCUMENT_REF_FIELDS),  # 材料
                "sqsj": "applied_at",  # 申请时间
            },
            {"id_type": ID_TYPES},
        ),
        *BUS_KINDS,
    ]
)
"""Every kind the department sends or receives, in its terms."""
