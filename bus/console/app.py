"""The ops console as a FastAPI app: ``/`` (filters ``agency``, ``flow``, ``status``),
``/cases/{case_id}`` and ``/healthz``.

The pages speak Chinese, their readers' language (ops staff, prosecutors); ``?lang=en``, or a
browser whose Accept-Language prefers English over Chinese, gets English
(:mod:`bus.console.i18n`).

Who may read what: the pages name cases, their parties, deadlines and rejection reasons, so
each needs an agency's API token (``casebus adapter token``), sent as a bearer token or, from a
browser, as the password of HTTP Basic. ``/`` spans every agency's cases: the procuratorate
only, which supervises every transfer. ``/cases/{case_id}``: the procuratorate and the case's
parties (sender or recipient of one of its audited messages); anyone else gets 403 whether or
not the case exists. ``/healthz`` is public. Refusals follow the adapters' one contract
(:mod:`adapters._framework.auth`).

No ``from __future__ import annotations`` here: FastAPI reads the route functions' annotations,
which name dependencies local to :func:`create_app`.
"""

import contextlib
import time
from collections.abc import AsyncIterator
from typing import Annotated

import asyncpg
from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import HTTPException
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse

from adapters._framework.auth import forbidden, token_reader
from bus.audit.access import case_parties
from bus.console import queries
from bus.console.i18n import Labels, choose_lang
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

    @app.exception_handler(HTTPException)
    async def refused(_: Request, exc: HTTPException) -> JSONResponse:
        # The access refusals carry the adapters' problem list; anything else keeps its text.
        body = {"problems": exc.detail} if isinstance(exc.detail, list) else {"detail": exc.detail}
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    reader = token_reader(the_pool, basic_realm="casebus console")

    async def labels(
        lang: Annotated[str | None, Query(max_length=10)] = None,
        accept_language: Annotated[str | None, Header(max_length=500)] = None,
    ) -> Labels:
        return Labels(choose_lang(lang, accept_language), await queries.agency_names(the_pool()))

    def html(page: str, labels: Labels, status_code: int = 200) -> HTMLResponse:
        return HTMLResponse(
            page,
            status_code=status_code,
            headers={"Content-Language": labels.lang, "Vary": "Accept-Language"},
        )

    async def supervises(agency: str) -> bool:
        kind = await the_pool().fetchval("SELECT kind FROM agencies WHERE agency_id = $1", agency)
        return bool(kind == "procuratorate")

    async def supervisor(agency: Annotated[str, Depends(reader)]) -> str:
        if not await supervises(agency):
            raise forbidden(
                "Authorization",
                "not_supervisor",
                "the overview spans every agency's cases: only the procuratorate may read it",
                "总览涉及所有单位的案件，仅检察机关可以查看",
                agency,
            )
        return agency

    async def case_reader(case_id: str, agency: Annotated[str, Depends(reader)]) -> str:
        if await supervises(agency) or agency in await case_parties(the_pool(), case_id):
            return agency
        raise forbidden(
            "case_id",
            "not_a_party",
            "only the case's parties and the procuratorate may read it",
            "仅该案件的当事单位和检察机关可以查看",
        )

    @app.get("/", response_class=HTMLResponse, dependencies=[Depends(supervisor)])
    async def overview(
        lb: Annotated[Labels, Depends(labels)],
        agency: Annotated[str, Query(max_length=200)] = "",
        flow: Annotated[str, Query(max_length=200)] = "",
        status: Annotated[str, Query(max_length=20)] = "",
    ) -> HTMLResponse:
        p = the_pool()
        now = clock.now()
        f = queries.DeadlineFilter(agency=agency, flow=flow, status=status)
        agencies, flows = await queries.filter_choices(p)
        page = overview_page(
            f=f,
            now=now,
            agencies=agencies,
            flows=flows,
            deadlines=await queries.deadlines(p, f, now=now),
            totals=await queries.sla_totals(p, f),
            health=await queries.delivery_health(p),
            dead=await dead(),
            times=await queries.response_times(p),
            refresh_s=refresh_s,
            labels=lb,
        )
        return html(page, lb)

    @app.get("/cases/{case_id}", response_class=HTMLResponse, dependencies=[Depends(case_reader)])
    async def case(case_id: str, lb: Annotated[Labels, Depends(labels)]) -> HTMLResponse:
        trace = await case_trace(the_pool(), case_id)
        status = 200 if trace.messages or trace.deadlines else 404
        return html(case_page(trace, refresh_s=refresh_s, labels=lb), lb, status)

    @app.get("/healthz", response_class=PlainTextResponse)
    async def healthz() -> str:
        await the_pool().fetchval("SELECT 1")
        return "ok"

    return app
