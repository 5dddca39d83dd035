"""The procuratorate's own routes, beside the common adapter API.

No ``from __future__ import annotations`` here: FastAPI reads the route functions' annotations.

For the procuratorate's own token only: ``GET /v1/cases/{case_id}/timeline`` (every step of a
case with its deadlines and the evidence bundle proving it), ``GET
/v1/screening/penalty-instead-of-transfer`` (以罚代刑 and the other signals of domain.md),
``GET /v1/statistics?from=&to=`` (:mod:`adapters.procuratorate.views`). The audit proofs of
:func:`bus.audit.http.audit_router` are under ``/v1/audit``: a message's evidence bundle for the
procuratorate and the message's sender and recipients (any agency's token), checkpoints and
consistency proofs for anyone. The log is also served as C2SP tiles under ``/v1/tlog``
(:mod:`bus.audit.tiles_http`): hashes for anyone, entry bundles for the procuratorate only. Every
query is on the record (:mod:`adapters.procuratorate.audit`). Callers are refused as every
adapter refuses them (:mod:`adapters._framework.auth`).
"""

from datetime import date
from typing import Annotated, Any

import asyncpg
from fastapi import Depends, FastAPI, HTTPException, Query

from adapters._framework.auth import message_reader, served_reader
from adapters._framework.inbound import department_problem
from adapters._framework.service import AdapterService
from adapters.procuratorate.views import screening, statistics, timeline
from bus.audit.http import audit_router
from bus.audit.tiles_http import tiles_router
from bus.audit.witnessing import WitnessPolicy

__all__ = ["install_views"]


def install_views(app: FastAPI, service: AdapterService) -> None:
    """Add the procuratorate's views and audit proofs to ``app``, the common API of
    ``service``."""

    # Every agency this adapter serves is a procuratorate: it reads its own views and, as the
    # supervisor of every transfer, every message's proof; anyone else only their own proofs.
    def serves(agency: str) -> bool:
        return service.config.agency(agency) is not None

    def pool() -> asyncpg.Pool:
        return service.pool

    agency_of = served_reader(pool, serves)
    app.include_router(audit_router(pool, proof_reader=message_reader(pool, serves)))
    # The log as C2SP tiles: hashes for anyone, entry bundles (case content) for the
    # procuratorate alone. Outside /v1/audit/, so a mirror's fetches are not queries on record.
    witnessed = WitnessPolicy.parse(
        service.settings.audit_witnesses, service.settings.audit_witness_quorum
    )
    app.include_router(tiles_router(pool, entry_reader=agency_of, policy=witnessed))

    Agency = Annotated[str, Depends(agency_of)]

    @app.get(
        "/v1/cases/{case_id}/timeline",
        summary="案件全流程时间线 / every step of a case, with deadlines and proofs",
    )
    async def case_timeline(agency: Agency, case_id: str) -> dict[str, Any]:
        return await timeline(
            service.pool, agency, case_id, rules=service.rules, now=service.config.clock.now()
        )

    @app.get(
        "/v1/screening/penalty-instead-of-transfer",
        summary="以罚代刑筛查 / suspected crimes punished without a transfer, and other signals",
    )
    async def penalty_instead_of_transfer(agency: Agency) -> dict[str, Any]:
        return await screening(service.pool, agency)

    @app.get("/v1/statistics", summary="统计 / transfers, filings, refusals, breaches by month")
    async def stats(
        agency: Agency,
        start: Annotated[date, Query(alias="from")],
        end: Annotated[date, Query(alias="to")],
    ) -> dict[str, Any]:
        if end < start:
            raise HTTPException(
                422,
                [
                    department_problem(
                        "to", "range_reversed", "'to' is before 'from'", "截止早于起始"
                    )
                ],
            )
        return await statistics(service.pool, agency, start, end)
