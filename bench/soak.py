"""Soak: a steady load of department documents through the adapters for many minutes, while a
broker restart, a router kill, a webhook outage and a PostgreSQL restart happen at seeded random
times; at the end nothing may be lost, nothing acted on twice, and the audit log must verify.

Run: ``.venv/bin/python bench/soak.py [--minutes 20] [--rate 300] [--seed N]`` (not in CI; ``make
soak``). It uses ``CASEBUS_KAFKA_BOOTSTRAP`` / ``CASEBUS_DATABASE_URL`` when set, else runs
``deploy/local/up``. The broker and PostgreSQL restarts go through ``deploy/local/down|up`` with
this process's ``CASEBUS_STATE_DIR`` and ports, so they are only injected when
``CASEBUS_STATE_DIR`` is set explicitly (a private infrastructure, never a shared one).

What runs: ``casebus router`` and one ``casebus adapter <kind>`` process per group of agencies
(``--split`` processes for the regulators and for the enforcement agencies), each agency with a
fake department webhook, all sixteen in one helper process (:mod:`_soak_departments`). The load
(:mod:`_soak_load`) is a seeded mix of fifteen kinds over ``--cases`` cases, ``POST
/v1/submissions`` with an Idempotency-Key, retried until accepted. The faults come one per slot
of the run, in seeded order and at seeded times. Everything lives in a scratch database and topic
prefix, removed at the end (``--keep`` keeps them); the logs and ``report.md`` stay in the run
folder. The report adds where the time went (per stage, on the database's clock) and the CPU
each process used per submission: what limits the rate.

What counts:

- **lost**: a submission accepted (202) that never reached one of the departments the routing
  policy delivers it to (copies included), or whose ``bus.ack`` never came back to the sender.
- **duplicated**: a submission acted on twice by a department that, as the webhook contract
  says, deduplicates on ``X-Casebus-Message-Id``: i.e. one logical submission arriving under a
  second message id (a replayed Idempotency-Key answered with a new id, or a delivery of one of
  the mix's kinds under an id no submission was given). The webhook contract is at least once, so
  the same id POSTed again after a 2xx is allowed; it is counted apart as **redelivered**.
- **out of order**: a department receiving one sender's messages of a case in another order than
  the sender's submissions were accepted.

Exit status 1 when lost, duplicated or out of order is above zero, a submission was refused
(4xx), a process died, or ``casebus audit verify`` fails.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import sys
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from _common import infra, kafka_version, say
from _soak_faults import FAULTS, plan_faults, run_faults
from _soak_load import LoadGenerator
from _soak_report import (
    Usage,
    ack_id,
    analyse,
    audit_checks,
    bottlenecks,
    rss_mib,
    tables,
    usage_snapshot,
)
from _soak_world import SoakWorld

__all__ = ["main"]


class Watch:
    """Every second: tell the departments what to expect, sample the router's RSS and this
    process's event-loop lag; every 15 s, a progress line."""

    def __init__(self, world: SoakWorld, gen: LoadGenerator) -> None:
        self.world, self.gen = world, gen
        self.rss_max_mib = self.rss_last_mib = 0.0
        self.lag_max_s = 0.0
        self.stop = asyncio.Event()

    async def register(self) -> None:
        """Hand the departments the deliveries and acks of newly accepted submissions."""
        assert self.world.departments is not None
        fresh, self.gen.newly_accepted = self.gen.newly_accepted, []
        pairs = [(r, s.message_id) for s in fresh for r in s.deliver_to]
        pairs += [(s.sender, ack_id(r, s.message_id)) for s in fresh for r in s.deliver_to]
        await self.world.departments.expect(pairs)

    async def status(self) -> tuple[int, int]:
        """(deliveries and acks expected so far, of them arrived)."""
        assert self.world.departments is not None
        await self.register()
        expected, arrived, _ = await self.world.departments.status()
        return expected, arrived

    async def run(self) -> None:
        """Until :attr:`stop` is set."""
        n = 0
        while not self.stop.is_set():
            router = self.world.router
            if router is not None and router.poll() is None:
                self.rss_last_mib = rss_mib(router.pid) or self.rss_last_mib
                self.rss_max_mib = max(self.rss_max_mib, self.rss_last_mib)
            n += 1
            if n % 15 == 0:
                expected, arrived = await self.status()
                subs = self.gen.submissions
                say(
                    "soak",
                    f"offered {len(subs)} accepted {sum(s.status == 'accepted' for s in subs)} "
                    f"trying {self.gen.outstanding} delivered+acked {arrived}/{expected} "
                    f"router {self.rss_last_mib:.0f} MiB loadavg {os.getloadavg()[0]:.1f}",
                )
            else:
                await self.register()
            before = time.monotonic()
            try:
                await asyncio.wait_for(self.stop.wait(), 1.0)
            except TimeoutError:
                self.lag_max_s = max(self.lag_max_s, time.monotonic() - before - 1.0)


async def drain(watch: Watch, *, stall_s: float, cap_s: float) -> float:
    """Until every accepted submission reached every recipient and its acks are back, or nothing
    moved for ``stall_s``, or ``cap_s`` passed; the seconds it took."""
    started = last_move = time.monotonic()
    last = -1
    while True:
        expected, arrived = await watch.status()
        now = time.monotonic()
        if arrived == expected:
            return now - started
        if arrived != last:
            last, last_move = arrived, now
        if now - last_move > stall_s or now - started > cap_s:
            say("soak", f"drain gave up: {arrived}/{expected} deliveries and acks arrived")
            return now - started
        await asyncio.sleep(1.0)


def _cpu_rows(
    world: SoakWorld, before: Usage, after: Usage, wall_s: float, accepted: int
) -> list[tuple[str, float, float]]:
    """(process, cores used on average, CPU ms per accepted submission)."""
    used = {}
    for name in sorted(after.cpu_s):
        # A restarted process starts from zero: add what the stopped one had used.
        used[name] = after.cpu_s[name] - before.cpu_s.get(name, 0.0)
        used[name] += world.restarted_cpu_s.get(name, 0.0)
    used["all adapters together"] = sum(c for n, c in used.items() if n.startswith("adapter "))
    per = max(1, accepted)
    rows = [(name, cpu / wall_s, cpu * 1000 / per) for name, cpu in used.items()]
    machine = (after.busy_ticks - before.busy_ticks) / max(1, after.all_ticks - before.all_ticks)
    cores = os.cpu_count() or 1
    rows.append((f"whole machine, every worker (of {cores})", machine * cores, 0.0))
    return rows


def _check_private(bootstrap: str, dsn: str) -> None:
    """Refuse to restart a broker or database that ``deploy/local`` here does not own."""
    kafka_port = os.environ.get("CASEBUS_KAFKA_PORT", "19092")
    pg_port = os.environ.get("CASEBUS_PG_PORT", "15432")
    ports = {p.rpartition(":")[2] for p in bootstrap.split(",")}
    if kafka_port not in ports or str(urlsplit(dsn).port) != pg_port:
        raise SystemExit(
            f"the broker ({bootstrap}) or the database ({dsn}) is not the one deploy/local runs "
            f"with CASEBUS_KAFKA_PORT={kafka_port} CASEBUS_PG_PORT={pg_port}: not restarting it"
        )


async def soak(args: argparse.Namespace) -> int:
    """Run it; the exit status."""
    kinds = [k for k in args.faults.split(",") if k]
    if unknown := set(kinds) - set(FAULTS):
        raise SystemExit(f"--faults: unknown {sorted(unknown)}; choose from {','.join(FAULTS)}")
    infra_faults = bool({"kafka", "pg"} & set(kinds))
    if infra_faults and not os.environ.get("CASEBUS_STATE_DIR"):
        raise SystemExit(
            "broker and PostgreSQL restarts go through deploy/local/down|up: set CASEBUS_STATE_DIR "
            "(and CASEBUS_KAFKA_PORT, CASEBUS_PG_PORT) to a private infrastructure, or pass "
            "--faults router,webhook"
        )
    bootstrap, admin_dsn = infra("soak")
    if infra_faults:
        _check_private(bootstrap, admin_dsn)
    duration_s = args.minutes * 60
    world = SoakWorld(
        run_dir=Path(args.run_dir or f"/tmp/casebus-soak-{time.strftime('%Y%m%d-%H%M%S')}"),
        bootstrap=bootstrap,
        admin_dsn=admin_dsn,
        log_level=args.log_level,
        split=args.split,
    )
    say("soak", f"run folder {world.run_dir}; database {world.database}; topics {world.prefix}.*")
    faults = plan_faults(random.Random(args.seed), duration_s, kinds)
    for f in faults:
        say("soak", f"planned: {f.kind} {f.target} at {f.at_s:.0f} s for {f.away_s:.0f} s")
    try:
        await world.setup()
        assert world.departments is not None
        say("soak", f"router and {len(world.adapters)} adapter processes up")
        gen = LoadGenerator(
            seed=args.seed,
            rate=args.rate,
            cases=args.cases,
            policy=world.policy(),
            served=set(world.departments),
            base_url=world.base_urls(),
            tokens=world.tokens,
            max_in_flight=args.connections,
        )
        watch = Watch(world, gen)
        watcher = asyncio.create_task(watch.run())
        before = usage_snapshot(world.processes())
        t0 = time.monotonic()
        injector = asyncio.create_task(run_faults(world, faults, t0))
        load = asyncio.create_task(gen.run(duration_s))
        await asyncio.wait([load, injector], return_when=asyncio.FIRST_EXCEPTION)
        if injector.done() and injector.exception() is not None:
            load.cancel()  # a fault that could not be undone makes the rest meaningless
            await asyncio.gather(load, return_exceptions=True)
            say("soak", f"FAIL: aborted, a fault went wrong: {injector.exception()!r}")
            return 2
        await load
        load_s = time.monotonic() - t0
        accepted_in_load = sum(
            s.status == "accepted" and s.accepted_s - t0 <= load_s for s in gen.submissions
        )
        say("soak", f"load done: {len(gen.submissions)} offered in {load_s:.0f} s")
        await injector
        await gen.finish(timeout_s=args.drain_s)
        drain_s = await drain(watch, stall_s=args.stall_s, cap_s=args.drain_s)
        after = usage_snapshot(world.processes())
        wall_s = time.monotonic() - t0
        watch.stop.set()
        await watcher
        died = world.dead_children()
        seen = await world.departments.dump()
        await world.stop_processes()
        fig = analyse(gen, seen, [(f.kind, f.target, f.start, f.back) for f in faults], t0)
        unaudited, verify, verify_ok = await audit_checks(world.dsn, world.env(), fig.accepted)
        limits = await bottlenecks(world.dsn)
        lines = [
            f"### Soak: {args.minutes:g} min at {args.rate:g} submissions/s offered, "
            f"seed {args.seed}",
            "",
            f"`{' '.join(['.venv/bin/python', *sys.argv])}` — Kafka {kafka_version()}, "
            f"PostgreSQL from deploy/local, `casebus router` + {len(world.adapters)} "
            f"`casebus adapter` processes, {len(world.departments)} department webhooks, "
            f"{args.cases} cases, {os.cpu_count()} cores shared with other work "
            f"(load average at the end {os.getloadavg()[0]:.1f}).",
            "",
            *tables(
                fig,
                load_s=load_s,
                accepted_in_load=accepted_in_load,
                drain_s=drain_s,
                router_rss_mib=(watch.rss_max_mib, watch.rss_last_mib),
                unaudited=unaudited,
                verify=verify,
                cpu=_cpu_rows(world, before, after, wall_s, len(fig.accepted)),
                loop_lag_max_s=watch.lag_max_s,
            ),
            "",
            *limits,
        ]
        if gen.refused_samples:
            lines += ["", "Refused submissions (first few):"]
            lines += [f"- {x}" for x in gen.refused_samples]
        text = "\n".join(lines)
        print(text, flush=True)
        (world.run_dir / "report.md").write_text(text + "\n")
        if fig.missing:  # for the post-mortem (run with --keep to keep the database too)
            rows = ["\t".join(m) for m in fig.missing]
            (world.run_dir / "missing.tsv").write_text("\n".join(rows) + "\n")
        failures = [f"died: {d}" for d in died]
        if fig.lost_messages or fig.lost_acks:
            failures.append(f"lost: {fig.lost_messages} messages, {fig.lost_acks} acks")
        if fig.duplicated:
            failures.append(f"duplicated: {fig.phantom} unknown ids + {fig.other_ids} re-keyed")
        if fig.misrouted or fig.out_of_order:
            failures.append(f"misrouted {fig.misrouted}, out of order {fig.out_of_order}")
        if fig.refused or fig.never_accepted:
            failures.append(f"{fig.refused} refused, {fig.never_accepted} never accepted")
        if unaudited:
            failures.append(f"{unaudited} accepted messages without exactly one audit entry")
        if fig.bad_signatures:
            failures.append(f"{fig.bad_signatures} webhooks with a bad HMAC signature")
        if not verify_ok:
            failures.append(f"audit verify: {verify}")
        for failure in failures:
            say("soak", f"FAIL: {failure}")
        return 1 if failures else 0
    finally:
        await world.close(keep=args.keep)
        say("soak", f"logs and report in {world.run_dir}")


def main() -> None:
    """Parse the command line and run the soak."""
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=20.0, help="Length of the load (default 20).")
    p.add_argument("--rate", type=float, default=300.0, help="Submissions offered per second.")
    p.add_argument("--seed", type=int, default=2017, help="Seeds the mix and the fault plan.")
    p.add_argument("--cases", type=int, default=2000, help="Cases the messages spread over.")
    p.add_argument(
        "--split",
        type=int,
        default=2,
        help="Processes for the regulators, and for enforcement (each adapter process pools up "
        "to 20 PostgreSQL connections; deploy/local allows 200).",
    )
    p.add_argument(
        "--connections", type=int, default=64, help="HTTP connections per adapter process."
    )
    p.add_argument(
        "--faults", default=",".join(FAULTS), help="Comma-separated: kafka,router,webhook,pg."
    )
    p.add_argument("--drain-s", type=float, default=900.0, help="Longest wait after the load.")
    p.add_argument(
        "--stall-s", type=float, default=180.0, help="Stop draining after no progress this long."
    )
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument("--run-dir", help="Logs and report.md (default /tmp/casebus-soak-<time>).")
    p.add_argument("--keep", action="store_true", help="Keep the scratch database and topics.")
    sys.exit(asyncio.run(_until_signalled(soak(p.parse_args()))))


async def _until_signalled(run: Coroutine[Any, Any, int]) -> int:
    """Run ``run``; SIGTERM or SIGINT cancels it, so its clean-up (children, scratch database,
    topics) still happens. (A shell's background job ignores SIGINT: SIGTERM is the one.)"""
    task = asyncio.ensure_future(run)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    try:
        return await task
    except asyncio.CancelledError:
        say("soak", "stopped by a signal")
        return 130


if __name__ == "__main__":
    main()
