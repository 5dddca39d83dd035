"""The enforcement adapter: the bureau and its squadrons (城乡管理综合执法).

Sends ``opinion.request``, ``penalty.feedback`` and ``clue.receipt``; receives clues, opinions,
receipts and SLA events.
"""

from __future__ import annotations

from adapters.enforcement.app import ADAPTER_KIND, build_service, create_app
from adapters.enforcement.mapping import RECEIVES, SENDS, VOCABULARY

__all__ = ["ADAPTER_KIND", "RECEIVES", "SENDS", "VOCABULARY", "build_service", "create_app"]
