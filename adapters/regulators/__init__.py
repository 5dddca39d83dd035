"""The regulators adapter: one service for any number of regulator agencies (行政管理部门).

Sends ``clue.handover`` (supervision records as attachments), ``opinion.response`` and
``opinion.delegated``; receives ``opinion.request``, ``penalty.feedback`` and ``clue.receipt``.
"""

from __future__ import annotations

from adapters.regulators.app import ADAPTER_KIND, build_service, create_app
from adapters.regulators.mapping import RECEIVES, SENDS, VOCABULARY

__all__ = ["ADAPTER_KIND", "RECEIVES", "SENDS", "VOCABULARY", "build_service", "create_app"]
