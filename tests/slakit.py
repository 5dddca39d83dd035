"""Shared by the SLA engine's tests: the accelerated clock's calendar, helpers to build the engine,
send sample messages, read the outbox and watch inboxes, and run engines in-process."""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer
from buskit import Bus

from bus.agencies import load_registry
from bus.codec import default_codec
from bus.models import Envelope
from bus.party import Party
from bus.samples import sample_envelope
from bus.settings import Settings
from bus.signing import load_signer
from bus.sla.app import run_sla_engine
from bus.sla.calendar import SHANGHAI, WorkCalendar
from bus.sla.clock import Clock
from bus.sla.deadline import SLA_AGENCY
from bus.sla.engine import SlaEngine
from bus.sla.events import SlaEmitter
from bus.sla.parties import Parties
from bus.sla.policy import load_policies
from bus.sla.store import DeadlineStore

__all__ = [
    "BUREAU",
    "CALENDAR",
    "ENV_REGULATOR",
    "POLICE",
    "POLICIES",
    "PROC",
    "RATE",
    "START",
    "FixedClock",
    "Inboxes",
    "JumpingClock",
    "answer",
    "bus_payload",
    "day",
    "engine_running",
    "make_engine",
    "outbox",
    "send",
    "store",
]

POLICE = "ygh.police.bureau"
BUREAU = "ygh.enforcement.bureau"
PROC = "ygh.procuratorate"
ENV_REGULATOR = "ygh.regulator.environment"
START = datetime(2026, 3, 2, 9, 0, tzinfo=SHANGHAI)
RATE = 86_400.0  # one simulated day per real second
POLICIES = load_policies()
CALENDAR = WorkCalendar(None)
store = DeadlineStore()


def day(d: int, hh: int = 23, mm: int = 59, ss: int = 59) -> datetime:
    """An instant of March 2026 in Shanghai."""
    return datetime(2026, 3, d, hh, mm, ss, tzinfo=SHANGHAI)


def make_engine(settings: Settings, sla_key: Path, clock: Clock) -> SlaEngine:
    emitter = SlaEmitter(settings, signer=load_signer(sla_key, agency_id=SLA_AGENCY))
    return SlaEngine(
        policies=POLICIES,
        calendar=CALENDAR,
        parties=Parties(load_registry(settings.agencies_file)),
        clock=clock,
        emitter=emitter,
    )


def bus_payload(envelope: Envelope) -> dict[str, Any]:
    """An envelope's payload as a dict."""
    model = default_codec().decode_payload_model(envelope.payload, kind=envelope.kind)[2]
    return model.model_dump()


async def outbox(pool: asyncpg.Pool, kind: str | None = None) -> list[Envelope]:
    """The envelopes in the outbox, in order, optionally of one kind."""
    rows = await pool.fetch("SELECT value FROM outbox ORDER BY id")
    envelopes = [default_codec().decode_envelope(bytes(r["value"])) for r in rows]
    return [e for e in envelopes if kind is None or e.kind == kind]


class FixedClock:
    """A clock that stands still unless a test moves it."""

    def __init__(self, now: datetime) -> None:
        self.at = now

    def now(self) -> datetime:
        return self.at

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(0)


class JumpingClock(FixedClock):
    """Stands still unless a test moves it, and a service sleeping on it waits a little real
    time (not a busy loop), so that it sees the test's jumps within a poll."""

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(min(max(seconds, 0.0), 0.05))


def send(party: Party, kind: str, rng: random.Random, clock: Clock, **kw: Any) -> Envelope:
    """A sample ``kind`` from ``party``, sent now by ``clock`` (its times lie shortly before)."""
    now = clock.now()
    return sample_envelope(party, kind, rng, now=now, sent_at=now, **kw)


def answer(
    party: Party, kind: str, rng: random.Random, clock: Clock, *, to: Envelope, **kw: Any
) -> Envelope:
    """``send`` a ``kind`` from ``party`` in the case and the conversation of ``to``."""
    return send(party, kind, rng, clock, correlation_id=to.correlation_id, case_id=to.case_id, **kw)


class Inboxes:
    """Everything read_committed in some agencies' inboxes, collected in the background."""

    def __init__(self, bus: Bus, agencies: list[str]) -> None:
        self._bus = bus
        self.got: dict[str, list[Envelope]] = {a: [] for a in agencies}
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Inboxes:
        for agency in self.got:
            consumer = AIOKafkaConsumer(
                self._bus.settings.topic_inbox(agency),
                bootstrap_servers=self._bus.settings.kafka_bootstrap,
                group_id=f"watch-{uuid.uuid4().hex[:8]}",
                auto_offset_reset="earliest",
                isolation_level="read_committed",
                enable_auto_commit=False,
            )
            await consumer.start()
            self._tasks.append(asyncio.create_task(self._collect(consumer, agency)))
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _collect(self, consumer: AIOKafkaConsumer, agency: str) -> None:
        try:
            while True:
                batch = await consumer.getmany(timeout_ms=200)
                for records in batch.values():
                    self.got[agency].extend(self._bus.envelopes(records))
        finally:
            await consumer.stop()

    def sla(self, agency: str, kind: str, policy: str) -> list[Envelope]:
        """The ``kind`` events about ``policy`` in ``agency``'s inbox."""
        return [
            e
            for e in self.got[agency]
            if e.kind == kind and self._bus.payload(e).policy_id == policy  # type: ignore[attr-defined]
        ]

    async def until(self, check: Callable[[], bool], timeout_s: float = 30) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not check():
            assert loop.time() < deadline, f"timed out; inboxes: {self.summary()}"
            await asyncio.sleep(0.1)

    def summary(self) -> dict[str, list[str]]:
        return {a: [e.kind for e in envs] for a, envs in self.got.items()}


@contextlib.asynccontextmanager
async def engine_running(
    bus: Bus, sla_key: Path, clock: Clock, *, replicas: int = 1
) -> AsyncIterator[None]:
    """``replicas`` SLA engines in this process for the block."""
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(
            run_sla_engine(
                bus.settings,
                key_file=sla_key,
                clock=clock,
                handle_signals=False,
                stop_event=stop,
                scheduler_poll_s=0.1,
                relay_poll_s=0.1,
            )
        )
        for _ in range(replicas)
    ]
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
