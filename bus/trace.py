"""A case's whole timeline from the audit log, and its deadlines from the SLA engine's table.

Read-only: ``casebus trace``, the ops console and the demo's summary share these queries.
Every message step is the router's ``accepted`` leaf (it carries the signed envelope and the
recipients the router delivered to); rejections and dead letters of the case are listed too,
with their whole reason (every problem: field, rule, text) and the sender's own message id,
since the log keeps them under an id derived from the submitted bytes.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from bus.audit.events import decode_leaf, leaf_envelope
from bus.codec import default_codec
from bus.sla.calendar import SHANGHAI

__all__ = [
    "CaseTrace",
    "DeadlineStep",
    "MessageStep",
    "case_trace",
    "messages_by_kind",
    "render_trace",
]


@dataclass(frozen=True)
class MessageStep:
    """One audited event of a case."""

    audit_index: int
    event: str
    message_id: str
    recorded_at: datetime
    kind: str
    sender: str
    recipients: tuple[str, ...]
    """Whom the router delivered to (named recipients and automatic copies)."""
    sent_at: datetime | None
    detail: str = ""


@dataclass(frozen=True)
class DeadlineStep:
    """One deadline the SLA engine opened on the case."""

    policy_id: str
    owner_agency: str
    waiting_agency: str
    start_at: datetime
    due_at: datetime
    state: str
    closed_kind: str | None
    closed_at: datetime | None
    opened_by: str


@dataclass(frozen=True)
class CaseTrace:
    """Everything the bus knows of one case."""

    case_id: str
    messages: tuple[MessageStep, ...]
    deadlines: tuple[DeadlineStep, ...]


_ENTRIES = """
SELECT idx, event_kind, message_id, leaf, recorded_at FROM audit_entries
WHERE case_id = $1 AND event_kind IN ('accepted', 'rejected', 'dead_lettered')
ORDER BY idx
"""

_DEADLINES = """
SELECT policy_id, owner_agency, waiting_agency, start_at, due_at, state, closed_kind,
       closed_at, opened_by
FROM sla_deadlines WHERE case_id = $1 ORDER BY start_at, policy_id
"""


def _step(row: asyncpg.Record) -> MessageStep:
    leaf: dict[str, Any] = decode_leaf(bytes(row["leaf"]))
    details: dict[str, Any] = leaf.get("details") or {}
    value = leaf_envelope(leaf)
    kind, sender, sent_at = "?", "?", None
    recipients: tuple[str, ...] = tuple(details.get("deliver_to") or ())
    if value is not None:
        try:
            env = default_codec().decode_envelope(value)
        except Exception:  # a rejected record may not even decode; the leaf still says so
            pass
        else:
            kind, sender, sent_at = env.kind, env.sender, env.sent_at
            recipients = recipients or tuple(env.recipients)
    detail = "" if row["event_kind"] == "accepted" else _reason(details)
    return MessageStep(
        audit_index=int(row["idx"]),
        event=str(row["event_kind"]),
        message_id=str(row["message_id"]),
        recorded_at=row["recorded_at"],
        kind=kind,
        sender=sender,
        recipients=recipients,
        sent_at=sent_at,
        detail=detail,
    )


def _reason(details: dict[str, Any]) -> str:
    """A refusal's whole reason: its code, then each problem as ``path: message [rule]``."""
    problems = details.get("problems")
    parts = [str(details.get("code") or details.get("reason") or "")]
    if isinstance(problems, list):
        parts += [
            f"{p.get('path')}: {p.get('message')} [{p.get('rule')}]"
            if isinstance(p, dict)
            else str(p)
            for p in problems
        ]
    text = "; ".join(part for part in parts if part)
    original = details.get("original_message_id")
    if original:
        text += f" (sender's message id {original})"
    return text


async def case_trace(pool: asyncpg.Pool, case_id: str) -> CaseTrace:
    """The audited steps and the deadlines of ``case_id`` (both empty for an unknown case)."""
    async with pool.acquire() as conn:
        entries = await conn.fetch(_ENTRIES, case_id)
        deadlines = await conn.fetch(_DEADLINES, case_id)
    return CaseTrace(
        case_id=case_id,
        messages=tuple(_step(r) for r in entries),
        deadlines=tuple(
            DeadlineStep(**{**dict(r), "opened_by": str(r["opened_by"])}) for r in deadlines
        ),
    )


async def messages_by_kind(pool: asyncpg.Pool, *, since: datetime | None = None) -> Counter[str]:
    """Accepted messages by kind (since ``since``, if given), decoded from their leaves."""
    rows = await pool.fetch(
        "SELECT leaf FROM audit_entries WHERE event_kind = 'accepted'"
        " AND ($1::timestamptz IS NULL OR recorded_at >= $1)",
        since,
    )
    codec = default_codec()
    counts: Counter[str] = Counter()
    for row in rows:
        value = leaf_envelope(decode_leaf(bytes(row["leaf"])))
        if value is not None:
            counts[codec.decode_envelope(value).kind] += 1
    return counts


def _t(at: datetime | None) -> str:
    return at.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S") if at is not None else "-"


def render_trace(trace: CaseTrace) -> str:
    """The trace as text for a terminal (times in Asia/Shanghai)."""
    lines = [f"case {trace.case_id}: {len(trace.messages)} audited steps"]
    for m in trace.messages:
        to = ", ".join(m.recipients) or "-"
        mark = "" if m.event == "accepted" else f" [{m.event.upper()}] {m.detail}"
        lines.append(
            f"  #{m.audit_index:<6} {_t(m.sent_at or m.recorded_at)}  {m.kind:<34} "
            f"{m.sender} → {to}  {m.message_id}{mark}"
        )
    lines.append(f"deadlines: {len(trace.deadlines)}")
    for d in trace.deadlines:
        closed = f", closed by {d.closed_kind} at {_t(d.closed_at)}" if d.closed_kind else ""
        lines.append(
            f"  {d.policy_id:<34} {d.owner_agency} owes {d.waiting_agency}: "
            f"due {_t(d.due_at)}  {d.state.upper()}{closed}"
        )
    return "\n".join(lines)
