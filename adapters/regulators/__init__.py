"""The regulators adapter: one service for any number of regulator agencies (行政管理部门).

Sends ``clue.handover`` (supervision records as attachments), ``opinion.response`` and
``opinion.delegated``; receives ``opinion.request``, ``penalty.feedback`` and ``clue.receipt``.
"""

from __future__ import annotations

from typing import Final

from adapters._framework.spec import AdapterSpec
from adapters.regulators.mapping import RECEIVES, SENDS, VOCABULARY

__all__ = ["RECEIVES", "SENDS", "SPEC", "VOCABULARY", "build_service", "create_app"]

SPEC: Final = AdapterSpec(
    kind="regulators",
    agency_kind="regulator",
    summary="The regulators' clue handovers and opinions.",
    vocabulary=VOCABULARY,
    sends=SENDS,
    receives=RECEIVES,
)
"""The regulators adapter, as the framework and ``casebus adapter regulators`` build it."""

build_service, create_app = SPEC.build_service, SPEC.create_app
