"""Faults, for real: a router SIGKILLed at three points of a batch, a broker restarted under
load, PostgreSQL stopped under load. After each, every message has exactly one audit entry,
reaches its recipient exactly once, and each case's messages arrive in order."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from buskit import Bus
from faultkit import (
    POLICE,
    check_exactly_once_in_order,
    load_at,
    logged,
    router_killed_at,
    stop,
    stream,
    tail,
    two_routers_one_killed,
)

from bus.router.app import _GC_THRESHOLDS as GC_THRESHOLDS
from bus.router.service import discard_producer
from bus.settings import REPO_ROOT, Settings

pytestmark = pytest.mark.slow


@pytest.fixture
async def bus(provisioned: Settings, tmp_path: Path) -> AsyncIterator[Bus]:
    b = Bus(provisioned.model_copy(update={"router_max_batch": 100}), tmp_path)
    await b.setup()
    yield b
    await b.close()


@pytest.mark.parametrize(
    "failpoint", ["router.after_audit", "router.mid_produce", "router.after_commit"]
)
@pytest.mark.timeout(300)
async def test_router_killed_mid_batch_loses_nothing_and_delivers_nothing_twice(
    bus: Bus, tmp_path: Path, failpoint: str
) -> None:
    police = await bus.party(POLICE)
    await router_killed_at(bus, tmp_path, stream(police, cases=20, per_case=50), failpoint)


@pytest.mark.timeout(300)
async def test_a_failed_transaction_rewinds_the_batch_audited_behind_it(
    bus: Bus, tmp_path: Path
) -> None:
    """The router audits batch N+1 while batch N's transaction is in flight. When N's commit
    fails, both are read again from the committed offsets and delivered once, in order."""
    police = await bus.party(POLICE)
    sent = stream(police, cases=20, per_case=50)
    await bus.submit(*sent)  # a backlog, so every batch has one decided behind it
    log_file = tmp_path / "router.log"
    router = bus.router_process(failpoints="router.commit_fails:2", log_file=log_file)
    try:
        await check_exactly_once_in_order(bus, sent)
        assert router.poll() is None, tail(log_file)
    finally:
        stop(router)
    log = log_file.read_text()
    assert log.count("router.deliver_failed") == 1, tail(log_file)
    # The second transaction failed after a third batch had been audited behind it.
    assert "failpoint router.commit_fails" in log


def _local(*args: str) -> None:
    proc = subprocess.run(
        [str(REPO_ROOT / "deploy" / "local" / args[0]), *args[1:]],
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert proc.returncode == 0, f"deploy/local/{' '.join(args)} failed:\n{proc.stderr[-3000:]}"


def _kill_kafka() -> None:
    """SIGKILL the local broker, as a power cut would (no clean shutdown, no flush)."""
    status = subprocess.run(
        [str(REPO_ROOT / "deploy" / "local" / "status")], capture_output=True, text=True
    ).stdout
    pid = int(status.split("kafka: running (pid ", 1)[1].split(",", 1)[0])
    os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("how", ["stopped", "killed"])
@pytest.mark.timeout(300)
async def test_broker_restart_under_load_loses_nothing(bus: Bus, tmp_path: Path, how: str) -> None:
    police = await bus.party(POLICE)
    sent = stream(police, cases=10, per_case=40)
    router = bus.router_process(log_file=tmp_path / "router.log")
    try:
        await logged(tmp_path / "router.log", "router.started")
        load = asyncio.create_task(load_at(bus, sent, rate_per_s=100))
        await logged(tmp_path / "router.log", "router.delivered")
        try:
            if how == "stopped":
                await asyncio.to_thread(_local, "down", "kafka")
            else:
                _kill_kafka()
            await asyncio.sleep(3)
        finally:
            # `up` brings the same broker back on its data: what was sent before survives.
            # Always: the rest of the session needs it.
            await asyncio.to_thread(_local, "up")
        await asyncio.wait_for(load, 180)
        await check_exactly_once_in_order(bus, sent)
    finally:
        stop(router)


@pytest.mark.timeout(300)
async def test_a_producer_discarded_while_the_broker_is_down_leaves_nothing_running(
    bus: Bus,
) -> None:
    # aiokafka's stop() waits to flush what the broker never took; a wait_for that gives up
    # leaves the old producer's sender running, to send its transaction's requests under the
    # id its successor took over once the broker is back. discard_producer ends it.
    topic = bus.settings.topic_dead()
    producer = AIOKafkaProducer(
        **bus.settings.kafka_client_options(),
        transactional_id=f"{bus.settings.topic_prefix}.discard-probe",
        enable_idempotence=True,
        acks="all",
    )
    await producer.start()
    try:
        await producer.begin_transaction()
        await (await producer.send(topic, b"acknowledged"))
        await asyncio.to_thread(_local, "down", "kafka")
        await producer.send(topic, b"never acknowledged")
        await discard_producer(producer, timeout_s=2)
        sender = producer._sender.sender_task
        assert sender.done(), "the discarded producer's sender still runs"
    finally:
        await asyncio.to_thread(_local, "up")  # always: the rest of the session needs it


@pytest.mark.timeout(300)
async def test_postgres_stopped_for_ten_seconds_under_load(bus: Bus, tmp_path: Path) -> None:
    police = await bus.party(POLICE)
    sent = stream(police, cases=10, per_case=30)
    log_file = tmp_path / "router.log"
    router = bus.router_process(log_file=log_file)
    try:
        await logged(log_file, "router.started")
        load = asyncio.create_task(load_at(bus, sent, rate_per_s=60))
        await logged(log_file, "router.delivered")
        try:
            await asyncio.to_thread(_local, "down", "pg")
            await asyncio.sleep(10)
            died = router.poll()
        finally:
            await asyncio.to_thread(_local, "up")  # always: the rest of the session needs it
        assert died is None, "the router died while PostgreSQL was away:\n" + tail(log_file)
        await asyncio.wait_for(load, 120)
        await check_exactly_once_in_order(bus, sent)
    finally:
        stop(router)
    retries = log_file.read_text().count("router.audit_retry")
    # It waited with backoff: a handful of retries over ten seconds, not a busy loop.
    assert 3 <= retries <= 60, retries


@pytest.mark.timeout(300)
async def test_two_routers_share_the_partitions_and_survive_one_killed(
    bus: Bus, tmp_path: Path
) -> None:
    police = await bus.party(POLICE)
    await two_routers_one_killed(bus, tmp_path, stream(police, cases=20, per_case=30))


async def test_the_router_process_freezes_what_it_set_up_out_of_the_collectors_reach(
    bus: Bus, tmp_path: Path
) -> None:
    # Full collections walked the start-up objects (30-43 ms every ~0.6 s while draining a
    # backlog, collecting nothing); `casebus router` freezes them once it is set up.
    log_file = tmp_path / "router.log"
    router = bus.router_process(log_file=log_file)
    try:
        await logged(log_file, "router.gc_frozen")
        lines = [json.loads(x) for x in log_file.read_text().splitlines() if "gc_frozen" in x]
        assert lines[0]["objects"] > 10_000, lines[0]  # modules, schemas and models at least
        # and collects the young generation less often: a batch lives until it is done
        assert lines[0]["thresholds"] == list(GC_THRESHOLDS), lines[0]
        await logged(log_file, "router.started")
    finally:
        stop(router)
    assert router.returncode == 0, tail(log_file)
