"""Every procuratorate query on the record: who asked for what, appended to the audit log.

A supervisor's look at a case is itself evidence: each ``GET`` under the procuratorate's views
(:mod:`adapters.procuratorate.routes`) and ``/v1/audit/`` is appended to the audit log (event
``query``) before it is answered, and answered 503 if it cannot be. The caller is named as the
framework's token dependency would name it (:func:`adapters._framework.auth.caller`):
``anonymous`` without a token, ``invalid_token`` for an unknown or revoked one.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Final

import asyncpg
import structlog
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from adapters._framework.auth import caller
from adapters._framework.inbound import department_problem
from adapters._framework.service import AdapterService
from bus.audit.events import plain_leaf
from bus.audit.log import AuditLog, AuditRecord

__all__ = ["AUDIT_INDEX_HEADER", "QUERIED", "install_query_audit", "record_query"]

log = structlog.get_logger("casebus.adapter.procuratorate")

QUERIED: Final = ("/v1/cases/", "/v1/screening/", "/v1/statistics", "/v1/audit/")
"""The path prefixes whose ``GET`` is a query on the record."""
AUDIT_INDEX_HEADER: Final = "X-Casebus-Query-Audit-Index"
"""The response header naming the audit log index of the query's record."""


async def record_query(
    pool: asyncpg.Pool,
    *,
    agency: str,
    path: str,
    params: dict[str, str],
    at: datetime | None = None,
) -> int:
    """Append ``query`` (who looked at what, ``at``: now by default) to the audit log; its
    index."""
    event_id = uuid.uuid4()
    at = at or datetime.now(UTC)
    leaf = plain_leaf("query", event_id=event_id, at=at, agency=agency, path=path, params=params)
    case_id = path.split("/")[3] if path.startswith("/v1/cases/") else None
    async with pool.acquire() as conn, conn.transaction():
        [entry] = await AuditLog().append(conn, [AuditRecord("query", event_id, case_id, leaf)])
    return entry.index


def install_query_audit(app: FastAPI, service: AdapterService) -> None:
    """Put every query of :data:`QUERIED` on the record before it is answered."""

    @app.middleware("http")
    async def audited(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Any:
        path = request.url.path
        if request.method != "GET" or not path.startswith(QUERIED):
            return await call_next(request)
        agency = await caller(service.pool, request.headers.get("authorization", ""))
        try:
            index = await record_query(
                service.pool,
                agency=agency,
                path=path,
                params=dict(request.query_params),
                at=service.config.clock.now(),
            )
        except Exception as e:  # no answer that is not on the record
            log.error("procuratorate.query_not_recorded", path=path, error=f"{e!r}")
            problem = department_problem(
                "$", "audit_unavailable", "the query could not be recorded", "查询无法记录审计"
            )
            return JSONResponse({"problems": [problem]}, status_code=503)
        log.info("procuratorate.query", agency=agency, path=path, audit_index=index)
        response = await call_next(request)
        response.headers[AUDIT_INDEX_HEADER] = str(index)
        return response
