"""The enforcement bureau's vocabulary (城管执法办案系统) ↔ ours.

Field names are pinyin initials of the Chinese terms; enum values are the Chinese words the
departments' systems use. ``ywlx`` (业务类型) names the kind. The kinds exchanged with the
regulators come from :mod:`adapters._framework.regulatory` (only two of ``clue.receipt``'s field
names are the bureau's own), those of the criminal-transfer chain from
:mod:`adapters.enforcement.criminal`.
"""

from __future__ import annotations

from typing import Final

from adapters._framework.regulatory import OPINION_TYPES, REGULATORY_KINDS, clue_receipt
from adapters._framework.vocabulary import BUS_KINDS, Vocabulary
from adapters.enforcement.criminal import CRIMINAL_KINDS, CRIMINAL_RECEIVES, CRIMINAL_SENDS

__all__ = ["OPINION_TYPES", "RECEIVES", "SENDS", "VOCABULARY"]

SENDS: Final = ["opinion.request", "penalty.feedback", "clue.receipt", *CRIMINAL_SENDS]
"""What the bureau submits (the criminal-transfer chain: :mod:`adapters.enforcement.criminal`)."""
RECEIVES: Final = ["clue.handover", "opinion.response", "opinion.delegated", *CRIMINAL_RECEIVES]
"""What the bureau is sent (besides the bus's own receipts and SLA events)."""

_CLUE_RECEIPT: Final = clue_receipt(
    decision="clyj",  # 处理意见
    case_id="lajbh",  # 立案案件编号
)

VOCABULARY: Final = Vocabulary(
    [*REGULATORY_KINDS.values(), _CLUE_RECEIPT, *CRIMINAL_KINDS, *BUS_KINDS]
)
"""Every kind the bureau sends or receives, in its terms."""
