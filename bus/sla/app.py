"""Wiring the SLA engine: inbox reader, scheduler and outbox relay in one process.

The same for ``casebus sla run``, the tests and the demo. Several processes may run at once:
they share the inbox's consumer group (each reads some partitions), the scheduler's
``SKIP LOCKED`` claims and the relay's.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from bus.agencies import load_registry
from bus.db import create_pool, migrate
from bus.inbox import InboxReader
from bus.outbox import OutboxRelay
from bus.provision import OwnKey, ensure_registered
from bus.settings import REPO_ROOT, Settings
from bus.signing import load_signer
from bus.sla.calendar import DEFAULT_HOLIDAYS_OVERRIDE_PATH, WorkCalendar
from bus.sla.clock import Clock, clock_from_setting
from bus.sla.deadline import SLA_AGENCY
from bus.sla.engine import SlaEngine
from bus.sla.events import SlaEmitter
from bus.sla.parties import Parties
from bus.sla.policy import DEFAULT_POLICIES_PATH, load_policies
from bus.sla.scheduler import SlaScheduler

__all__ = ["DEFAULT_SLA_KEY_FILE", "run_sla_engine"]

log = structlog.get_logger("casebus.sla")

DEFAULT_SLA_KEY_FILE = REPO_ROOT / ".casebus" / "keys" / f"{SLA_AGENCY}.key.pem"
"""Where ``casebus keys generate --agency casebus.sla --out .casebus/keys`` puts the key."""


async def run_sla_engine(
    settings: Settings,
    *,
    key_file: Path = DEFAULT_SLA_KEY_FILE,
    policies_file: Path = DEFAULT_POLICIES_PATH,
    holidays_file: Path | None = DEFAULT_HOLIDAYS_OVERRIDE_PATH,
    clock: Clock | None = None,
    handle_signals: bool = True,
    stop_event: asyncio.Event | None = None,
    scheduler_poll_s: float = 1.0,
    relay_poll_s: float = 0.2,
) -> None:
    """Check the policies, migrate, check the engine's key is registered
    (:func:`~bus.provision.ensure_registered`), then handle the inbox, emit
    warnings and breaches and publish them until SIGTERM/SIGINT (or ``stop_event``).

    ``clock`` defaults to ``CASEBUS_CLOCK``. Raises ConfigError for a bad policy, holiday,
    registry or key file before touching anything; a component that fails for good (the
    inbox handler failing again and again) stops the others and is re-raised.
    """
    policies = load_policies(policies_file)
    calendar = WorkCalendar(holidays_file)
    registry = load_registry(settings.agencies_file)
    parties = Parties(registry)
    clock = clock if clock is not None else clock_from_setting(settings.clock)
    signer = load_signer(key_file, agency_id=SLA_AGENCY)
    emitter = SlaEmitter(settings, signer=signer)
    engine = SlaEngine(
        policies=policies, calendar=calendar, parties=parties, clock=clock, emitter=emitter
    )
    await migrate(settings.database_url)
    pool = await create_pool(settings.database_url, min_size=2, max_size=8)
    try:
        own = OwnKey.of(signer, key_file, valid_from=datetime.now(UTC))
        async with pool.acquire() as conn:
            await ensure_registered(conn, registry=registry, keys=[own])
        relay = OutboxRelay(settings, pool=pool, owner=SLA_AGENCY, poll_interval_s=relay_poll_s)
        scheduler = SlaScheduler(
            pool=pool,
            emitter=emitter,
            clock=clock,
            policies=policies,
            parties=parties,
            calendar=calendar,
            poll_interval_s=scheduler_poll_s,
            on_emitted=relay.wake,
        )
        reader = InboxReader(
            settings,
            agency_id=SLA_AGENCY,
            consumer_name=SLA_AGENCY,
            handler=engine.handle,
            pool=pool,
        )
        stop = stop_event if stop_event is not None else asyncio.Event()
        if handle_signals:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
        log.info(
            "sla.engine_started", key_id=signer.key_id, policies=len(policies), clock=repr(clock)
        )

        async def stop_all() -> None:
            # Inbox first (no new work), relay last (it publishes what the others queued).
            await reader.stop()
            scheduler.stop()
            await relay.stop()

        await _supervise(
            {"inbox": reader.run(), "scheduler": scheduler.run(), "relay": relay.run()},
            stop=stop,
            stop_all=stop_all,
        )
        log.info("sla.engine_stopped")
    finally:
        await pool.close()


async def _supervise(
    runs: dict[str, Coroutine[Any, Any, None]],
    *,
    stop: asyncio.Event,
    stop_all: Callable[[], Awaitable[None]],
) -> None:
    """Run the components until ``stop`` is set or one of them ends, then ``stop_all``;
    re-raise what ended a component, if anything did."""
    tasks = {
        asyncio.create_task(run, name=f"casebus-sla-{name}"): name for name, run in runs.items()
    }
    stopped = asyncio.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait({stopped, *tasks}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        await stop_all()
        results = await asyncio.gather(*tasks, return_exceptions=True)
    for name, result in zip(tasks.values(), results, strict=True):
        if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
            log.error("sla.component_failed", component=name, error=str(result))
            raise result
    early = [name for task, name in tasks.items() if task in done]
    if early and not stop.is_set():
        log.warning("sla.component_ended", components=early)
