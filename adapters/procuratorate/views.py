"""The procuratorate's views over its case store: timeline, screening, statistics.

Reads of ``procuratorate_events`` (kept by :mod:`adapters.procuratorate.store`), each a plain
async function of a pool so a test can call it without HTTP. The deadlines a timeline expects
are counted with the :class:`~adapters._framework.checks.DeadlineRules` of the adapter's
settings: the policy file the SLA engine reads, not the shipped one.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final

import asyncpg

from adapters._framework.checks import DeadlineRules
from adapters.procuratorate.mapping import VOCABULARY
from bus.audit.evidence import build_bundle
from bus.errors import CasebusError, EntryNotFoundError
from bus.sla.calendar import SHANGHAI

__all__ = ["expected_deadlines", "screening", "statistics", "timeline"]

_LATE_RECEIPT: Final = "criminal.receipt"
_LATE_HANDOVER: Final = "criminal.evidence_handover"


def _payload(row: asyncpg.Record) -> dict[str, Any]:
    value = row["payload"]
    out: dict[str, Any] = json.loads(value) if isinstance(value, str) else dict(value)
    return out


def expected_deadlines(
    steps: list[asyncpg.Record], now: datetime, rules: DeadlineRules
) -> dict[str, list[dict[str, Any]]]:
    """The deadlines each step opens under ``rules``, and whether a later step of the case
    closed each in time (matched by case: the bus's SLA engine matches more finely)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for i, step in enumerate(steps):
        payload = _payload(step)
        for policy in rules.policies.opened_by(step["kind"], payload):
            try:
                start = policy.start_from(sent_at=step["sent_at"], payload=payload)
                due = policy.due_from(start, payload=payload, calendar=rules.calendar)
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
    pool: asyncpg.Pool,
    agency: str,
    case_id: str,
    *,
    rules: DeadlineRules,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Every step of a case, oldest first, with its deadlines (counted with ``rules``) and
    evidence bundle; a deadline no step closed is open or breached as of ``now`` (the adapter's
    clock; the wall's if None)."""
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
    deadlines = expected_deadlines(steps, now or datetime.now(UTC), rules)
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
        except EntryNotFoundError:
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
