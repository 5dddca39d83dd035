"""The demo: a seeded, simulated fortnight of Yangzonghai case work through the whole bus.

One process runs the router, the SLA engine (on :class:`~bus.sim.clock.SteppedClock`), the
procuratorate's audit monitor, the five adapters, the procuratorate's and the court's witnesses
of the audit log, and a fake system behind every department.
The flows of :mod:`bus.sim.fortnight` drive the adapters' HTTP APIs day by day; at the end the
summary counts messages by kind and deadlines by agency, replays the audit log, and asks the
procuratorate's screening for the planted 以罚代刑 case.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bus.errors import SimulationError
from bus.settings import Settings
from bus.sim.clock import SteppedClock
from bus.sim.fortnight import Fortnight
from bus.sim.report import Summary, pulse, summarize
from bus.sim.world import REGULATORS, World, running_world
from bus.sla.calendar import SHANGHAI

__all__ = ["run_days", "run_demo"]

SETTLE_S = 0.6
"""Real seconds each simulated day lasts once its traffic is done (the scheduler's turn)."""


async def run_days(
    sim: Fortnight,
    flows: list[Awaitable[None]],
    *,
    console: Console,
    since: datetime,
) -> None:
    """Drive ``flows`` through ``sim.length`` simulated days, showing progress; raises
    SimulationError if a flow fails or a day's traffic does not settle."""
    world = sim.world
    days = sim.length
    tasks = [sim.days.spawn(flow) for flow in flows]
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[figures]}"),
        TimeElapsedColumn(),
        console=console,
        disable=not console.is_terminal,
    )
    try:
        with progress:
            bar = progress.add_task("day", total=days, figures="")
            for day in range(days):
                if day:
                    world.clock.advance(timedelta(days=1))
                sim.days.begin(day)
                await sim.days.idle(timeout_s=120)
                await asyncio.sleep(SETTLE_S)
                for task in tasks:
                    if task.done() and task.exception() is not None:
                        raise SimulationError(f"day {day}: a flow failed") from task.exception()
                p = await pulse(world.pool, since)
                today = world.clock.now().astimezone(SHANGHAI).strftime("%Y-%m-%d %a")
                figures = (
                    f"{today} · messages {p.messages} · open deadlines {p.open_deadlines} · "
                    f"warnings {p.warnings} · breaches {p.breaches}"
                )
                progress.update(
                    bar, completed=day + 1, description=f"day {day + 1}", figures=figures
                )
                if not console.is_terminal:
                    console.print(f"day {day + 1:>2}/{days}  {figures}", soft_wrap=True)
        waiting = [t for t in tasks if not t.done()]
        if waiting:
            raise SimulationError(f"{len(waiting)} flow(s) wait for a day after the last one")
        for task in tasks:
            await task
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def run_demo(
    settings: Settings,
    *,
    key_dir: Path,
    state_dir: Path | None = None,
    seed: int = 2017,
    days: int = 14,
    console: Console | None = None,
    then: Callable[[World], Awaitable[None]] | None = None,
) -> Summary:
    """Run the fortnight and summarize it; ``then`` runs on the live world before it stops
    (the console, until Ctrl-C). The witnesses keep their stores in ``state_dir`` (see
    :func:`~bus.sim.world.running_world`). Raises SimulationError if a step did not happen."""
    if days < 7:
        raise ValueError("the fortnight needs at least 7 simulated days (days >= 7)")
    console = console or Console()
    since = datetime.now(UTC)
    clock = SteppedClock()
    async with running_world(settings, key_dir=key_dir, clock=clock, state_dir=state_dir) as world:
        console.print(
            f"casebus demo: seed {seed}, {days} simulated days from "
            f"{clock.now().astimezone(SHANGHAI):%Y-%m-%d}; router, SLA engine, audit monitor, "
            f"5 adapters and 2 witnesses running; crypto profile {settings.crypto_profile}"
        )
        sim = Fortnight(world, seed=seed, days=days)
        await run_days(sim, sim.plan(list(REGULATORS)), console=console, since=since)
        await asyncio.sleep(1.5)  # the last checkpoint reaches the monitor
        summary = await summarize(world, sim.expected, since)
        for line in summary.lines():
            console.print(line, highlight=False, markup=False, soft_wrap=True)
        if then is not None:
            await then(world)
    return summary
