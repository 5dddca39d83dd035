"""The ops console as a FastAPI app: ``/`` (filters ``agency``, ``flow``, ``status``),
``/cases/{case_id}`` and ``/healthz``."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from typing import Annotated

import asyncpg
from fastapi import FastAPI, Query
from fastapi.responses import HTMLResponse, PlainTextResponse

from bus.console import queries
from bus.console.views import case_page, overview_page
from bus.db import create_pool
from bus.settings import Settings
from bus.sla.clock import Clock, RealClock
from bus.trace import case_trace

__all__ = ["create_app"]


def create_app(
    settings: Settings,
    *,
    pool: asyncpg.Pool | None = None,
    clock: Clock | None = None,
    refresh_s: int = 5,
    dead_letter_cache_s: float = 5.0,
) -> FastAPI:
    """The console over ``settings``' database and broker; ``pool`` is borrowed if given
    (else one is opened for the app's lifetime). ``clock`` says what "now" is (the demo's)."""
    clock = clock or RealClock()
    state: dict[str, asyncpg.Pool] = {}
    cache: dict[str, tuple[float, list[queries.DeadLetter] | None]] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if pool is not None:
            state["pool"] = pool
            yield
            return
        own = await create_pool(settings.database_url, max_size=4)
        state["pool"] = own
        try:
            yield
        finally:
            await own.close()

    app = FastAPI(title="casebus ops console", lifespan=lifespan, docs_url=None, redoc_url=None)

    def the_pool() -> asyncpg.Pool:
        return state.get("pool") or pool  # type: ignore[return-value]

    async def dead() -> list[queries.DeadLetter] | None:
        hit = cache.get("dead")
        if hit is not None and time.monotonic() - hit[0] < dead_letter_cache_s:
            return hit[1]
        found = await queries.dead_letters(settings)
        cache["dead"] = (time.monotonic(), found)
        return found

    @app.get("/", response_class=HTMLResponse)
    async def overview(
        agency: Annotated[str, Query(max_length=200)] = "",
        flow: Annotated[str, Query(max_length=200)] = "",
        status: Annotated[str, Query(max_length=20)] = "",
    ) -> str:
        p = the_pool()
        now = clock.now()
        f = queries.DeadlineFilter(agency=agency, flow=flow, status=status)
        agencies, flows = await queries.filter_choices(p)
        return overview_page(
            f=f,
            now=now,
            agencies=agencies,
            flows=flows,
            deadlines=await queries.deadlines(p, f, now=now),
            totals=await queries.sla_totals(p, f),
            health=await queries.delivery_health(p, now=now),
            dead=await dead(),
            times=await queries.response_times(p),
            refresh_s=refresh_s,
        )

    @app.get("/cases/{case_id}", response_class=HTMLResponse)
    async def case(case_id: str) -> HTMLResponse:
        trace = await case_trace(the_pool(), case_id)
        status = 200 if trace.messages or trace.deadlines else 404
        return HTMLResponse(case_page(trace, refresh_s=refresh_s), status_code=status)

    @app.get("/healthz", response_class=PlainTextResponse)
    async def healthz() -> str:
        await the_pool().fetchval("SELECT 1")
        return "ok"

    return app
