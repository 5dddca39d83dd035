"""The procuratorate adapter's HTTP API and service: the common API plus the supervision views.

No ``from __future__ import annotations`` here: FastAPI reads the route functions' annotations.

Besides the common submission and inbox API it answers, for the procuratorate's own token only:
``GET /v1/cases/{case_id}/timeline`` (every step of a case with its deadlines and the evidence
bundle proving it), ``GET /v1/screening/penalty-instead-of-transfer`` (以罚代刑 and the other
signals of domain.md), ``GET /v1/statistics?from=&to=``. The audit proofs of
:func:`bus.audit.http.audit_router` are under ``/v1/audit``: a message's evidence bundle for the
procuratorate and the message's sender and recipients (any agency's token), checkpoints and
consistency proofs for anyone. Every one of these queries is appended to the audit log (event
``query``: who asked for what) before it is answered. The log is also served as C2SP tiles
under ``/v1/tlog`` (:mod:`bus.audit.tiles_http`): hashes for anyone, entry bundles for the
procuratorate only.
"""

import asyncio
import functools
import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, Final

import asyncpg
import structlog
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response

from adapters._framework.app import create_app as _create_app
from adapters._framework.auth import message_reader, served_reader, token_agency
from adapters._framework.config import AdapterConfig
from adapters._framework.inbound import department_problem
from adapters._framework.service import AdapterService
from adapters.procuratorate.mapping import RECEIVES, SENDS, VOCABULARY
from adapters.procuratorate.outbound import STORE_CONSUMER, store_handler
from bus.audit.events import plain_leaf
from bus.audit.evidence import build_bundle
from bus.audit.http import audit_router
from bus.audit.log import AuditLog, AuditRecord, EntryNotFound
from bus.audit.tiles_http import tiles_router
from bus.audit.witnessing import WitnessPolicy
from bus.errors import CasebusError
from bus.inbox import InboxReader
from bus.settings import Settings
from bus.sla.calendar import DEFAULT_HOLIDAYS_OVERRIDE_PATH, SHANGHAI, WorkCalendar
from bus.sla.policy import PolicySet, load_policies

__all__ = [
    "ADAPTER_KIND",
    "ProcuratorateService",
    "build_service",
    "create_app",
    "record_query",
    "screening",
    "statistics",
    "timeline",
]

ADAPTER_KIND: Final = "procuratorate"
"""The name of this adapter: ``casebus adapter procuratorate``."""

log = structlog.get_logger("casebus.adapter.procuratorate")

_QUERIED: Final = ("/v1/cases/", "/v1/screening/", "/v1/statistics", "/v1/audit/")
_LATE_RECEIPT: Final = "criminal.receipt"
_LATE_HANDOVER: Final = "criminal.evidence_handover"


class ProcuratorateService(AdapterService):
    """The common adapter service plus one store reader per procuratorate served."""

    def __init__(
        self,
        settings: Settings,
        config: AdapterConfig,
        *,
        relay_settings: Settings | None = None,
        run_relay: bool = True,
        run_readers: bool = True,
    ) -> None:
        super().__init__(
            settings,
            config,
            vocabulary=VOCABULARY,
            sends=SENDS,
            receives=RECEIVES,
            relay_settings=relay_settings,
            run_relay=run_relay,
            run_readers=run_readers,
        )
        self._run_store = run_readers

    async def start(self) -> None:
        """Start the common parts, then the readers keeping each case's events, each kept
        running like the adapter's own reader (a PostgreSQL restart used to end them for good)."""
        if self.started:
            return
        await super().start()
        if not self._run_store:
            return
        for agency in self.config.agency_ids:
            self._tasks.append(
                asyncio.create_task(
                    self.keep_reading(agency, functools.partial(self._store, agency))
                )
            )

    def _store(self, agency: str) -> InboxReader:
        return InboxReader(
            self.settings,
            agency_id=agency,
            consumer_name=STORE_CONSUMER.format(agency=agency),
            handler=store_handler(agency),
            pool=self.pool,
            poll_timeout_ms=200,
        )


def build_service(
    settings: Settings,
    config: AdapterConfig,
    *,
    relay_settings: Settings | None = None,
    run_relay: bool = True,
    run_readers: bool = True,
) -> AdapterService:
    """The service behind the API: the common parts and the case store."""
    return ProcuratorateService(
        settings,
        config,
        relay_settings=relay_settings,
        run_relay=run_relay,
        run_readers=run_readers,
    )


# -- the audit trail of queries --------------------------------------------------------------------


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


# -- the views -------------------------------------------------------------------------------------


def _payload(row: asyncpg.Record) -> dict[str, Any]:
    value = row["payload"]
    out: dict[str, Any] = json.loads(value) if isinstance(value, str) else dict(value)
    return out


@functools.cache
def _policies() -> PolicySet:
    return load_policies()


@functools.cache
def _calendar() -> WorkCalendar:
    return WorkCalendar(DEFAULT_HOLIDAYS_OVERRIDE_PATH)


def _expected(steps: list[asyncpg.Record], now: datetime) -> dict[str, list[dict[str, Any]]]:
    """The deadlines each step opens under the shipped policies, and whether a later step of
    the case closed each in time (matched by case: the bus's SLA engine matches more finely)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for i, step in enumerate(steps):
        payload = _payload(step)
        for policy in _policies().opened_by(step["kind"], payload):
            try:
                start = policy.start_from(sent_at=step["sent_at"], payload=payload)
                due = policy.due_from(start, payload=payload, calendar=_calendar())
            except CasebusError:
                continue
            later = steps[i:] if policy.obligation == "window" else steps[i + 1 :]
            closer = next((s for s in later if policy.closed_by(s["kind"])), None)
            if closer is not None:
                state = "met" if closer["sent_at"] <= due else "breached"
            else:
                state = "breached" if now > due else "open"
            out.setdefault(str(step["message_id"]), []).append(
                {
                    "policy_id": policy.id,
                    "due_at": due.isoformat(),
                    "state": state,
                    "closed_by": str(closer["message_id"]) if closer is not None else None,
                    "legal_basis": policy.legal_basis.strip(),
                }
            )
    return out


def _deadlines(sla_rows: list[asyncpg.Record]) -> dict[str, list[dict[str, Any]]]:
    """Deadlines by the message that opened them, from the SLA engine's events."""
    by_id: dict[str, dict[str, Any]] = {}
    for row in sla_rows:
        p = _payload(row)
        entry = by_id.setdefault(
            p["deadline_id"],
            {
                "deadline_id": p["deadline_id"],
                "policy_id": p["policy_id"],
                "opened_by": p["opened_by"],
                "due_at": p["due_at"],
                "owner_agency": p["owner_agency"],
                "waiting_agency": p["waiting_agency"],
                "state": "open",
            },
        )
        if row["kind"] == "sla.breach":
            entry["state"] = "breached"
            entry["breached_at"] = p.get("occurred_at")
        elif row["kind"] == "sla.met" and entry["state"] != "breached":
            entry["state"] = "met"
            entry["closed_by"] = p.get("closed_by")
        elif row["kind"] == "sla.warning" and entry["state"] == "open":
            entry["state"] = "warned"
    out: dict[str, list[dict[str, Any]]] = {}
    for entry in by_id.values():
        out.setdefault(str(entry["opened_by"]), []).append(entry)
    return out


async def timeline(
    pool: asyncpg.Pool, agency: str, case_id: str, *, now: datetime | None = None
) -> dict[str, Any]:
    """Every step of a case, oldest first, with its deadlines and evidence bundle; a deadline
    no step closed is open or breached as of ``now`` (the adapter's clock; the wall's if None)."""
    rows = await pool.fetch(
        """SELECT message_id, kind, sender, recipients, sent_at, received_at, payload
           FROM procuratorate_events WHERE agency_id = $1 AND case_id = $2
           ORDER BY sent_at, id""",
        agency,
        case_id,
    )
    steps = [r for r in rows if not r["kind"].startswith("sla.")]
    sla_rows = [r for r in rows if r["kind"].startswith("sla.")]
    indexes = {
        r["message_id"]: r["idx"]
        for r in await pool.fetch(
            """SELECT message_id, idx FROM audit_entries
               WHERE event_kind = 'accepted' AND message_id = ANY($1::uuid[])""",
            [r["message_id"] for r in rows],
        )
    }
    reported = _deadlines(sla_rows)
    deadlines = _expected(steps, now or datetime.now(UTC))
    for opened_by, entries in reported.items():
        mine = {d["policy_id"]: d for d in deadlines.setdefault(opened_by, [])}
        for entry in entries:
            known = mine.get(entry["policy_id"])
            if known is None:
                deadlines[opened_by].append(entry)
            else:  # the engine's word (its clock, its matching) wins over the estimate
                known.update(entry)
    out = []
    for r in steps:
        try:
            bundle: dict[str, Any] | None = await build_bundle(pool, r["message_id"])
        except EntryNotFound:
            bundle = None  # not yet covered by a checkpoint (or not audited at all)
        out.append(
            {
                "message_id": str(r["message_id"]),
                "kind": r["kind"],
                "ywlx": VOCABULARY.code(r["kind"]),
                "sender": r["sender"],
                "recipients": list(r["recipients"]),
                "sent_at": r["sent_at"].isoformat(),
                "received_at": r["received_at"].isoformat(),
                "audit_index": indexes.get(r["message_id"]),
                "deadlines": deadlines.get(str(r["message_id"]), []),
                "evidence": bundle,
            }
        )
    sla_events = [
        {
            "message_id": str(r["message_id"]),
            "kind": r["kind"],
            "sent_at": r["sent_at"].isoformat(),
            "audit_index": indexes.get(r["message_id"]),
            **_payload(r),
        }
        for r in sla_rows
    ]
    return {"case_id": case_id, "steps": out, "sla_events": sla_events}


_SUSPECTED_UNTRANSFERRED: Final = """
SELECT e.message_id, e.sender, e.sent_at, e.payload->>'report_no' AS report_no,
       d->>'case_id' AS case_id, d->>'decision_no' AS decision_no,
       d->>'penalty_type' AS penalty_type
FROM procuratorate_events e, jsonb_array_elements(e.payload->'decisions') AS d
WHERE e.agency_id = $1 AND e.kind = 'penalty.feedback'
  AND (d->>'suspected_crime')::boolean
  AND NOT EXISTS (
      SELECT 1 FROM procuratorate_events t
      WHERE t.agency_id = e.agency_id AND t.kind = 'criminal.transfer'
        AND (t.case_id = d->>'case_id' OR t.payload->>'case_id' = d->>'case_id'))
ORDER BY e.sent_at, d->>'case_id'
"""

_REFUSALS_WITHOUT_REASONS: Final = """
SELECT message_id, case_id, sender, sent_at, payload->>'decision_no' AS decision_no
FROM procuratorate_events
WHERE agency_id = $1 AND kind = 'criminal.filing_decision'
  AND payload->>'decision' = 'NOT_FILED'
  AND jsonb_array_length(coalesce(payload->'reasons', '[]'::jsonb)) = 0
ORDER BY sent_at
"""

_BREACHES_OF: Final = """
SELECT message_id, case_id, sent_at, payload->>'owner_agency' AS owner_agency,
       payload->>'due_at' AS due_at, payload->>'opened_by' AS opened_by
FROM procuratorate_events
WHERE agency_id = $1 AND kind = 'sla.breach' AND payload->>'policy_id' = $2
ORDER BY sent_at
"""

_OBSTRUCTIONS: Final = """
SELECT message_id, case_id, sender, sent_at, payload->>'obstruction_type' AS obstruction_type,
       payload->>'obstructing_agency_id' AS obstructing_agency_id
FROM procuratorate_events WHERE agency_id = $1 AND kind = 'obstruction.report'
ORDER BY sent_at
"""


def _rows(rows: list[asyncpg.Record]) -> list[dict[str, Any]]:
    return [
        {
            k: (
                v.isoformat()
                if isinstance(v, datetime)
                else str(v)
                if isinstance(v, uuid.UUID)
                else v
            )
            for k, v in r.items()
        }
        for r in rows
    ]


async def screening(pool: asyncpg.Pool, agency: str) -> dict[str, Any]:
    """以罚代刑 (suspected crimes punished but never transferred) and the other signals."""
    return {
        "penalty_instead_of_transfer": _rows(await pool.fetch(_SUSPECTED_UNTRANSFERRED, agency)),
        "refusals_without_reasons": _rows(await pool.fetch(_REFUSALS_WITHOUT_REASONS, agency)),
        "late_receipts": _rows(await pool.fetch(_BREACHES_OF, agency, _LATE_RECEIPT)),
        "late_evidence_handovers": _rows(await pool.fetch(_BREACHES_OF, agency, _LATE_HANDOVER)),
        "obstruction_reports": _rows(await pool.fetch(_OBSTRUCTIONS, agency)),
    }


_STATISTICS: Final = """
SELECT to_char(sent_at AT TIME ZONE 'Asia/Shanghai', 'YYYY-MM') AS month,
       CASE WHEN kind = 'sla.breach' THEN payload->>'owner_agency' ELSE sender END AS agency,
       count(*) FILTER (WHERE kind = 'criminal.transfer') AS transfers,
       count(*) FILTER (WHERE kind = 'criminal.filing_decision'
                          AND payload->>'decision' = 'FILED') AS filings,
       count(*) FILTER (WHERE kind = 'criminal.filing_decision'
                          AND payload->>'decision' = 'NOT_FILED') AS refusals,
       count(*) FILTER (WHERE kind = 'criminal.reconsideration_request') AS reconsiderations,
       count(*) FILTER (WHERE kind = 'supervision.request') AS supervision_requests,
       count(*) FILTER (WHERE kind = 'supervision.notice') AS supervision_notices,
       count(*) FILTER (WHERE kind = 'sla.breach') AS breaches
FROM procuratorate_events
WHERE agency_id = $1 AND sent_at >= $2 AND sent_at < $3
GROUP BY 1, 2
HAVING count(*) FILTER (WHERE kind IN ('criminal.transfer', 'criminal.filing_decision',
       'criminal.reconsideration_request', 'supervision.request', 'supervision.notice',
       'sla.breach')) > 0
ORDER BY 1, 2
"""


_FIRST_INSTANT: Final = datetime.min.replace(tzinfo=UTC)
_LAST_INSTANT: Final = datetime.max.replace(tzinfo=UTC)


async def statistics(pool: asyncpg.Pool, agency: str, start: date, end: date) -> dict[str, Any]:
    """Counts by agency and month (Asia/Shanghai) for the days ``start`` to ``end`` inclusive."""
    # The day after 9999-12-31 does not exist, and midnight of 0001-01-01 in Shanghai is in year 0
    # in UTC: the open ends of the range are the ends of what PostgreSQL and Python both hold.
    since = max(datetime.combine(start, time(0), SHANGHAI), _FIRST_INSTANT)
    until = (
        datetime.combine(end + timedelta(days=1), time(0), SHANGHAI)
        if end < date.max
        else _LAST_INSTANT
    )
    rows = await pool.fetch(_STATISTICS, agency, since, until)
    return {"from": start.isoformat(), "to": end.isoformat(), "rows": [dict(r) for r in rows]}


# -- the app ---------------------------------------------------------------------------------------


def create_app(service: AdapterService, *, manage_service: bool = True) -> FastAPI:
    """The common adapter API of ``service`` plus the procuratorate's views and audit proofs."""
    app = _create_app(service, manage_service=manage_service)

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

    @app.middleware("http")
    async def audited(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Any:
        path = request.url.path
        if request.method != "GET" or not path.startswith(_QUERIED):
            return await call_next(request)
        agency = "anonymous"
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and token:
            agency = await token_agency(service.pool, token.strip()) or "invalid_token"
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
        response.headers["X-Casebus-Query-Audit-Index"] = str(index)
        return response

    Agency = Annotated[str, Depends(agency_of)]

    @app.get(
        "/v1/cases/{case_id}/timeline",
        summary="案件全流程时间线 / every step of a case, with deadlines and proofs",
    )
    async def case_timeline(agency: Agency, case_id: str) -> dict[str, Any]:
        return await timeline(service.pool, agency, case_id, now=service.config.clock.now())

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

    return app
