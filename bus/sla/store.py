"""Deadlines in PostgreSQL (``sla_deadlines``, migration 0006): the SQL, and nothing else.

Every method takes the caller's connection, so the engine's writes share one transaction with
its inbox marker and its outbox rows. Rows are locked for change (``lock_*``) and written back
whole (:meth:`DeadlineStore.save`); the scheduler's :meth:`DeadlineStore.claim_due` skips rows
another transaction holds, so replicas never work on the same deadline at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import astuple, dataclass, fields
from datetime import datetime
from typing import Any, Final
from uuid import UUID

import asyncpg

from bus.db import Conn, Executor
from bus.sla.deadline import Deadline

__all__ = ["COLUMNS", "DeadlineStore", "OpenCount"]

COLUMNS: Final[tuple[str, ...]] = tuple(f.name for f in fields(Deadline))
"""The columns of ``sla_deadlines`` that mirror :class:`Deadline`, in its field order."""

_SELECT: Final = f"SELECT {', '.join(COLUMNS)} FROM sla_deadlines"
_INSERT: Final = (
    f"INSERT INTO sla_deadlines ({', '.join(COLUMNS)}, next_warning_at) "
    f"VALUES ({', '.join(f'${i}' for i in range(1, len(COLUMNS) + 1))}, "
    f"(${COLUMNS.index('warnings_at') + 1}::timestamptz[])[1]) "
    "ON CONFLICT (policy_id, opened_by) DO NOTHING RETURNING id"
)
# Only what a step may change; the identity of a deadline never changes.
_MUTABLE: Final = (
    "due_at",
    "state",
    "warnings_at",
    "warnings_sent",
    "last_warning_at",
    "breach_emitted_at",
    "met_emitted_at",
    "moved_by",
    "moved_at",
    "moves",
    "closed_by",
    "closed_kind",
    "closed_at",
)
_SAVE: Final = (
    "UPDATE sla_deadlines SET "
    + ", ".join(f"{name} = ${i}" for i, name in enumerate(_MUTABLE, start=2))
    + f", next_warning_at = (${_MUTABLE.index('warnings_at') + 2}::timestamptz[])[1]"
    + ", updated_at = now() WHERE id = $1"
)
_OPEN_ORDER: Final = "least(next_warning_at, due_at)"  # the expression the index is built on


@dataclass(frozen=True, slots=True)
class OpenCount:
    """How many deadlines of one policy and owner are open, and how many of those are overdue
    (breached and not yet closed)."""

    policy_id: str
    owner_agency: str
    open: int
    overdue: int


def _deadline(row: asyncpg.Record) -> Deadline:
    values: dict[str, Any] = dict(row)
    values["notify_agencies"] = tuple(values["notify_agencies"])
    values["warnings_at"] = tuple(values["warnings_at"])
    return Deadline(**values)


def _row(deadline: Deadline) -> tuple[Any, ...]:
    values = list(astuple(deadline))
    for i, name in enumerate(COLUMNS):
        if name in ("notify_agencies", "warnings_at"):
            values[i] = list(values[i])
    return tuple(values)


def _changes(deadline: Deadline) -> tuple[Any, ...]:
    values = [getattr(deadline, name) for name in _MUTABLE]
    return (deadline.id, *(list(v) if isinstance(v, tuple) else v for v in values))


class DeadlineStore:
    """The deadline table. Stateless: one instance serves every connection."""

    async def insert(self, conn: Conn, deadline: Deadline) -> bool:
        """Add a deadline; False (and nothing changed) if its policy already has one for the
        same opening message."""
        return await conn.fetchval(_INSERT, *_row(deadline)) is not None

    async def insert_many(self, conn: Conn, deadlines: Iterable[Deadline]) -> None:
        """Add many deadlines in one statement pipeline (existing ones are left alone)."""
        await conn.executemany(_INSERT, [_row(d) for d in deadlines])

    async def save(self, conn: Conn, deadlines: Sequence[Deadline]) -> None:
        """Write back what a step changed (due instant, state, warnings, move, close)."""
        if not deadlines:
            return
        await conn.executemany(_SAVE, [_changes(d) for d in deadlines])

    async def get(self, db: Executor, deadline_id: UUID) -> Deadline | None:
        """One deadline by id."""
        row = await db.fetchrow(f"{_SELECT} WHERE id = $1", deadline_id)
        return _deadline(row) if row is not None else None

    async def opened_by(self, db: Executor, message_id: UUID) -> list[Deadline]:
        """The deadlines a message opened, by policy id."""
        rows = await db.fetch(f"{_SELECT} WHERE opened_by = $1 ORDER BY policy_id", message_id)
        return [_deadline(r) for r in rows]

    # -- finding deadlines to close or move (locked until the caller's transaction ends) -------

    async def lock_by_thread(
        self,
        conn: Conn,
        policy_ids: Sequence[str],
        *,
        threads: Sequence[str],
        messages: Sequence[UUID],
    ) -> list[Deadline]:
        """Unclosed deadlines of these policies in one of these threads (``correlation_id``)
        or opened by one of these messages."""
        rows = await conn.fetch(
            f"""{_SELECT} WHERE id IN (
                    SELECT id FROM sla_deadlines
                    WHERE closed_at IS NULL AND correlation_id = ANY($2::text[])
                    UNION
                    SELECT id FROM sla_deadlines
                    WHERE closed_at IS NULL AND policy_id = ANY($1::text[])
                      AND opened_by = ANY($3::uuid[]))
                AND policy_id = ANY($1::text[])
                ORDER BY id FOR UPDATE""",
            list(policy_ids),
            list(threads),
            list(messages),
        )
        return [_deadline(r) for r in rows]

    async def thread_start(
        self,
        db: Executor,
        policy_id: str,
        *,
        threads: Sequence[str],
        messages: Sequence[UUID],
    ) -> datetime | None:
        """When the latest deadline of ``policy_id`` in one of these threads (or opened by one
        of these messages) started, closed or not; None if there is none."""
        value: datetime | None = await db.fetchval(
            """SELECT start_at FROM sla_deadlines WHERE policy_id = $1
                 AND (correlation_id = ANY($2::text[]) OR opened_by = ANY($3::uuid[]))
               ORDER BY start_at DESC LIMIT 1""",
            policy_id,
            list(threads),
            list(messages),
        )
        return value

    async def lock_by_case(
        self, conn: Conn, policy_ids: Sequence[str], case_id: str
    ) -> list[Deadline]:
        """Unclosed deadlines of these policies in one case."""
        rows = await conn.fetch(
            f"""{_SELECT} WHERE case_id = $2 AND closed_at IS NULL
                AND policy_id = ANY($1::text[]) ORDER BY id FOR UPDATE""",
            list(policy_ids),
            case_id,
        )
        return [_deadline(r) for r in rows]

    async def lock_by_period(
        self, conn: Conn, policy_id: str, period_keys: Sequence[str]
    ) -> list[Deadline]:
        """Unclosed deadlines of a scheduled policy for these periods (``YYYY-MM``)."""
        rows = await conn.fetch(
            f"""{_SELECT} WHERE policy_id = $1 AND period_key = ANY($2::text[])
                AND closed_at IS NULL ORDER BY id FOR UPDATE""",
            policy_id,
            list(period_keys),
        )
        return [_deadline(r) for r in rows]

    # -- the scheduler --------------------------------------------------------------------------

    async def claim_due(self, conn: Conn, now: datetime, *, limit: int) -> list[Deadline]:
        """Open deadlines whose next warning or due instant is at or before ``now``, earliest
        first, locked for this transaction; rows another transaction holds are skipped."""
        rows = await conn.fetch(
            f"""{_SELECT} WHERE state = 'open' AND {_OPEN_ORDER} <= $1
                ORDER BY {_OPEN_ORDER} LIMIT $2 FOR UPDATE SKIP LOCKED""",
            now,
            limit,
        )
        return [_deadline(r) for r in rows]

    async def next_action_at(self, db: Executor) -> datetime | None:
        """When the earliest open deadline next needs the scheduler (None: none is open)."""
        value: datetime | None = await db.fetchval(
            f"""SELECT {_OPEN_ORDER} FROM sla_deadlines WHERE state = 'open'
                ORDER BY {_OPEN_ORDER} LIMIT 1"""
        )
        return value

    async def open_counts(self, db: Executor) -> list[OpenCount]:
        """Open and overdue deadlines by policy and owner (for the gauges)."""
        rows = await db.fetch(
            """SELECT policy_id, owner_agency,
                      count(*) FILTER (WHERE state = 'open') AS open,
                      count(*) FILTER (WHERE state = 'breached') AS overdue
               FROM sla_deadlines
               WHERE state IN ('open', 'breached') AND closed_at IS NULL
               GROUP BY policy_id, owner_agency ORDER BY policy_id, owner_agency"""
        )
        return [OpenCount(**dict(r)) for r in rows]

    async def unclosed(
        self,
        db: Executor,
        *,
        agency: str | None = None,
        breached_only: bool = False,
        limit: int = 1000,
    ) -> list[Deadline]:
        """Open and breached-but-unclosed deadlines, soonest due first; ``agency`` limits them
        to those it owes or waits for."""
        states = ["breached"] if breached_only else ["open", "breached"]
        return await self.listing(db, states=states, unclosed=True, agency=agency, limit=limit)

    async def listing(
        self,
        db: Executor,
        *,
        states: Sequence[str] | None = None,
        unclosed: bool = False,
        agency: str | None = None,
        due_from: datetime | None = None,
        due_before: datetime | None = None,
        limit: int = 1000,
    ) -> list[Deadline]:
        """Deadlines in ``states`` (None: any), soonest due first: only those not closed with
        ``unclosed``, only those ``agency`` owes or waits for, only those due in
        ``[due_from, due_before)`` — history as well as what is open."""
        rows = await db.fetch(
            f"""{_SELECT} WHERE ($1::text[] IS NULL OR state = ANY($1::text[]))
                AND (NOT $2 OR closed_at IS NULL)
                AND ($3::text IS NULL OR owner_agency = $3 OR waiting_agency = $3)
                AND ($4::timestamptz IS NULL OR due_at >= $4)
                AND ($5::timestamptz IS NULL OR due_at < $5)
                ORDER BY due_at, id LIMIT $6""",
            list(states) if states is not None else None,
            unclosed,
            agency,
            due_from,
            due_before,
            limit,
        )
        return [_deadline(r) for r in rows]
