"""The SLA scheduler: emits sla.warning and sla.breach when their instant comes.

Exactly once, with any number of replicas and crashes: each round claims due deadlines with
``SELECT ... FOR UPDATE SKIP LOCKED`` and, in the SAME transaction, adds the signed events to
the outbox and writes the deadlines' next state. Either both commit or neither does; a claimed
row is invisible to the other replicas until then, and once committed it is no longer due. The
event's message id is ``uuid5(deadline id, "<kind>/<n>")``, so the same step always yields the
same message, and the router drops a copy by id should one ever be published twice.

Time is the injectable :class:`~bus.sla.clock.Clock`: the scheduler sleeps until the earliest
next action (by that clock), until a committed change NOTIFYs it, or for ``poll_interval_s``
real seconds, whichever comes first.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import asyncpg
import structlog
from asyncpg.pool import PoolConnectionProxy

from bus import failpoints
from bus.errors import ConfigError
from bus.lifecycle import EQUAL_JITTER, Backoff, Stoppable
from bus.sla import metrics
from bus.sla.calendar import SHANGHAI, WorkCalendar
from bus.sla.clock import Clock
from bus.sla.deadline import SLA_NAMESPACE, Deadline, Emission, deadline_id, due_step
from bus.sla.engine import NOTIFY_CHANNEL
from bus.sla.events import SlaEmitter
from bus.sla.parties import Parties
from bus.sla.policy import Policy, PolicySet
from bus.sla.store import DeadlineStore

__all__ = ["Emitted", "SlaScheduler", "TickResult", "scheduled_deadlines"]

log = structlog.get_logger("casebus.sla")


@dataclass(frozen=True, slots=True)
class Emitted:
    """An event the scheduler committed to the outbox, and when (by its clock) it did."""

    deadline: Deadline
    emission: Emission
    committed_at: datetime


@dataclass(frozen=True, slots=True)
class TickResult:
    """What one tick did."""

    warnings: int
    breaches: int
    lapsed: int
    next_action_at: datetime | None


def scheduled_deadlines(
    policy: Policy,
    year: int,
    month: int,
    *,
    parties: Parties,
    calendar: WorkCalendar,
    now: datetime,
) -> list[Deadline]:
    """The deadlines of a monthly policy for reporting month ``year``-``month``: one per owing
    agency (top-level agencies of the owner kind) and waiting agency."""
    period = f"{year:04d}-{month:02d}"
    start = datetime(year, month, 1, tzinfo=SHANGHAI)
    due = policy.due_for_month(year, month, calendar=calendar)
    warnings = tuple(policy.warning_instants(start, due, calendar=calendar))
    out = []
    for owner in parties.top_level(policy.owner):
        for waiting in parties.of_kind(policy.waiting):
            opened_by = uuid.uuid5(SLA_NAMESPACE, f"{policy.id}/{period}/{owner}/{waiting}")
            out.append(
                Deadline(
                    id=deadline_id(policy.id, opened_by),
                    policy_id=policy.id,
                    case_id=f"{policy.id}:{period}",
                    correlation_id=f"{policy.id}:{period}:{owner}:{waiting}",
                    opened_by=opened_by,
                    opened_kind="schedule",
                    opened_at=now,
                    start_at=start,
                    due_at=due,
                    owner_agency=owner,
                    waiting_agency=waiting,
                    period_key=period,
                    notify_procuratorate=policy.notify_procuratorate,
                    obligation=policy.obligation,
                    warnings_at=warnings,
                )
            )
    return out


_RETRY: Final = Backoff(initial_s=0.2, max_s=10.0, jitter=EQUAL_JITTER)
"""After a failed tick (the database away): wait, then tick again."""


class SlaScheduler(Stoppable):
    """Claims due deadlines and emits their events; run one per engine replica, any number."""

    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        emitter: SlaEmitter,
        clock: Clock,
        policies: PolicySet,
        parties: Parties,
        calendar: WorkCalendar,
        store: DeadlineStore | None = None,
        batch_size: int = 200,
        poll_interval_s: float = 1.0,
        metrics_interval_s: float = 15.0,
        on_emitted: Callable[[], None] | None = None,
        on_committed: Callable[[Sequence[Emitted]], None] | None = None,
    ) -> None:
        if batch_size < 1 or poll_interval_s <= 0 or metrics_interval_s <= 0:
            raise ConfigError("batch_size must be >= 1 and the intervals > 0")
        super().__init__()
        self._pool = pool
        self._emitter = emitter
        self._clock = clock
        self._scheduled = [p for p in policies if p.schedule is not None]
        self._parties = parties
        self._calendar = calendar
        self._store = store if store is not None else DeadlineStore()
        self._batch_size = batch_size
        self._poll_interval_s = poll_interval_s
        self._metrics_interval_s = metrics_interval_s
        self._on_emitted = on_emitted
        self._on_committed = on_committed
        self._ensured: tuple[int, int] | None = None
        self._gauge_labels: set[tuple[str, str]] = set()
        self._wake = asyncio.Event()

    def stop(self) -> None:
        """Finish the round in flight and return from :meth:`run`."""
        self.request_stop()

    def request_stop(self) -> None:
        """Ask :meth:`run` to finish the round in flight; a wait for the next action ends."""
        super().request_stop()
        self._wake.set()

    # -- one tick -------------------------------------------------------------------------------

    async def tick(self) -> TickResult:
        """Emit everything due by the clock's now, in rounds of ``batch_size`` transactions."""
        started = time.perf_counter()
        await self._ensure_scheduled()
        totals = {"sla.warning": 0, "sla.breach": 0, "lapsed": 0}
        while True:
            claimed, emitted, lapsed = await self._round()
            for event in emitted:
                totals[event.emission.kind] += 1
            totals["lapsed"] += len(lapsed)
            if claimed < self._batch_size:
                break
        next_at = await self._store.next_action_at(self._pool)
        metrics.TICK.observe(time.perf_counter() - started)
        return TickResult(totals["sla.warning"], totals["sla.breach"], totals["lapsed"], next_at)

    async def _round(self) -> tuple[int, list[Emitted], list[Deadline]]:
        """One transaction: claim, step, emit, save, commit; then count, log and tell."""
        now = self._clock.now()
        steps: list[tuple[Deadline, Emission]] = []
        lapsed: list[Deadline] = []
        async with self._pool.acquire() as conn, conn.transaction():
            claimed = await self._store.claim_due(conn, now, limit=self._batch_size)
            changed = []
            for deadline in claimed:
                after, emission = due_step(deadline, now)
                if after == deadline:
                    continue
                changed.append(after)
                if emission is not None:
                    await self._emitter.emit(conn, after, emission, now=now)
                    steps.append((after, emission))
                    failpoints.hit(f"{emission.kind}.before_commit")
                elif after.state == "lapsed":
                    lapsed.append(after)
            await self._store.save(conn, changed)
        committed_at = self._clock.now()
        emitted = [Emitted(d, e, committed_at) for d, e in steps]
        for event in emitted:
            failpoints.hit(f"{event.emission.kind}.after_commit")
            self._record(event)
        for deadline in lapsed:
            metrics.LAPSED.labels(policy=deadline.policy_id).inc()
            log.info("sla.lapsed", deadline_id=str(deadline.id), policy=deadline.policy_id)
        if emitted:
            if self._on_emitted is not None:
                self._on_emitted()
            if self._on_committed is not None:
                self._on_committed(emitted)
        return len(claimed), emitted, lapsed

    def _record(self, event: Emitted) -> None:
        deadline, emission = event.deadline, event.emission
        counter = metrics.BREACHES if emission.kind == "sla.breach" else metrics.WARNINGS
        counter.labels(policy=deadline.policy_id).inc()
        delay = (event.committed_at - emission.occurred_at).total_seconds()
        metrics.EMISSION_DELAY.labels(kind=emission.kind).observe(max(0.0, delay))
        log.info(
            "sla.breached" if emission.kind == "sla.breach" else "sla.warned",
            deadline_id=str(deadline.id),
            policy=deadline.policy_id,
            case_id=deadline.case_id,
            owner=deadline.owner_agency,
            due_at=deadline.due_at.isoformat(),
            n=emission.n,
        )

    async def _ensure_scheduled(self) -> None:
        """Open this month's deadlines of the monthly policies (once per month and process)."""
        if not self._scheduled:
            return
        now = self._clock.now()
        local = now.astimezone(SHANGHAI)
        month = (local.year, local.month)
        if month == self._ensured:
            return
        deadlines = [
            d
            for policy in self._scheduled
            for d in scheduled_deadlines(
                policy, *month, parties=self._parties, calendar=self._calendar, now=now
            )
        ]
        async with self._pool.acquire() as conn, conn.transaction():
            await self._store.insert_many(conn, deadlines)
        self._ensured = month

    async def refresh_gauges(self) -> None:
        """Set the open and overdue gauges from the table."""
        seen = set()
        for count in await self._store.open_counts(self._pool):
            labels = (count.policy_id, count.owner_agency)
            seen.add(labels)
            metrics.OPEN.labels(*labels).set(count.open)
            metrics.OVERDUE.labels(*labels).set(count.overdue)
        for labels in self._gauge_labels - seen:
            metrics.OPEN.labels(*labels).set(0)
            metrics.OVERDUE.labels(*labels).set(0)
        self._gauge_labels |= seen

    # -- the loop -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Tick until :meth:`stop`; database trouble is logged and retried with backoff."""
        listener = await self._listen()
        failures = 0
        gauges_at = 0.0
        log.info("sla.scheduler_started", clock=repr(self._clock))
        try:
            while not self.stopping:
                self._wake.clear()
                try:
                    result = await self.tick()
                    if time.monotonic() >= gauges_at:
                        await self.refresh_gauges()
                        gauges_at = time.monotonic() + self._metrics_interval_s
                except Exception as e:  # a service loop: log, back off, try again
                    failures += 1
                    log.warning("sla.scheduler_failed", error=f"{type(e).__name__}: {e}")
                    await self.pause(_RETRY.delay(failures))
                    continue
                failures = 0
                await self._wait(result.next_action_at)
        finally:
            if listener is not None:
                await self._unlisten(listener)
            log.info("sla.scheduler_stopped")

    async def _wait(self, next_at: datetime | None) -> None:
        """Until the next action is due by the clock, a wake-up, or the poll interval."""
        delay = None if next_at is None else (next_at - self._clock.now()).total_seconds()
        if delay is not None and delay <= 0:
            return
        waits: list[Coroutine[Any, Any, Any]] = [
            self._wake.wait(),
            asyncio.sleep(self._poll_interval_s),
        ]
        if delay is not None:
            waits.append(self._clock.sleep(delay))
        tasks = [asyncio.ensure_future(w) for w in waits]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()

    async def _listen(self) -> PoolConnectionProxy[asyncpg.Record] | None:
        """A pooled connection LISTENing on the engine's channel; None (poll only) on failure."""
        try:
            conn = await self._pool.acquire()
        except Exception as e:
            log.warning("sla.listen_failed", error=f"{type(e).__name__}: {e}")
            return None
        try:
            await conn.add_listener(NOTIFY_CHANNEL, self._notified)
        except Exception as e:
            await self._pool.release(conn)
            log.warning("sla.listen_failed", error=f"{type(e).__name__}: {e}")
            return None
        return conn

    async def _unlisten(self, conn: PoolConnectionProxy[asyncpg.Record]) -> None:
        with contextlib.suppress(Exception):
            await conn.remove_listener(NOTIFY_CHANNEL, self._notified)
        with contextlib.suppress(Exception):
            await self._pool.release(conn)

    def _notified(self, *args: object) -> None:
        self._wake.set()
        if self._on_emitted is not None:
            self._on_emitted()  # the change may have put an sla.met in the outbox
