"""The regulators' vocabulary (行政管理部门业务系统) ↔ ours.

Field names are pinyin initials of the Chinese terms; enum values are the Chinese words the
departments' systems use. ``ywlx`` (业务类型) names the kind. Every kind is shared with the
enforcement bureau (:mod:`adapters._framework.regulatory`); only two of ``clue.receipt``'s field
names are the regulators' own.
"""

from __future__ import annotations

from typing import Final

from adapters._framework.regulatory import OPINION_TYPES, REGULATORY_KINDS, clue_receipt
from adapters._framework.vocabulary import BUS_KINDS, Vocabulary

__all__ = ["OPINION_TYPES", "RECEIVES", "SENDS", "VOCABULARY"]

SENDS: Final = ["clue.handover", "opinion.response", "opinion.delegated"]
"""What a regulator submits."""
RECEIVES: Final = ["opinion.request", "penalty.feedback", "clue.receipt"]
"""What a regulator is sent (besides the bus's own receipts and SLA events)."""

_CLUE_RECEIPT: Final = clue_receipt(
    decision="qsjg",  # 签收结果
    case_id="zfajbh",  # 执法案件编号
)

VOCABULARY: Final = Vocabulary([*REGULATORY_KINDS.values(), _CLUE_RECEIPT, *BUS_KINDS])
"""Every kind a regulator sends or receives, in its terms."""
