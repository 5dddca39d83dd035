"""The court adapter (人民法院): applications for compulsory execution (行政强制法).

Receives ``court.execution_application``; sends ``court.acceptance`` (accepted or not, with
reasons; whether a hearing is needed) and ``court.ruling``.
"""

from __future__ import annotations

from typing import Final

from adapters._framework.spec import AdapterSpec
from adapters.court.mapping import RECEIVES, SENDS, VOCABULARY

__all__ = ["RECEIVES", "SENDS", "SPEC", "VOCABULARY", "build_service", "create_app"]

SPEC: Final = AdapterSpec(
    kind="court",
    agency_kind="court",
    summary="Court applications for compulsory execution: acceptances and rulings.",
    vocabulary=VOCABULARY,
    sends=SENDS,
    receives=RECEIVES,
)
"""The court adapter, as the framework and ``casebus adapter court`` build it."""

build_service, create_app = SPEC.build_service, SPEC.create_app
