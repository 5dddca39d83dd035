"""The procuratorate adapter (人民检察院): supervision of the criminal-transfer chain.

Receives a copy of every step of the chain, ``supervision.request``, ``obstruction.report``, the
bus's tree heads and the chain's SLA events, and keeps them per case; sends ``supervision.notice``
to the police. Serves the case timeline with evidence bundles, the 以罚代刑 screening, statistics
and the audit proofs; every query is itself audited.
"""

from __future__ import annotations

from adapters.procuratorate.app import ADAPTER_KIND, build_service, create_app
from adapters.procuratorate.mapping import RECEIVES, SENDS, VOCABULARY

__all__ = ["ADAPTER_KIND", "RECEIVES", "SENDS", "VOCABULARY", "build_service", "create_app"]
