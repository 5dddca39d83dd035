"""Every part of the bus in one process: router, SLA engine, audit monitor, the five adapters,
the procuratorate's and the court's witnesses, and a fake departmental system behind each
agency the adapters serve."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from adapters import court, enforcement, police, regulators
from adapters._framework.fake_department import FakeDepartment, RunningAdapter, running_adapter
from adapters.court.testing import FakeCourt
from adapters.enforcement.testing import FakeBureau
from adapters.police.testing import FakePolice
from adapters.procuratorate.testing import running_procuratorate
from adapters.regulators.testing import FakeRegulator
from bus.agencies import load_registry
from bus.audit.checkpoint import CheckpointSigner, parse_verifier_key, verifier_key_string
from bus.audit.monitor import DatabaseProofSource, run_monitor
from bus.db import create_pool, migrate
from bus.provision import OwnKey, ensure_registered
from bus.router.app import run_router
from bus.settings import Settings
from bus.signing import SM2_SM3, algorithm_of_profile, load_signer, write_keypair
from bus.sim.clock import SteppedClock
from bus.sim.witnesses import DemoWitness, running_witnesses, witness_policy
from bus.sla.app import run_sla_engine
from bus.sla.deadline import SLA_AGENCY
from bus.topics import ensure_topics

__all__ = [
    "BUREAU",
    "COURT",
    "ECO",
    "POLICE",
    "PROCURATORATE",
    "REGULATORS",
    "WITNESSES",
    "World",
    "running_world",
]

log = structlog.get_logger("casebus.demo")

BUREAU = "ygh.enforcement.bureau"
POLICE = "ygh.police.bureau"
ECO = "kmg.police.eco"
PROCURATORATE = "ygh.procuratorate"
COURT = "ygh.court"
REGULATORS = (
    "ygh.regulator.planning",
    "ygh.regulator.construction",
    "ygh.regulator.environment",
    "ygh.regulator.water",
    "ygh.regulator.market",
    "ygh.regulator.fooddrug",
    "ygh.regulator.land",
    "ygh.regulator.park",
)
WITNESSES = (PROCURATORATE, COURT)
"""Who runs a witness of the audit log: the two parties that check it."""


@dataclass
class World:
    """The running parts and the departments behind them."""

    settings: Settings
    pool: asyncpg.Pool
    clock: SteppedClock
    log_key: Ed25519PublicKey
    bureau: FakeDepartment
    police: FakeDepartment
    eco: FakeDepartment
    court: FakeDepartment
    regulators: dict[str, FakeDepartment]
    enf: RunningAdapter
    reg: RunningAdapter
    pol: RunningAdapter
    proc: RunningAdapter
    crt: RunningAdapter
    tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    witnesses: tuple[DemoWitness, ...] = ()

    def failed(self) -> list[str]:
        """Components that stopped on their own (they should run until the end)."""
        return [
            f"{name}: {t.exception()!r}" if not t.cancelled() and t.exception() else name
            for name, t in self.tasks.items()
            if t.done()
        ]


def _log_failure(task: asyncio.Task[None]) -> None:
    """A part that stops with an error says so at once: the demo's days would only stall."""
    if not task.cancelled() and (error := task.exception()) is not None:
        log.error("demo.component_failed", component=task.get_name(), error=repr(error))


def _bus_log_key(settings: Settings) -> tuple[Settings, Ed25519PublicKey]:
    """The bus key (made of the profile's algorithm when missing) and the log's Ed25519 public
    key; an SM2 bus key gets an Ed25519 log key of its own beside it, named in the settings
    returned (CASEBUS_AUDIT_LOG_KEY_FILE), as bus/audit/checkpoint.py requires."""
    path = settings.bus_key_file
    if not path.exists():
        write_keypair(
            "casebus", path.parent, algorithm=algorithm_of_profile(settings.crypto_profile)
        )
    bus = load_signer(path, agency_id="casebus")
    if bus.algorithm == SM2_SM3 and settings.audit_log_key_file is None:
        log_file = path.parent / "casebus.log.key.pem"
        if not log_file.exists():
            write_keypair("casebus.log", path.parent)
        settings = settings.model_copy(update={"audit_log_key_file": log_file})
    signer = CheckpointSigner.load(bus, settings.audit_log_key_file)
    return settings, signer.log_key.public_key()


@contextlib.asynccontextmanager
async def running_world(
    settings: Settings, *, key_dir: Path, clock: SteppedClock, state_dir: Path | None = None
) -> AsyncIterator[World]:
    """Start everything (migrating and creating topics first); stop it all on exit.

    The witnesses keep their SQLite stores in ``state_dir`` (default: beside their keys in
    ``key_dir``); the router publishes a tree head once both cosigned it."""
    settings, log_key = _bus_log_key(settings)
    log_vkey = parse_verifier_key(verifier_key_string(settings.audit_origin, log_key))
    async with (
        running_witnesses(
            WITNESSES,
            log_vkey=log_vkey,
            key_dir=key_dir,
            state_dir=key_dir / "witnesses" if state_dir is None else state_dir,
        ) as witnesses,
        _running_parts(
            settings, key_dir=key_dir, clock=clock, log_key=log_key, witnesses=witnesses
        ) as world,
    ):
        yield world


@contextlib.asynccontextmanager
async def _running_parts(
    settings: Settings,
    *,
    key_dir: Path,
    clock: SteppedClock,
    log_key: Ed25519PublicKey,
    witnesses: Sequence[DemoWitness],
) -> AsyncIterator[World]:
    settings = witness_policy(settings, witnesses)
    registry = load_registry(settings.agencies_file)
    await migrate(settings.database_url)
    await ensure_topics(settings, registry)
    sla_key = write_keypair(
        "casebus.sla",
        key_dir / "casebus.sla",
        overwrite=True,
        algorithm=algorithm_of_profile(settings.crypto_profile),
    ).private_key
    pool = await create_pool(settings.database_url, max_size=6)
    monitor_pool = await create_pool(settings.for_service("monitor").database_url, max_size=2)
    reader_pool = await create_pool(settings.for_service("procuratorate").database_url, max_size=2)
    stop = asyncio.Event()
    tasks: dict[str, asyncio.Task[None]] = {}

    def start(name: str, coro: Coroutine[Any, Any, None]) -> None:
        tasks[name] = task = asyncio.create_task(coro, name=f"demo.{name}")
        task.add_done_callback(_log_failure)

    # Each part connects as its own role, as deployed; the demo itself is the operator (the
    # owner of the tables): it registers the agencies, the services' keys and the API tokens.
    # The adapters stamp sent_at on the demo's clock, the one the SLA engine counts on: a
    # deadline opens and closes on the fortnight's days, not on the wall's.
    small: dict[str, Any] = {"db_pool_max_size": 4, "own_role": True, "clock": clock}
    try:
        now = datetime.now(UTC)
        async with pool.acquire() as conn:
            await ensure_registered(
                conn,
                registry=registry,
                keys=[
                    OwnKey.of(load_signer(path, agency_id=agency), path, valid_from=now)
                    for agency, path in (("casebus", settings.bus_key_file), (SLA_AGENCY, sla_key))
                ],
            )
        start(
            "router",
            run_router(settings.for_service("router"), handle_signals=False, stop_event=stop),
        )
        start(
            "sla",
            run_sla_engine(
                settings.for_service("sla"),
                key_file=sla_key,
                clock=clock,
                handle_signals=False,
                stop_event=stop,
                scheduler_poll_s=0.1,
                relay_poll_s=0.05,
            ),
        )
        start(
            "monitor",
            run_monitor(
                settings,
                pool=monitor_pool,
                log_key=log_key,
                proofs=DatabaseProofSource(reader_pool),
                stop_event=stop,
                # The procuratorate keeps only tree heads its and the court's witness cosigned.
                witnesses=tuple(w.key for w in witnesses),
            ),
        )
        fakes = {a: FakeRegulator(secret=a.encode(), name=a) for a in REGULATORS}
        async with contextlib.AsyncExitStack() as stack:
            bureau = await stack.enter_async_context(FakeBureau(secret=b"bureau"))
            pol = await stack.enter_async_context(FakePolice(secret=b"police"))
            eco = await stack.enter_async_context(FakePolice(secret=b"eco"))
            crt = await stack.enter_async_context(FakeCourt(secret=b"court"))
            for fake in fakes.values():
                await stack.enter_async_context(fake)

            async def adapter(build: Any, hooks: dict[str, FakeDepartment | None]) -> Any:
                cm = running_adapter(build, settings, key_dir=key_dir, webhooks=hooks, **small)
                return await stack.enter_async_context(cm)

            world = World(
                settings=settings,
                pool=pool,
                clock=clock,
                log_key=log_key,
                bureau=bureau,
                police=pol,
                eco=eco,
                court=crt,
                regulators=dict(fakes),
                enf=await adapter(enforcement.build_service, {BUREAU: bureau}),
                reg=await adapter(regulators.build_service, dict(fakes)),
                pol=await adapter(police.build_service, {POLICE: pol, ECO: eco}),
                proc=await stack.enter_async_context(
                    running_procuratorate(
                        settings, key_dir=key_dir, webhooks={PROCURATORATE: None}, **small
                    )
                ),
                crt=await adapter(court.build_service, {COURT: crt}),
                tasks=tasks,
                witnesses=tuple(witnesses),
            )
            yield world
    finally:
        stop.set()
        for task in tasks.values():
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(task, 30)
        await reader_pool.close()
        await monitor_pool.close()
        await pool.close()
