"""How the SLA scheduler copes with 100,000 open deadlines: the time of one tick, and the delay
from a deadline's due instant to its sla.breach committed in the outbox.

Run: ``.venv/bin/python bench/sla.py [--open 100000] [--due 3000] [--window-s 30]
[--burst 1000] [--replicas 1,2]``; ``--quick`` is a smoke run (10,000 open, 5 s windows).
It reads ``CASEBUS_DATABASE_URL`` (a role that may create databases) or, when that is unset,
starts ``deploy/local/up`` and uses the address it prints. It works in a database of its own,
created and migrated here and dropped at the end, also on errors and Ctrl-C. No Kafka: the
scheduler's work ends in the outbox, which is what is measured.

The open deadlines are written straight into ``sla_deadlines``, as the engine would: most are
due days to weeks ahead (each with two warning points); for each replica count, ``--due`` of
them fall due one after the other, evenly, within a ``--window-s`` second window while the real
scheduler loop runs on the real clock. Measured:

- idle tick: a tick when nothing is due (the claim query and the next-action query) with all
  of them open;
- burst tick: ``--burst`` deadlines past due at once, emitted in rounds of 200 (claim, sign,
  outbox insert, save, commit);
- emission delay: for each of the ``--due`` deadlines, the scheduler's clock at the commit of
  its sla.breach minus its due instant, with ``--replicas`` schedulers (each its own pool)
  claiming with SKIP LOCKED.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg
import structlog
from _common import scratch_database

from bus.agencies import load_registry
from bus.db import create_pool, migrate
from bus.local_infra import local_database_url
from bus.settings import load_settings
from bus.signing import algorithm_of_profile, generate_keypair, signer_from_pem
from bus.sla.calendar import DEFAULT_HOLIDAYS_OVERRIDE_PATH, WorkCalendar
from bus.sla.clock import RealClock
from bus.sla.deadline import SLA_AGENCY, Deadline, deadline_id
from bus.sla.events import SlaEmitter
from bus.sla.parties import Parties
from bus.sla.policy import load_policies
from bus.sla.scheduler import Emitted, SlaScheduler
from bus.sla.store import DeadlineStore

__all__ = ["main"]

FILL_BATCH = 5_000
GAP = timedelta(seconds=5)  # between two delay windows
IDLE_TICKS = 50
STORE = DeadlineStore()
POLICIES = load_policies()


class _Delays:
    """Due instant → commit delay of the watched deadlines' breaches, as the scheduler reports
    its committed rounds."""

    def __init__(self, ids: set[uuid.UUID]) -> None:
        self._ids = ids
        self.by_id: dict[uuid.UUID, float] = {}
        self.complete = asyncio.Event()

    def seen(self, events: Sequence[Emitted]) -> None:
        for e in events:
            if e.deadline.id in self._ids and e.emission.kind == "sla.breach":
                delay = (e.committed_at - e.emission.occurred_at).total_seconds()
                self.by_id[e.deadline.id] = delay
        if len(self.by_id) == len(self._ids):
            self.complete.set()


@dataclass(frozen=True, slots=True)
class _Plan:
    open: int
    due: int
    window_s: float
    burst: int
    replicas: tuple[int, ...]


def _say(text: str) -> None:
    print(f"[bench/sla] {text}", file=sys.stderr, flush=True)


def _dur(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def _p(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _deadline(i: int, *, start: datetime, due: datetime, warn: bool) -> Deadline:
    opened = uuid.uuid4()
    warnings = (start + (due - start) / 2, due - timedelta(hours=6)) if warn else ()
    return Deadline(
        id=deadline_id("criminal.filing_decision", opened),
        policy_id="criminal.filing_decision",
        case_id=f"YGH-2026-{i % 10_000:04d}",
        correlation_id=str(opened),
        opened_by=opened,
        opened_kind="criminal.receipt",
        opened_at=start,
        start_at=start,
        due_at=due,
        owner_agency="ygh.police.bureau",
        waiting_agency="ygh.enforcement.bureau",
        notify_procuratorate=True,
        notify_agencies=("ygh.procuratorate",),
        warnings_at=tuple(sorted(warnings)),
    )


async def _insert(pool: asyncpg.Pool, deadlines: list[Deadline]) -> None:
    for i in range(0, len(deadlines), FILL_BATCH):
        async with pool.acquire() as conn, conn.transaction():
            await STORE.insert_many(conn, deadlines[i : i + FILL_BATCH])


def _scheduler(pool: asyncpg.Pool, dsn: str, **kw: object) -> SlaScheduler:
    settings = load_settings(database_url=dsn, topic_prefix="bench")
    algorithm = algorithm_of_profile(settings.crypto_profile)  # the run's crypto profile
    signer = signer_from_pem(
        generate_keypair(SLA_AGENCY, algorithm=algorithm)[0], agency_id=SLA_AGENCY
    )
    return SlaScheduler(
        pool=pool,
        emitter=SlaEmitter(settings, signer=signer),
        clock=RealClock(),
        policies=POLICIES,
        parties=Parties(load_registry(settings.agencies_file)),
        calendar=WorkCalendar(DEFAULT_HOLIDAYS_OVERRIDE_PATH),
        **kw,  # type: ignore[arg-type]
    )


async def _measure(dsn: str, plan: _Plan) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    await migrate(dsn)
    pool = await create_pool(dsn, min_size=2, max_size=4)
    clock = RealClock()
    try:
        # Fill: deadlines due 2 to 60 days ahead, each with two warning points.
        now = clock.now()
        far = [
            _deadline(
                i, start=now, due=now + timedelta(days=2 + i % 58, minutes=i % 1440), warn=True
            )
            for i in range(plan.open - plan.due * len(plan.replicas))
        ]
        _say(f"inserting {len(far):,} deadlines")
        began = time.perf_counter()
        await _insert(pool, far)
        fill_s = time.perf_counter() - began
        # One window per replica count, one after the other; the first opens once the idle
        # and burst measurements are done.
        window = timedelta(seconds=plan.window_s)
        step = window / plan.due
        first = clock.now() + timedelta(seconds=20)
        windows = {
            n: [
                _deadline(i, start=now, due=first + k * (window + GAP) + i * step, warn=False)
                for i in range(plan.due)
            ]
            for k, n in enumerate(plan.replicas)
        }
        await _insert(pool, [d for ds in windows.values() for d in ds])
        await pool.execute("ANALYZE sla_deadlines")
        open_n = await pool.fetchval("SELECT count(*) FROM sla_deadlines WHERE state = 'open'")
        rows.append(
            (
                "fill (executemany, 5,000 per transaction)",
                f"{len(far):,} rows",
                f"{_dur(fill_s)} ({len(far) / fill_s:,.0f} rows/s)",
            )
        )

        # Idle ticks with everything open.
        scheduler = _scheduler(pool, dsn)
        await scheduler.tick()  # warm-up: opens this month's scheduled deadlines once
        times = []
        for _ in range(IDLE_TICKS):
            began = time.perf_counter()
            result = await scheduler.tick()
            times.append(time.perf_counter() - began)
            assert result.warnings == result.breaches == 0, result
        rows.append(
            (
                f"idle tick (nothing due), {IDLE_TICKS} ticks",
                f"{open_n:,} open",
                f"p50 {_dur(_p(times, 0.5))}, p99 {_dur(_p(times, 0.99))}",
            )
        )
        plan_text = await pool.fetch(
            """EXPLAIN (ANALYZE, BUFFERS) SELECT id FROM sla_deadlines
               WHERE state = 'open' AND least(next_warning_at, due_at) <= $1
               ORDER BY least(next_warning_at, due_at) LIMIT 200 FOR UPDATE SKIP LOCKED""",
            clock.now(),
        )
        lines = [r[0] for r in plan_text]
        scan = next((x for x in lines if "Scan" in x), lines[0])
        scan = scan.strip().removeprefix("->").strip().split("  (")[0]
        took = next((x for x in lines if x.startswith("Execution Time")), "?")
        rows.append(("claim query (EXPLAIN ANALYZE, nothing due)", scan, took))

        # Burst: many due at once.
        past = clock.now() - timedelta(seconds=1)
        burst = [
            _deadline(i, start=past - timedelta(days=1), due=past, warn=False)
            for i in range(plan.burst)
        ]
        await _insert(pool, burst)
        began = time.perf_counter()
        result = await scheduler.tick()
        burst_s = time.perf_counter() - began
        assert result.breaches == plan.burst, result
        rows.append(
            (
                f"burst tick: {plan.burst:,} breaches due at once",
                f"{open_n:,} open",
                f"{_dur(burst_s)} ({plan.burst / burst_s:,.0f} events/s)",
            )
        )

        # Emission delay under the real scheduler loop.
        for replicas in plan.replicas:
            delays = _Delays({d.id for d in windows[replicas]})
            pools = [await create_pool(dsn, min_size=2, max_size=4) for _ in range(replicas)]
            schedulers = [_scheduler(p, dsn, on_committed=delays.seen) for p in pools]
            _say(
                f"emission delay: {plan.due:,} due over {plan.window_s:g} s, {replicas} replica(s)"
            )
            tasks = [asyncio.create_task(s.run()) for s in schedulers]
            last_due = max(d.due_at for d in windows[replicas])
            try:
                timeout_s = (last_due - clock.now()).total_seconds() + 30
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(delays.complete.wait(), timeout_s)
            finally:
                for s in schedulers:
                    s.stop()
                await asyncio.gather(*tasks)
                for p in pools:
                    await p.close()
            values = list(delays.by_id.values())
            assert delays.complete.is_set(), f"only {len(values)} of {plan.due} emitted"
            p50, p99, worst = _p(values, 0.5), _p(values, 0.99), max(values)
            rows.append(
                (
                    f"emission delay, due → committed in outbox, {replicas} replica(s)",
                    f"{len(values):,} breaches over {plan.window_s:g} s",
                    f"p50 {_dur(p50)}, p99 {_dur(p99)}, max {_dur(worst)}",
                )
            )
        emitted = await pool.fetchval("SELECT count(*) FROM outbox")
        expected = plan.burst + plan.due * len(plan.replicas)
        assert emitted == expected, f"{emitted} events in the outbox, expected {expected}"
        rows.append(("every event once", f"{emitted:,} outbox rows", "no duplicate, none missing"))
        server = await pool.fetchval("SHOW server_version")
        rows.insert(0, ("PostgreSQL", "", f"{server}"))
        return rows
    finally:
        await pool.close()


def _table(rows: Sequence[tuple[str, str, str]]) -> list[str]:
    head = ("measurement", "size", "result")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(3)]

    def line(values: Sequence[str]) -> str:
        return "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return [line(head), rule, *(line(r) for r in rows)]


# --- the database -----------------------------------------------------------------------------


def _plan(argv: Sequence[str] | None) -> _Plan:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--open", type=int, default=100_000, help="open deadlines (default 100,000)"
    )
    parser.add_argument(
        "--due", type=int, default=3_000, help="deadlines falling due in the window"
    )
    parser.add_argument("--window-s", type=float, default=30.0, help="seconds they fall due over")
    parser.add_argument("--burst", type=int, default=1_000, help="deadlines due at once")
    parser.add_argument("--replicas", default="1,2", help="scheduler counts to measure, e.g. 1,2")
    parser.add_argument("--quick", action="store_true", help="10,000 open, 5 s windows")
    args = parser.parse_args(argv)
    if args.quick:
        args.open, args.due, args.window_s, args.burst = 10_000, 500, 5.0, 500
    replicas = tuple(int(r) for r in args.replicas.split(","))
    if not replicas or min(replicas) < 1 or args.due < 1 or args.open <= args.due * len(replicas):
        parser.error("need replica counts >= 1 and --open > --due x (number of replica counts)")
    return _Plan(args.open, args.due, args.window_s, args.burst, replicas)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark and print its table."""
    plan = _plan(argv)
    structlog.configure(
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(30),  # warnings and up
    )
    began = time.perf_counter()
    admin = local_database_url(say=_say)
    with scratch_database(admin, "casebus_bench_sla", _say) as dsn:
        rows = asyncio.run(_measure(dsn, plan))
    print(
        f"SLA scheduler, {plan.open:,} open deadlines; Python {sys.version.split()[0]}; "
        f"{os.cpu_count()} CPUs"
    )
    print()
    print("\n".join(_table(rows)))
    print()
    print(f"Whole run {time.perf_counter() - began:,.0f} s.")


if __name__ == "__main__":
    main()
