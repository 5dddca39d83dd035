"""The enforcement adapter: the bureau and its squadrons (城乡管理综合执法).

Sends ``opinion.request``, ``penalty.feedback`` and ``clue.receipt``; receives clues, opinions,
receipts and SLA events.
"""

from __future__ import annotations

from typing import Final

from adapters._framework.spec import AdapterSpec
from adapters.enforcement.criminal import CRIMINAL_CHECKS
from adapters.enforcement.mapping import RECEIVES, SENDS, VOCABULARY

__all__ = ["RECEIVES", "SENDS", "SPEC", "VOCABULARY", "build_service", "create_app"]

SPEC: Final = AdapterSpec(
    kind="enforcement",
    agency_kind="enforcement",
    summary="The enforcement bureau: opinions, penalties, criminal transfers, court applications.",
    vocabulary=VOCABULARY,
    sends=SENDS,
    receives=RECEIVES,
    checks=CRIMINAL_CHECKS,
)
"""The enforcement adapter, as the framework and ``casebus adapter enforcement`` build it."""

build_service, create_app = SPEC.build_service, SPEC.create_app
