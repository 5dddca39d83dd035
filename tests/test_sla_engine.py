"""The SLA engine on the real broker and database: deadlines opened, moved and closed from its
inbox, warnings and breaches delivered through the router to every party (and audited), sla.met
in time, exactly one breach across a crash and across replicas, and ``casebus sla status``.

Time is an accelerated clock: one simulated day per real second, from Monday 2 March 2026
09:00 in Shanghai (no public holiday near), so a 3-day deadline passes in about 4 seconds.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from buskit import Bus
from prometheus_client import REGISTRY
from slakit import (
    BUREAU,
    CALENDAR,
    ENV_REGULATOR,
    POLICE,
    POLICIES,
    PROC,
    START,
    FixedClock,
    Inboxes,
    JumpingClock,
    answer,
    bus_payload,
    day,
    engine_running,
    make_engine,
    outbox,
    send,
    store,
)

from bus.agencies import load_registry
from bus.audit.log import AuditLog
from bus.party import make_party
from bus.settings import Settings
from bus.signing import load_signer
from bus.sla.calendar import SHANGHAI
from bus.sla.clock import Clock
from bus.sla.deadline import SLA_AGENCY, Deadline, deadline_id
from bus.sla.events import SlaEmitter
from bus.sla.parties import Parties
from bus.sla.scheduler import SlaScheduler

# --- the engine against the database (no broker) ----------------------------------------------


async def test_transfer_and_receipt_open_close_and_open_the_criminal_chain_deadlines(
    settings: Settings, sla_key: Path, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    bureau = make_party(BUREAU, tmp_path / "keys")
    police = make_party(POLICE, tmp_path / "keys")
    clock = FixedClock(START)
    engine = make_engine(settings, sla_key, clock)
    rng = random.Random(1)
    transfer = send(bureau, "criminal.transfer", rng, clock)
    async with pool.acquire() as conn, conn.transaction():
        done = await engine.apply(conn, transfer)
    opened = {d.policy_id: d for d in done.opened}
    assert set(opened) == {"criminal.transfer_after_approval", "criminal.receipt"}
    receipt_deadline = opened["criminal.receipt"]
    assert (receipt_deadline.owner_agency, receipt_deadline.waiting_agency) == (POLICE, BUREAU)
    assert receipt_deadline.due_at == day(3)  # one calendar day, ends at the end of it
    assert receipt_deadline.notify_agencies == (PROC,)
    # The transfer itself closes the 24-hour transfer deadline: it was sent in time.
    [met] = done.emitted
    assert (met.kind, met.recipients, met.sender) == ("sla.met", [BUREAU, POLICE], SLA_AGENCY)

    clock.at = START + timedelta(hours=2)
    receipt = answer(police, "criminal.receipt", rng, clock, to=transfer)
    async with pool.acquire() as conn, conn.transaction():
        again = await engine.apply(conn, transfer)  # the inbox dedups; the engine is safe anyway
        done = await engine.apply(conn, receipt)
    assert again.opened == [] and again.emitted == []
    assert [d.policy_id for d in done.closed] == ["criminal.receipt"]
    assert [e.kind for e in done.emitted] == ["sla.met"]
    [filing] = done.opened
    received_at = bus_payload(receipt)["received_at"]
    assert filing.policy_id == "criminal.filing_decision"
    assert filing.start_at == received_at
    assert filing.due_at == day(5)  # 3 calendar days from the day of receipt
    assert list(filing.warnings_at) == [
        received_at + (day(5) - received_at) / 2,
        day(4),  # one working day before
    ]
    assert [e.kind for e in await outbox(pool)] == ["sla.met", "sla.met"]


async def test_a_late_step_breaches_once_and_only_the_owing_agency_closes(
    settings: Settings, sla_key: Path, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    bureau = make_party(BUREAU, tmp_path / "keys")
    police = make_party(POLICE, tmp_path / "keys")
    eco = make_party("kmg.police.eco", tmp_path / "keys")
    clock = FixedClock(START)
    engine = make_engine(settings, sla_key, clock)
    rng = random.Random(2)
    transfer = send(bureau, "criminal.transfer", rng, clock)
    async with pool.acquire() as conn, conn.transaction():
        await engine.apply(conn, transfer)
    clock.at = day(4, 10)  # the receipt was due at the end of 3 March
    wrong = answer(eco, "criminal.receipt", rng, clock, to=transfer)
    late = answer(police, "criminal.receipt", rng, clock, to=transfer)
    async with pool.acquire() as conn, conn.transaction():
        ignored = await engine.apply(conn, wrong)
        done = await engine.apply(conn, late)
    assert ignored.closed == []
    [closed] = [d for d in done.closed if d.policy_id == "criminal.receipt"]
    assert (closed.state, closed.closed_by) == ("breached", late.message_id)
    [breach] = done.emitted
    assert breach.kind == "sla.breach"
    assert breach.recipients == [POLICE, BUREAU, PROC]
    assert bus_payload(breach)["occurred_at"] == day(3)
    # The scheduler finds nothing left to report about it.
    async with pool.acquire() as conn, conn.transaction():
        due = await store.claim_due(conn, day(9), limit=50)
    assert "criminal.receipt" not in {d.policy_id for d in due}
    assert [e.message_id for e in await outbox(pool, "sla.breach")] == [breach.message_id]


async def test_a_notice_to_no_police_agency_is_skipped_not_retried(
    settings: Settings, sla_key: Path, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    proc = make_party(PROC, tmp_path / "keys")
    clock = FixedClock(START)
    engine = make_engine(settings, sla_key, clock)
    rng = random.Random(3)
    # Addressed to the bureau only: the registry has two police agencies, so none owes it.
    notice = send(proc, "supervision.notice", rng, clock, recipients=[BUREAU])
    to_police = send(proc, "supervision.notice", rng, clock, recipients=[POLICE, BUREAU])
    labels = {"policy": "supervision.explanation", "reason": "no_party"}
    before = REGISTRY.get_sample_value("casebus_sla_skipped_total", labels) or 0.0
    async with pool.acquire() as conn, conn.transaction():
        skipped = await engine.apply(conn, notice)  # does not raise: the inbox moves on
        done = await engine.apply(conn, to_police)
    assert skipped.opened == []
    assert REGISTRY.get_sample_value("casebus_sla_skipped_total", labels) == before + 1
    [deadline] = done.opened
    assert (deadline.owner_agency, deadline.waiting_agency) == (POLICE, PROC)
    assert deadline.due_at == bus_payload(to_police)["due_at"]  # the notice's own due date


async def test_a_due_instant_at_the_ends_of_the_calendar_is_skipped_not_retried(
    settings: Settings, sla_key: Path, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    # The adapters accept any instant in the years 1 to 9999 UTC; in Shanghai, or counted back
    # two working days for a warning, the ends leave the calendar. The engine must skip such a
    # deadline (a bad field), not fail on the message and retry it forever.
    bureau = make_party(BUREAU, tmp_path / "keys")
    regulator = make_party(ENV_REGULATOR, tmp_path / "keys")
    clock = FixedClock(START)
    engine = make_engine(settings, sla_key, clock)
    rng = random.Random(15)
    labels = {"policy": "opinion.response", "reason": "bad_field"}
    before = REGISTRY.get_sample_value("casebus_sla_skipped_total", labels) or 0.0
    ends = [datetime(9999, 12, 31, 23, 59, 59, 999000, UTC), datetime(1, 1, 1, tzinfo=UTC)]
    requests = [
        send(bureau, "opinion.request", rng, clock, recipients=[ENV_REGULATOR], due_at=end)
        for end in ends
    ]
    fine = send(bureau, "opinion.request", rng, clock, recipients=[ENV_REGULATOR])
    async with pool.acquire() as conn, conn.transaction():
        for request in requests:
            assert (await engine.apply(conn, request)).opened == []
        [deadline] = (await engine.apply(conn, fine)).opened
    moves = [
        answer(
            regulator,
            "opinion.delegated",
            rng,
            clock,
            to=fine,
            recipients=[BUREAU],
            causation_id=str(fine.message_id),
            expected_at=end,
        )
        for end in ends
    ]
    async with pool.acquire() as conn, conn.transaction():
        for move in moves:
            assert (await engine.apply(conn, move)).moved == []
    assert REGISTRY.get_sample_value("casebus_sla_skipped_total", labels) == before + 4
    [still] = await store.opened_by(pool, fine.message_id)
    assert still.due_at == deadline.due_at and still.moves == deadline.moves


async def test_monthly_penalty_feedback_deadlines_open_and_a_report_closes_its_own(
    settings: Settings, sla_key: Path, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    bureau = make_party(BUREAU, tmp_path / "keys")
    clock = FixedClock(day(20, 10))
    engine = make_engine(settings, sla_key, clock)
    scheduler = make_scheduler(settings, sla_key, pool, clock)
    await scheduler.tick()
    await scheduler.tick()  # once a month
    rows = await pool.fetch(
        "SELECT owner_agency, waiting_agency, due_at FROM sla_deadlines WHERE policy_id = $1",
        "penalty.feedback",
    )
    regulators = [a.id for a in load_registry(settings.agencies_file).of_kind("regulator")]
    assert sorted(r["waiting_agency"] for r in rows) == sorted(regulators)
    assert {r["owner_agency"] for r in rows} == {BUREAU}  # squadrons report through it
    assert {r["due_at"] for r in rows} == {datetime(2026, 4, 10, 23, 59, 59, tzinfo=SHANGHAI)}
    report = send(
        bureau,
        "penalty.feedback",
        random.Random(4),
        clock,
        recipients=["ygh.regulator.planning"],
        period_start=datetime(2026, 3, 1).date(),
        period_end=datetime(2026, 3, 20).date(),
    )
    async with pool.acquire() as conn, conn.transaction():
        done = await engine.apply(conn, report)
    assert [(d.waiting_agency, d.state) for d in done.closed] == [("ygh.regulator.planning", "met")]


def make_scheduler(
    settings: Settings, sla_key: Path, pool: asyncpg.Pool, clock: Clock, **kw: Any
) -> SlaScheduler:
    emitter = SlaEmitter(settings, signer=load_signer(sla_key, agency_id=SLA_AGENCY))
    return SlaScheduler(
        pool=pool,
        emitter=emitter,
        clock=clock,
        policies=POLICIES,
        parties=Parties(load_registry(settings.agencies_file)),
        calendar=CALENDAR,
        **kw,
    )


async def test_two_scheduler_replicas_emit_each_warning_and_breach_once(
    settings: Settings, sla_key: Path, pool: asyncpg.Pool
) -> None:
    n = 400
    rows = [
        Deadline(
            id=deadline_id("criminal.filing_decision", opened),
            policy_id="criminal.filing_decision",
            case_id=f"YGH-2026-{i:04d}",
            correlation_id=str(opened),
            opened_by=opened,
            opened_kind="criminal.receipt",
            opened_at=START,
            start_at=START,
            due_at=START + timedelta(hours=2 + i % 7),
            owner_agency=POLICE,
            waiting_agency=BUREAU,
            notify_procuratorate=True,
            notify_agencies=(PROC,),
            warnings_at=(START + timedelta(hours=1), START + timedelta(hours=1, minutes=30)),
        )
        for i, opened in enumerate(uuid.uuid4() for _ in range(n))
    ]
    async with pool.acquire() as conn:
        await store.insert_many(conn, rows)
    clock = FixedClock(START + timedelta(hours=1, minutes=10))
    a = make_scheduler(settings, sla_key, pool, clock, batch_size=15)
    b = make_scheduler(settings, sla_key, pool, clock, batch_size=15)
    first = await asyncio.gather(a.tick(), b.tick())  # the first warning, n of them
    clock.at = START + timedelta(hours=12)  # past every warning and every due instant
    second = await asyncio.gather(a.tick(), b.tick(), a.tick(), b.tick())
    assert sum(r.warnings for r in first) == n
    assert all(r.warnings > 0 for r in first), "both replicas should have claimed work"
    assert sum(r.breaches for r in second) == n and sum(r.warnings for r in second) == 0
    events = await outbox(pool)
    assert Counter(e.kind for e in events) == {"sla.warning": n, "sla.breach": n}
    assert Counter(bus_payload(e)["deadline_id"] for e in events) == {str(d.id): 2 for d in rows}
    states = await pool.fetch(
        "SELECT state, count(*) AS n FROM sla_deadlines WHERE policy_id = $1 GROUP BY state",
        "criminal.filing_decision",
    )
    assert [(r["state"], r["n"]) for r in states] == [("breached", n)]


# --- end to end: the router delivers what the engine emits -------------------------------------
async def _open_deadline(bus: Bus, policy: str, case_id: str) -> asyncpg.Record:
    """The ``policy`` deadline of ``case_id`` once the engine has opened it."""
    conn = await asyncpg.connect(bus.settings.database_url)
    try:
        for _ in range(300):
            row = await conn.fetchrow(
                "SELECT warnings_at, due_at FROM sla_deadlines WHERE policy_id = $1"
                " AND case_id = $2 AND state = 'open'",
                policy,
                case_id,
            )
            if row is not None:
                return row
            await asyncio.sleep(0.1)
    finally:
        await conn.close()
    raise AssertionError(f"no open {policy} deadline for {case_id} in 30 s")


async def test_transfer_without_filing_decision_warns_then_breach_reaches_all_three_and_audit(
    bus: Bus, sla_key: Path
) -> None:
    bureau, police = await bus.party(BUREAU), await bus.party(POLICE)
    # The test moves the clock past each instant in turn: on a clock that runs on by itself (a
    # simulated day per second), a scheduler tick the machine delays by a second sees both
    # warning instants passed at once and rightly sends one warning, and the test saw 1, not 2.
    clock = JumpingClock(START)
    rng = random.Random(10)
    policy = "criminal.filing_decision"
    async with (
        Inboxes(bus, [BUREAU, POLICE, PROC]) as inboxes,
        bus.router(),
        engine_running(bus, sla_key, clock, replicas=2),
    ):
        transfer = send(bureau, "criminal.transfer", rng, clock)
        receipt = answer(police, "criminal.receipt", rng, clock, to=transfer)
        await bus.submit(transfer, receipt)
        opened = await _open_deadline(bus, policy, transfer.case_id)
        assert len(opened["warnings_at"]) == 2, opened  # half time, then one working day before
        for n, instant in enumerate([*opened["warnings_at"], opened["due_at"]], start=1):
            clock.at = instant + timedelta(seconds=1)
            await inboxes.until(
                lambda n=n: all(  # type: ignore[misc]
                    len(inboxes.sla(a, "sla.warning", policy))
                    + len(inboxes.sla(a, "sla.breach", policy))
                    >= n
                    for a in (BUREAU, POLICE)
                ),
                timeout_s=30,
            )
        await inboxes.until(lambda: bool(inboxes.sla(PROC, "sla.breach", policy)), timeout_s=30)
        await asyncio.sleep(1.5)  # anything extra would show up now
    for agency in (BUREAU, POLICE):
        warnings = inboxes.sla(agency, "sla.warning", policy)
        assert len(warnings) == 2, agency  # half time, then one working day before
        assert len(inboxes.sla(agency, "sla.breach", policy)) == 1, agency
    [breach] = inboxes.sla(PROC, "sla.breach", policy)
    assert inboxes.sla(PROC, "sla.warning", policy) == []  # warnings go to the parties only
    body = bus.payload(breach)
    assert (body.owner_agency, body.waiting_agency) == (POLICE, BUREAU)  # type: ignore[attr-defined]
    assert body.due_at == day(5) and body.opened_by == receipt.message_id  # type: ignore[attr-defined]
    assert (breach.sender, breach.recipients) == (SLA_AGENCY, [POLICE, BUREAU, PROC])
    warning_times = [bus.payload(w).occurred_at for w in inboxes.sla(POLICE, "sla.warning", policy)]  # type: ignore[attr-defined]
    assert warning_times[1] == day(4)
    # Both the receipt and the transfer deadline were met, each reported once.
    assert len(inboxes.sla(BUREAU, "sla.met", "criminal.receipt")) == 1
    assert len(inboxes.sla(BUREAU, "sla.met", "criminal.transfer_after_approval")) == 1
    pool = await asyncpg.create_pool(bus.settings.database_url, min_size=1, max_size=2)
    try:
        for event in (breach, *inboxes.sla(POLICE, "sla.warning", policy)):
            assert await AuditLog().entry(pool, event.message_id, "accepted")
            assert await AuditLog().entry(pool, event.message_id, "delivered")
        [row] = await store.opened_by(pool, receipt.message_id)
        assert (row.state, row.warnings_sent, row.breach_emitted_at is not None) == (
            "breached",
            2,
            True,
        )
    finally:
        await pool.close()


async def test_a_filing_decision_in_time_is_met_and_never_breached(bus: Bus, sla_key: Path) -> None:
    bureau, police = await bus.party(BUREAU), await bus.party(POLICE)
    # The clock stands still while the messages are routed and applied, then jumps past the
    # due instant: on a clock running a simulated day per second, a loaded machine took longer
    # than the deadline's simulated days to deliver the decision, and it breached first.
    clock = JumpingClock(START)
    rng = random.Random(11)
    policy = "criminal.filing_decision"
    async with (
        Inboxes(bus, [BUREAU, POLICE]) as inboxes,
        bus.router(),
        engine_running(bus, sla_key, clock),
    ):
        transfer = send(bureau, "criminal.transfer", rng, clock)
        receipt = answer(police, "criminal.receipt", rng, clock, to=transfer)
        await bus.submit(transfer, receipt)
        await inboxes.until(lambda: bool(inboxes.sla(BUREAU, "sla.met", "criminal.receipt")))
        decision = answer(
            police,
            "criminal.filing_decision",
            rng,
            clock,
            to=transfer,
            causation_id=str(receipt.message_id),
            decision="FILED",
        )
        await bus.submit(decision)
        await inboxes.until(lambda: bool(inboxes.sla(BUREAU, "sla.met", policy)))
        clock.at = day(6, 12)  # well past the due instant
        await asyncio.sleep(1.5)  # ticks of the scheduler at the new time; a breach would show
        pool = await asyncpg.create_pool(bus.settings.database_url, min_size=1, max_size=2)
        try:
            [row] = await store.opened_by(pool, receipt.message_id)
        finally:
            await pool.close()
    assert row.due_at < day(6, 12) and row.state == "met", row
    assert inboxes.sla(BUREAU, "sla.breach", policy) == []
    assert inboxes.sla(POLICE, "sla.breach", policy) == []
    [met] = inboxes.sla(POLICE, "sla.met", policy)
    assert bus.payload(met).closed_by == decision.message_id  # type: ignore[attr-defined]
    assert met.causation_id == str(decision.message_id)


async def test_opinion_delegated_moves_the_opinion_deadline_to_its_expected_at(
    bus: Bus, sla_key: Path
) -> None:
    bureau, regulator = await bus.party(BUREAU), await bus.party(ENV_REGULATOR)
    # A clock that moves only when the test moves it: on one running a simulated day per
    # second, a loaded machine delivered the delegation after the first due (day 4, 18:00) had
    # passed, and the deadline breached before it could move (CI, load average 16).
    clock = JumpingClock(START)
    rng = random.Random(12)
    policy = "opinion.response"
    asked = day(4, 18, 0, 0)
    async with (
        Inboxes(bus, [BUREAU, ENV_REGULATOR]) as inboxes,
        bus.router(),
        engine_running(bus, sla_key, clock),
    ):
        request = send(
            bureau, "opinion.request", rng, clock, recipients=[ENV_REGULATOR], due_at=asked
        )
        await bus.submit(request)
        pool = await asyncpg.create_pool(bus.settings.database_url, min_size=1, max_size=2)
        try:
            for _ in range(600):
                opened = await store.opened_by(pool, request.message_id)
                if opened:
                    break
                await asyncio.sleep(0.05)
            [deadline] = opened
            assert deadline.due_at == asked  # the request's own due_at
            delegated = answer(
                regulator,
                "opinion.delegated",
                rng,
                clock,
                to=request,
                recipients=[BUREAU],
                causation_id=str(request.message_id),
                expected_at=day(25, 17, 30, 0),
            )
            await bus.submit(delegated)
            for _ in range(600):
                [moved] = await store.opened_by(pool, request.message_id)
                if moved.moves:
                    break
                await asyncio.sleep(0.05)
            # Past the first due and the new period's first warning: the warning's arrival
            # shows the scheduler has looked at a time after the first due.
            clock.at = moved.warnings_at[0] + timedelta(seconds=1)
            await inboxes.until(
                lambda: bool(inboxes.sla(ENV_REGULATOR, "sla.warning", policy)), timeout_s=30
            )
            [after] = await store.opened_by(pool, request.message_id)
        finally:
            await pool.close()
    assert (moved.due_at, moved.moved_by, moved.state) == (
        day(25, 17, 30, 0),
        delegated.message_id,
        "open",
    )
    assert after.state == "open"
    assert inboxes.sla(ENV_REGULATOR, "sla.breach", policy) == []
    # The new period's warnings: half-way from the start, and two working days before.
    assert list(moved.warnings_at) == [
        deadline.start_at + (day(25, 17, 30, 0) - deadline.start_at) / 2,
        day(23, 17, 30, 0),
    ]
