"""The procuratorate's vocabulary (检察机关两法衔接监督系统) ↔ ours.

The procuratorate receives a copy of every step of the criminal-transfer chain, the requests for
filing supervision and the reports of obstructed transfers; it sends ``supervision.notice``.
"""

from __future__ import annotations

from typing import Final

from adapters._framework.chain import CHAIN_KINDS
from adapters._framework.vocabulary import BUS_KINDS, Vocabulary

__all__ = ["RECEIVES", "SENDS", "VOCABULARY"]

SENDS: Final = ["supervision.notice"]
"""What the department submits."""
RECEIVES: Final = [
    "criminal.transfer",
    "criminal.receipt",
    "criminal.jurisdiction_forward",
    "criminal.filing_decision",
    "criminal.reconsideration_request",
    "criminal.reconsideration_decision",
    "criminal.evidence_handover",
    "criminal.case_update",
    "supervision.request",
    "obstruction.report",
    "penalty.feedback",
]
"""What the department is sent (besides the bus's own receipts and SLA events)."""

VOCABULARY: Final = Vocabulary(
    [
        # penalty.feedback is not a chain kind: the procuratorate has no terms for it and gets it
        # in our names.
        *(CHAIN_KINDS[k] for k in (*SENDS, *RECEIVES) if k != "penalty.feedback"),
        *BUS_KINDS,
    ]
)
"""Every kind the department sends or receives, in its terms."""
