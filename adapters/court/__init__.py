"""The court adapter (人民法院): applications for compulsory execution (行政强制法).

Receives ``court.execution_application``; sends ``court.acceptance`` (accepted or not, with
reasons; whether a hearing is needed) and ``court.ruling``.
"""

from __future__ import annotations

from adapters.court.app import ADAPTER_KIND, build_service, create_app
from adapters.court.mapping import RECEIVES, SENDS, VOCABULARY

__all__ = ["ADAPTER_KIND", "RECEIVES", "SENDS", "VOCABULARY", "build_service", "create_app"]
