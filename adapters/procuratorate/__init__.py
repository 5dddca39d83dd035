"""The procuratorate adapter (人民检察院): supervision of the criminal-transfer chain.

Receives a copy of every step of the chain, ``supervision.request``, ``obstruction.report``, the
bus's tree heads and the chain's SLA events, and keeps them per case; sends ``supervision.notice``
to the police. Serves the case timeline with evidence bundles, the 以罚代刑 screening, statistics
and the audit proofs; every query is itself audited.
"""

from __future__ import annotations

from typing import Final

from adapters._framework.spec import AdapterSpec
from adapters.procuratorate.audit import install_query_audit
from adapters.procuratorate.mapping import RECEIVES, SENDS, VOCABULARY
from adapters.procuratorate.routes import install_views
from adapters.procuratorate.store import store_reader

__all__ = ["RECEIVES", "SENDS", "SPEC", "VOCABULARY", "build_service", "create_app"]

SPEC: Final = AdapterSpec(
    kind="procuratorate",
    agency_kind="procuratorate",
    summary="Supervision of the criminal-transfer chain: case timelines, screening, audit proofs.",
    vocabulary=VOCABULARY,
    sends=SENDS,
    receives=RECEIVES,
    # The audit of queries wraps every route, the common audit trail's included.
    routes=(install_views, install_query_audit),
    readers=(store_reader,),
)
"""The procuratorate adapter: the common parts, the case store and its supervision views."""

build_service, create_app = SPEC.build_service, SPEC.create_app
