"""The police's vocabulary (公安机关执法办案系统) ↔ ours.

Field names are pinyin initials of the Chinese terms, as in the other departments' systems; enum
values are the Chinese words the police use. ``ywlx`` (业务类型) names the kind.
"""

from __future__ import annotations

from typing import Final

from adapters._framework.chain import CHAIN_KINDS
from adapters._framework.vocabulary import BUS_KINDS, Vocabulary

__all__ = ["RECEIVES", "SENDS", "VOCABULARY"]

SENDS: Final = [
    "criminal.receipt",
    "criminal.jurisdiction_forward",
    "criminal.filing_decision",
    "criminal.reconsideration_decision",
    "criminal.case_update",
]
"""What the department submits."""
RECEIVES: Final = [
    "criminal.transfer",
    # From another police agency: a case outside its jurisdiction, forwarded to this one.
    "criminal.jurisdiction_forward",
    "criminal.reconsideration_request",
    "criminal.evidence_handover",
    "supervision.notice",
]
"""What the department is sent (besides the bus's own receipts and SLA events)."""

VOCABULARY: Final = Vocabulary(
    [*(CHAIN_KINDS[k] for k in dict.fromkeys((*SENDS, *RECEIVES))), *BUS_KINDS]
)
"""Every kind the department sends or receives, in its terms."""
