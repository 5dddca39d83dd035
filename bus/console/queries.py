"""What the ops console reads: deadlines, delivery health and response times (PostgreSQL),
and the dead letters (the dead-letter topic)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from bus.settings import Settings

__all__ = [
    "DeadLetter",
    "DeadlineFilter",
    "agency_names",
    "dead_letters",
    "deadlines",
    "delivery_health",
    "filter_choices",
    "response_times",
    "sla_totals",
]

STATES = ("open", "met", "breached", "lapsed", "cancelled")


@dataclass(frozen=True)
class DeadlineFilter:
    """The console's query parameters (empty: no filter)."""

    agency: str = ""
    flow: str = ""
    status: str = ""

    def sql(self, first: int = 1) -> tuple[str, list[Any]]:
        """A WHERE clause (``$first``…) and its arguments."""
        clauses, args = ["TRUE"], []
        for column, value in (
            ("(owner_agency = ${n} OR waiting_agency = ${n})", self.agency),
            ("policy_id = ${n}", self.flow),
            ("state = ${n}", self.status),
        ):
            if value:
                args.append(value)
                clauses.append(column.replace("{n}", str(first + len(args) - 1)))
        return " AND ".join(clauses), args


async def deadlines(
    pool: asyncpg.Pool, f: DeadlineFilter, *, now: datetime, limit: int = 300
) -> list[dict[str, Any]]:
    """Deadlines matching ``f``: open ones first by due date, then the most recent others."""
    where, args = f.sql(2)
    rows = await pool.fetch(
        f"""
        SELECT policy_id, case_id, owner_agency, waiting_agency, state, start_at, due_at,
               warnings_sent, closed_at, closed_kind, due_at - $1::timestamptz AS time_left
        FROM sla_deadlines WHERE {where}
        ORDER BY (state = 'open') DESC,
                 CASE WHEN state = 'open' THEN due_at END ASC,
                 coalesce(closed_at, due_at) DESC
        LIMIT {int(limit)}
        """,
        now,
        *args,
    )
    return [dict(r) for r in rows]


async def sla_totals(pool: asyncpg.Pool, f: DeadlineFilter) -> list[dict[str, Any]]:
    """Warnings sent and deadlines by state, per owing agency and flow."""
    where, args = f.sql(1)
    rows = await pool.fetch(
        f"""
        SELECT owner_agency AS agency, policy_id AS flow,
               count(*) FILTER (WHERE state = 'open') AS open,
               coalesce(sum(warnings_sent), 0) AS warnings,
               count(*) FILTER (WHERE state = 'met') AS met,
               count(*) FILTER (WHERE state = 'breached') AS breached
        FROM sla_deadlines WHERE {where}
        GROUP BY 1, 2 ORDER BY 1, 2
        """,
        *args,
    )
    return [dict(r) for r in rows]


async def filter_choices(pool: asyncpg.Pool) -> tuple[list[str], list[str]]:
    """The agencies and flows that have deadlines (the filters' options)."""
    agencies = await pool.fetch(
        "SELECT DISTINCT a FROM (SELECT owner_agency AS a FROM sla_deadlines"
        " UNION SELECT waiting_agency FROM sla_deadlines) x ORDER BY a"
    )
    flows = await pool.fetch("SELECT DISTINCT policy_id FROM sla_deadlines ORDER BY 1")
    return [r[0] for r in agencies], [r[0] for r in flows]


async def agency_names(pool: asyncpg.Pool) -> dict[str, tuple[str, str | None]]:
    """Agency id → (name, English name), as the registry (deploy/agencies.yaml) was loaded."""
    rows = await pool.fetch("SELECT agency_id, name, name_en FROM agencies")
    return {r["agency_id"]: (r["name"], r["name_en"]) for r in rows}


async def response_times(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    """Per owing agency: closed steps, median and 90th-percentile hours from start to close."""
    rows = await pool.fetch(
        """
        SELECT owner_agency AS agency, count(*) AS closed,
               percentile_cont(0.5) WITHIN GROUP (
                   ORDER BY extract(epoch FROM closed_at - start_at) / 3600.0) AS p50_h,
               percentile_cont(0.9) WITHIN GROUP (
                   ORDER BY extract(epoch FROM closed_at - start_at) / 3600.0) AS p90_h
        FROM sla_deadlines
        WHERE closed_at IS NOT NULL AND closed_at >= start_at AND opened_kind <> 'schedule'
        GROUP BY 1 ORDER BY 1
        """
    )
    return [dict(r) for r in rows]


async def delivery_health(pool: asyncpg.Pool) -> dict[str, Any]:
    """Outbox rows waiting to be published, and deliveries to departments pending or late
    (a pending delivery whose first attempt is over a minute old counts as late). Lateness is
    real time, by the database's clock that stamped ``received_at``, even when the console's
    "now" is a simulated one (the demo's)."""
    outbox = await pool.fetch(
        "SELECT owner, count(*) AS pending, min(created_at) AS oldest, max(attempts) AS attempts"
        " FROM outbox WHERE published_at IS NULL GROUP BY 1 ORDER BY 1"
    )
    deliveries = await pool.fetch(
        """
        SELECT agency_id AS agency, count(*) AS pending,
               count(*) FILTER (WHERE received_at < now() - interval '1 minute') AS late,
               max(attempts) AS attempts, min(received_at) AS oldest
        FROM adapter_deliveries WHERE state = 'pending' GROUP BY 1 ORDER BY 1
        """
    )
    rejected = await pool.fetchval(
        "SELECT count(*) FROM adapter_deliveries WHERE state = 'rejected'"
    )
    return {
        "outbox": [dict(r) for r in outbox],
        "deliveries": [dict(r) for r in deliveries],
        "rejected": int(rejected or 0),
    }


@dataclass(frozen=True)
class DeadLetter:
    """A record the router could not deliver, with why and where it came from."""

    offset: int
    code: str
    reason: str
    source: str
    at: str


async def dead_letters(
    settings: Settings, *, limit: int = 50, timeout_s: float = 1.5
) -> list[DeadLetter] | None:
    """The latest records of the dead-letter topic (None if the broker did not answer)."""
    consumer = AIOKafkaConsumer(
        settings.topic_dead(),
        **settings.kafka_client_options(),
        group_id=None,  # no group: nothing to join, nothing committed
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level="read_committed",
        request_timeout_ms=int(timeout_s * 1000) + 5000,
    )
    found: list[DeadLetter] = []
    try:
        await consumer.start()
        loop = asyncio.get_running_loop()
        until = loop.time() + timeout_s
        batches: list[dict[Any, list[Any]]] = []
        while loop.time() < until:
            batch = await consumer.getmany(timeout_ms=300, max_records=10_000)
            if not batch and batches:
                break
            batches.append(batch)
        for records in (rs for b in batches for rs in b.values()):
            for r in records:
                h = {k: v.decode(errors="replace") for k, v in (r.headers or ())}
                found.append(
                    DeadLetter(
                        offset=r.offset,
                        code=h.get("casebus_dead_code", ""),
                        reason=h.get("casebus_dead_reason", ""),
                        source=f"{h.get('casebus_source_topic', '?')}"
                        f"[{h.get('casebus_source_partition', '?')}]"
                        f"@{h.get('casebus_source_offset', '?')}",
                        at=h.get("casebus_dead_at", ""),
                    )
                )
    except KafkaError:
        return None
    finally:
        await consumer.stop()
    found.sort(key=lambda d: d.at, reverse=True)
    return found[:limit]
