"""Deadlines on the real PostgreSQL: idempotent opening, claiming for the scheduler (with
SKIP LOCKED between replicas), finding what a message closes, and the pure steps a deadline
goes through (warn, breach, lapse, close, move)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from bus.sla.deadline import (
    Deadline,
    close_step,
    deadline_id,
    due_step,
    event_message_id,
    move_step,
)
from bus.sla.store import DeadlineStore

T0 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)  # Monday 09:00 in Shanghai
H = timedelta(hours=1)
POLICE = "ygh.police.bureau"
BUREAU = "ygh.enforcement.bureau"
PROC = "ygh.procuratorate"


def make(
    policy: str = "criminal.filing_decision",
    *,
    due: datetime = T0 + 72 * H,
    warnings: tuple[datetime, ...] = (T0 + 36 * H, T0 + 60 * H),
    case_id: str = "YGH-2026-0001",
    correlation_id: str | None = None,
    opened_by: uuid.UUID | None = None,
    owner: str = POLICE,
    waiting: str = BUREAU,
    **changes: object,
) -> Deadline:
    opened = opened_by or uuid.uuid4()
    deadline = Deadline(
        id=deadline_id(policy, opened),
        policy_id=policy,
        case_id=case_id,
        correlation_id=correlation_id or str(opened),
        opened_by=opened,
        opened_kind="criminal.receipt",
        opened_at=T0,
        start_at=T0,
        due_at=due,
        owner_agency=owner,
        waiting_agency=waiting,
        notify_procuratorate=True,
        notify_agencies=(PROC,),
        warnings_at=warnings,
    )
    return replace(deadline, **changes)  # type: ignore[arg-type]


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    yield pool
    await pool.close()


store = DeadlineStore()


# --- pure steps --------------------------------------------------------------------------------


def test_passed_warning_points_become_one_warning_numbered_by_warnings_sent() -> None:
    d = make(warnings=(T0 + H, T0 + 2 * H, T0 + 5 * H))
    after, emission = due_step(d, T0 + 3 * H)
    assert emission is not None
    assert (emission.kind, emission.n, emission.occurred_at) == ("sla.warning", 0, T0 + 2 * H)
    assert after.warnings_at == (T0 + 5 * H,) and after.warnings_sent == 1
    assert after.next_action_at == T0 + 5 * H
    again, second = due_step(after, T0 + 6 * H)
    assert second is not None and second.n == 1 and again.next_action_at == d.due_at


def test_past_due_a_duty_breaches_once_and_a_window_lapses_silently() -> None:
    d = make(warnings=(T0 + H,))
    breached, emission = due_step(d, d.due_at)
    assert emission is not None and emission.kind == "sla.breach"
    assert emission.occurred_at == d.due_at and emission.causation_id == d.opened_by
    assert (breached.state, breached.warnings_at, breached.next_action_at) == ("breached", (), None)
    assert due_step(breached, d.due_at + H) == (breached, None)
    lapsed, nothing = due_step(replace(d, obligation="window"), d.due_at + H)
    assert nothing is None and lapsed.state == "lapsed"


def test_closing_in_time_is_met_late_is_a_breach_once_and_a_late_window_lapses() -> None:
    d = make()
    closer = uuid.uuid4()
    met, emission = close_step(d, closed_by=closer, kind="x", closed_at=d.due_at, now=T0)
    assert met.state == "met" and emission is not None
    assert (emission.kind, emission.causation_id) == ("sla.met", closer)
    late, breach = close_step(d, closed_by=closer, kind="x", closed_at=d.due_at + H, now=T0)
    assert late.state == "breached" and breach is not None and breach.kind == "sla.breach"
    assert late.closed_at == d.due_at + H
    # The scheduler already reported the breach: a late close only records the step.
    breached, _ = due_step(d, d.due_at)
    recorded, nothing = close_step(
        breached, closed_by=closer, kind="x", closed_at=d.due_at + H, now=T0
    )
    assert nothing is None and recorded.state == "breached" and recorded.closed_by == closer
    # ...but a step taken in time that reached the engine late is met after all.
    corrected, met_late = close_step(
        breached, closed_by=closer, kind="x", closed_at=d.due_at - H, now=d.due_at + H
    )
    assert corrected.state == "met" and met_late is not None and met_late.kind == "sla.met"
    window, none = close_step(
        replace(d, obligation="window"), closed_by=closer, kind="x", closed_at=d.due_at + H, now=T0
    )
    assert none is None and window.state == "lapsed"
    assert close_step(met, closed_by=uuid.uuid4(), kind="x", closed_at=T0, now=T0) == (met, None)


def test_moving_resets_the_due_instant_and_keeps_only_future_warnings() -> None:
    d = make()
    later = T0 + 30 * 24 * H
    moved = move_step(
        d,
        due_at=later,
        warnings_at=[T0 + H, T0 + 15 * 24 * H],
        moved_by=uuid.uuid4(),
        now=T0 + 2 * H,
    )
    assert (moved.due_at, moved.warnings_at, moved.moves) == (later, (T0 + 15 * 24 * H,), 1)
    breached, _ = due_step(d, d.due_at)
    assert (
        move_step(breached, due_at=later, warnings_at=[], moved_by=uuid.uuid4(), now=T0) is breached
    )


def test_event_ids_depend_only_on_deadline_kind_and_number() -> None:
    d = make()
    assert event_message_id(d.id, "sla.warning", 0) == event_message_id(d.id, "sla.warning", 0)
    ids = {event_message_id(d.id, k, n) for k in ("sla.warning", "sla.breach") for n in (0, 1)}
    assert len(ids) == 4
    assert d.recipients("sla.breach") == [POLICE, BUREAU, PROC]
    assert d.recipients("sla.warning") == [POLICE, BUREAU]


# --- the table ---------------------------------------------------------------------------------


async def test_opening_twice_for_the_same_policy_and_message_keeps_one_row(
    pool: asyncpg.Pool,
) -> None:
    d = make()
    other_policy = make("criminal.receipt", opened_by=d.opened_by)
    async with pool.acquire() as conn:
        assert await store.insert(conn, d)
        assert not await store.insert(conn, replace(d, due_at=T0 + 99 * H))
        assert await store.insert(conn, other_policy)
    assert await store.get(pool, d.id) == d
    assert [x.policy_id for x in await store.opened_by(pool, d.opened_by)] == [
        "criminal.filing_decision",
        "criminal.receipt",
    ]
    assert await pool.fetchval("SELECT next_warning_at FROM sla_deadlines WHERE id = $1", d.id) == (
        T0 + 36 * H
    )


async def test_claim_takes_due_open_rows_earliest_first_and_saving_moves_them_on(
    pool: asyncpg.Pool,
) -> None:
    warn_first = make(warnings=(T0 + H,), due=T0 + 10 * H)
    due_first = make(warnings=(), due=T0 + 2 * H)
    later = make(warnings=(T0 + 50 * H,), due=T0 + 72 * H)
    done = make(warnings=(), due=T0, state="met", closed_by=uuid.uuid4(), closed_at=T0)
    async with pool.acquire() as conn:
        for d in (later, due_first, warn_first, done):
            await store.insert(conn, d)
        async with conn.transaction():
            claimed = await store.claim_due(conn, T0 + 3 * H, limit=10)
            assert [c.id for c in claimed] == [warn_first.id, due_first.id]
            await store.save(conn, [due_step(c, T0 + 3 * H)[0] for c in claimed])
    assert await store.next_action_at(pool) == T0 + 10 * H
    assert (await store.get(pool, due_first.id)).state == "breached"  # type: ignore[union-attr]
    async with pool.acquire() as conn, conn.transaction():
        assert await store.claim_due(conn, T0 + 3 * H, limit=10) == []


async def test_replicas_claim_disjoint_rows_with_skip_locked(pool: asyncpg.Pool) -> None:
    rows = [make(warnings=(), due=T0 + i * H) for i in range(6)]
    async with pool.acquire() as conn:
        await store.insert_many(conn, rows)
    a = await pool.acquire()
    b = await pool.acquire()
    try:
        ta = a.transaction()
        tb = b.transaction()
        await ta.start()
        await tb.start()
        first = await store.claim_due(a, T0 + 10 * H, limit=4)
        second = await store.claim_due(b, T0 + 10 * H, limit=4)
        assert len(first) == 4 and len(second) == 2
        assert not {d.id for d in first} & {d.id for d in second}
        await ta.rollback()
        await tb.rollback()
    finally:
        await pool.release(a)
        await pool.release(b)


async def test_what_a_message_closes_by_thread_opening_message_case_and_period(
    pool: asyncpg.Pool,
) -> None:
    thread = "thread-1"
    in_thread = make(correlation_id=thread)
    opened_by_cause = make()
    same_case = make("criminal.reconsideration_request", case_id="YGH-7")
    monthly = make(
        "penalty.feedback", period_key="2026-03", owner=BUREAU, waiting="ygh.regulator.planning"
    )
    closed = make(correlation_id=thread, closed_by=uuid.uuid4(), closed_at=T0, state="met")
    async with pool.acquire() as conn:
        await store.insert_many(conn, [in_thread, opened_by_cause, same_case, monthly, closed])
        async with conn.transaction():
            found = await store.lock_by_thread(
                conn,
                ["criminal.filing_decision"],
                threads=[thread],
                messages=[opened_by_cause.opened_by],
            )
            assert {d.id for d in found} == {in_thread.id, opened_by_cause.id}
            assert (
                await store.lock_by_thread(
                    conn, ["criminal.receipt"], threads=[thread], messages=[]
                )
                == []
            )
            by_case = await store.lock_by_case(conn, ["criminal.reconsideration_request"], "YGH-7")
            assert [d.id for d in by_case] == [same_case.id]
            by_period = await store.lock_by_period(conn, "penalty.feedback", ["2026-03"])
            assert [d.id for d in by_period] == [monthly.id]


async def test_counts_and_the_status_listing(pool: asyncpg.Pool) -> None:
    a = make(due=T0 + 5 * H)
    b = make(due=T0 + 2 * H, owner=BUREAU, waiting=POLICE, policy="criminal.evidence_handover")
    c = make(due=T0 + H)
    async with pool.acquire() as conn:
        await store.insert_many(conn, [a, b, c])
        await store.save(conn, [due_step(c, T0 + 2 * H)[0]])
    counts = {
        (x.policy_id, x.owner_agency): (x.open, x.overdue) for x in await store.open_counts(pool)
    }
    assert counts == {
        ("criminal.filing_decision", POLICE): (1, 1),
        ("criminal.evidence_handover", BUREAU): (1, 0),
    }
    assert [d.id for d in await store.unclosed(pool)] == [c.id, b.id, a.id]
    assert [d.id for d in await store.unclosed(pool, breached_only=True)] == [c.id]
    assert [d.id for d in await store.unclosed(pool, agency=BUREAU, limit=2)] == [c.id, b.id]
    assert [d.id for d in await store.unclosed(pool, agency=PROC)] == []


async def test_the_scheduler_query_uses_its_partial_index(pool: asyncpg.Pool) -> None:
    rows = [make(warnings=(), due=T0 + i * H) for i in range(3000)]
    async with pool.acquire() as conn:
        await store.insert_many(conn, rows)
        await conn.execute("ANALYZE sla_deadlines")
        plan = await conn.fetch(
            """EXPLAIN SELECT id FROM sla_deadlines
               WHERE state = 'open' AND least(next_warning_at, due_at) <= $1
               ORDER BY least(next_warning_at, due_at) LIMIT 200 FOR UPDATE SKIP LOCKED""",
            T0 + 3 * H,
        )
    assert "sla_deadlines_next_action" in "\n".join(r[0] for r in plan)
