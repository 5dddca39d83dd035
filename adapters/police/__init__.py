"""The police adapter (公安机关): the receiving end of criminal-case transfers.

Receives ``criminal.transfer`` (with its document manifest), ``criminal.reconsideration_request``,
``criminal.evidence_handover`` and ``supervision.notice``; sends ``criminal.receipt``,
``criminal.jurisdiction_forward``, ``criminal.filing_decision``,
``criminal.reconsideration_decision`` and ``criminal.case_update``.
"""

from __future__ import annotations

from adapters.police.app import ADAPTER_KIND, build_service, create_app
from adapters.police.mapping import RECEIVES, SENDS, VOCABULARY

__all__ = ["ADAPTER_KIND", "RECEIVES", "SENDS", "VOCABULARY", "build_service", "create_app"]
