"""The court's vocabulary (人民法院非诉执行审查系统) ↔ ours.

Field names are pinyin initials of the Chinese terms; enum values are the Chinese words the court
uses. ``ywlx`` (业务类型) names the kind.
"""

from __future__ import annotations

from typing import Final

from adapters._framework.chain import CHAIN_KINDS
from adapters._framework.vocabulary import BUS_KINDS, Vocabulary

__all__ = ["RECEIVES", "SENDS", "VOCABULARY"]

SENDS: Final = ["court.acceptance", "court.ruling"]
"""What the department submits."""
RECEIVES: Final = ["court.execution_application"]
"""What the department is sent (besides the bus's own receipts and SLA events)."""

VOCABULARY: Final = Vocabulary([*(CHAIN_KINDS[k] for k in (*SENDS, *RECEIVES)), *BUS_KINDS])
"""Every kind the department sends or receives, in its terms."""
