"""The police adapter (公安机关): the receiving end of criminal-case transfers.

Receives ``criminal.transfer`` (with its document manifest), ``criminal.reconsideration_request``,
``criminal.evidence_handover``, ``supervision.notice`` and another police agency's
``criminal.jurisdiction_forward``; sends ``criminal.receipt``,
``criminal.jurisdiction_forward``, ``criminal.filing_decision``,
``criminal.reconsideration_decision`` and ``criminal.case_update``.
"""

from __future__ import annotations

from typing import Final

from adapters._framework.spec import AdapterSpec
from adapters.police.mapping import RECEIVES, SENDS, VOCABULARY

__all__ = ["RECEIVES", "SENDS", "SPEC", "VOCABULARY", "build_service", "create_app"]

SPEC: Final = AdapterSpec(
    kind="police",
    agency_kind="police",
    summary="The receiving end of criminal-case transfers.",
    vocabulary=VOCABULARY,
    sends=SENDS,
    receives=RECEIVES,
)
"""The police adapter, as the framework and ``casebus adapter police`` build it."""

build_service, create_app = SPEC.build_service, SPEC.create_app
