"""Faults, for real: a router SIGKILLed at three points of a batch, a broker restarted under
load, PostgreSQL stopped under load. After each, every message has exactly one audit entry,
reaches its recipient exactly once, and each case's messages arrive in order."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from buskit import Bus, receipt_payload

from bus.inbox import InboxReader
from bus.models import Envelope
from bus.party import Party
from bus.router.service import discard_producer
from bus.settings import REPO_ROOT, Settings

POLICE = "ygh.police.bureau"
BUREAU = "ygh.enforcement.bureau"

pytestmark = pytest.mark.slow


@pytest.fixture
async def bus(provisioned: Settings, tmp_path: Path) -> AsyncIterator[Bus]:
    b = Bus(provisioned.model_copy(update={"router_max_batch": 100}), tmp_path)
    await b.setup()
    yield b
    await b.close()


def _stream(police: Party, *, cases: int, per_case: int, start: int = 0) -> list[Envelope]:
    """Messages round-robin over cases; the transfer-letter number carries (case, sequence)."""
    out = []
    for seq in range(start, start + per_case):
        for c in range(cases):
            case = f"YGH-2026-{c:04d}"
            payload = receipt_payload().model_copy(update={"transfer_letter_no": f"{case}#{seq}"})
            out.append(police.envelope(payload, recipients=[BUREAU], case_id=case))
    return out


async def _wait(proc: subprocess.Popen[bytes], timeout_s: float) -> int:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while proc.poll() is None:
        if loop.time() > deadline:
            proc.kill()
            raise AssertionError("router process did not end in time")
        await asyncio.sleep(0.1)
    return proc.returncode


async def _logged(path: Path, text: str, timeout_s: float = 60) -> None:
    """Wait until a router's log says ``text`` (it has started, it has delivered...)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        if path.exists() and text in path.read_text():
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"{path.name} never logged {text!r}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def _check_exactly_once_in_order(bus: Bus, sent: list[Envelope]) -> None:
    """The proofs every fault test ends with."""
    raw = await bus.inbox(BUREAU, want=len(sent), timeout_s=120, settle_s=2)
    delivered = bus.envelopes(raw)
    ids = [e.message_id for e in delivered]
    twice, lost = len(ids) - len(set(ids)), {e.message_id for e in sent} - set(ids)
    assert not twice and not lost, f"{twice} deliveries seen twice, {len(lost)} messages lost"
    seqs: dict[str, list[int]] = defaultdict(list)
    for e in delivered:
        seqs[e.case_id].append(int(bus.payload(e).transfer_letter_no.split("#")[1]))  # type: ignore[attr-defined]
    for case, order in seqs.items():
        assert order == sorted(order), f"case {case} out of order"

    pool = await asyncpg.create_pool(bus.settings.database_url, min_size=1, max_size=4)
    try:
        counts = await pool.fetch(
            "SELECT message_id, count(*) AS n FROM audit_entries WHERE event_kind = 'accepted' "
            "GROUP BY message_id"
        )
        assert len(counts) == len(sent) and all(r["n"] == 1 for r in counts)

        # A recipient using the inbox helper handles each message once, in per-case order.
        await pool.execute(
            "CREATE TABLE t_handled (n serial, message_id uuid, case_id text, seq int)"
        )

        async def handle(conn: asyncpg.Connection, env: Envelope, _: object) -> None:
            seq = int(bus.payload(env).transfer_letter_no.split("#")[1])  # type: ignore[attr-defined]
            await conn.execute(
                "INSERT INTO t_handled (message_id, case_id, seq) VALUES ($1, $2, $3)",
                env.message_id,
                env.case_id,
                seq,
            )

        reader = InboxReader(
            bus.settings,
            agency_id=BUREAU,
            consumer_name="bureau-system",
            handler=handle,
            pool=pool,
        )
        task = asyncio.create_task(reader.run())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while loop.time() < deadline:
            if await pool.fetchval("SELECT count(*) FROM t_handled") >= len(sent):
                break
            await asyncio.sleep(0.3)
        await asyncio.sleep(1)
        await reader.stop()
        await asyncio.wait_for(task, 30)
        rows = await pool.fetch("SELECT message_id, case_id, seq FROM t_handled ORDER BY n")
    finally:
        await pool.close()
    assert len(rows) == len(sent) == len({r["message_id"] for r in rows})
    handled: dict[str, list[int]] = defaultdict(list)
    for r in rows:
        handled[r["case_id"]].append(r["seq"])
    assert all(v == sorted(v) for v in handled.values())


@pytest.mark.parametrize(
    "failpoint", ["router.after_audit", "router.mid_produce", "router.after_commit"]
)
@pytest.mark.timeout(300)
async def test_router_killed_mid_batch_loses_nothing_and_delivers_nothing_twice(
    bus: Bus, tmp_path: Path, failpoint: str
) -> None:
    police = await bus.party(POLICE)
    sent = _stream(police, cases=20, per_case=50)
    await bus.submit(*sent)
    first = bus.router_process(failpoints=f"{failpoint}:3", log_file=tmp_path / "r1.log")
    assert await _wait(first, 120) == -signal.SIGKILL
    second = bus.router_process(log_file=tmp_path / "r2.log")
    try:
        await _check_exactly_once_in_order(bus, sent)
    finally:
        _stop(second)


@pytest.mark.timeout(300)
async def test_a_failed_transaction_rewinds_the_batch_audited_behind_it(
    bus: Bus, tmp_path: Path
) -> None:
    """The router audits batch N+1 while batch N's transaction is in flight. When N's commit
    fails, both are read again from the committed offsets and delivered once, in order."""
    police = await bus.party(POLICE)
    sent = _stream(police, cases=20, per_case=50)
    await bus.submit(*sent)  # a backlog, so every batch has one decided behind it
    log_file = tmp_path / "router.log"
    router = bus.router_process(failpoints="router.commit_fails:2", log_file=log_file)
    try:
        await _check_exactly_once_in_order(bus, sent)
        assert router.poll() is None, _tail(log_file)
    finally:
        _stop(router)
    log = log_file.read_text()
    assert log.count("router.deliver_failed") == 1, _tail(log_file)
    # The second transaction failed after a third batch had been audited behind it.
    assert "failpoint router.commit_fails" in log


async def _load(bus: Bus, envelopes: list[Envelope], rate_per_s: float) -> None:
    """Submit at a steady rate; on a broker error, wait and send the same message again."""
    from aiokafka.errors import KafkaError

    for env in envelopes:
        while True:
            try:
                await asyncio.wait_for(bus.submit(env), 20)
                break
            except (KafkaError, TimeoutError):
                await bus.close()
                await asyncio.sleep(0.5)
                try:
                    await bus.setup()
                except KafkaError:
                    continue
        await asyncio.sleep(1 / rate_per_s)


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


def _tail(log_file: Path, chars: int = 4000) -> str:
    return log_file.read_text(errors="replace")[-chars:]


@pytest.mark.parametrize("how", ["stopped", "killed"])
@pytest.mark.timeout(300)
async def test_broker_restart_under_load_loses_nothing(bus: Bus, tmp_path: Path, how: str) -> None:
    police = await bus.party(POLICE)
    sent = _stream(police, cases=10, per_case=40)
    router = bus.router_process(log_file=tmp_path / "router.log")
    try:
        await _logged(tmp_path / "router.log", "router.started")
        load = asyncio.create_task(_load(bus, sent, rate_per_s=100))
        await _logged(tmp_path / "router.log", "router.delivered")
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
        await _check_exactly_once_in_order(bus, sent)
    finally:
        _stop(router)


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
    sent = _stream(police, cases=10, per_case=30)
    log_file = tmp_path / "router.log"
    router = bus.router_process(log_file=log_file)
    try:
        await _logged(log_file, "router.started")
        load = asyncio.create_task(_load(bus, sent, rate_per_s=60))
        await _logged(log_file, "router.delivered")
        try:
            await asyncio.to_thread(_local, "down", "pg")
            await asyncio.sleep(10)
            died = router.poll()
        finally:
            await asyncio.to_thread(_local, "up")  # always: the rest of the session needs it
        assert died is None, "the router died while PostgreSQL was away:\n" + _tail(log_file)
        await asyncio.wait_for(load, 120)
        await _check_exactly_once_in_order(bus, sent)
    finally:
        _stop(router)
    retries = log_file.read_text().count("router.audit_retry")
    # It waited with backoff: a handful of retries over ten seconds, not a busy loop.
    assert 3 <= retries <= 60, retries


@pytest.mark.timeout(300)
async def test_two_routers_share_the_partitions_and_survive_one_killed(
    bus: Bus, tmp_path: Path
) -> None:
    police = await bus.party(POLICE)
    sent = _stream(police, cases=20, per_case=30)
    logs = {name: tmp_path / f"{name}.log" for name in ("a", "b")}
    a = bus.router_process(router_id="router-a", log_file=logs["a"])
    b = bus.router_process(router_id="router-b", log_file=logs["b"])
    try:
        await _logged(logs["a"], "router.started")
        await _logged(logs["b"], "router.started")
        load = asyncio.create_task(_load(bus, sent, rate_per_s=60))
        # Both replicas take part before the kill.
        await _logged(logs["a"], "router.delivered")
        await _logged(logs["b"], "router.delivered")
        a.kill()
        assert await _wait(a, 10) == -signal.SIGKILL
        await asyncio.wait_for(load, 120)
        await _check_exactly_once_in_order(bus, sent)
        # A graceful stop finishes the batch in flight and leaves the group.
        b.send_signal(signal.SIGTERM)
        assert await _wait(b, 30) == 0
        assert "router.stopped" in logs["b"].read_text()
    finally:
        _stop(a)
        _stop(b)


async def test_the_router_process_freezes_what_it_set_up_out_of_the_collectors_reach(
    bus: Bus, tmp_path: Path
) -> None:
    # Full collections walked the start-up objects (30-43 ms every ~0.6 s while draining a
    # backlog, collecting nothing); `casebus router` freezes them once it is set up.
    log_file = tmp_path / "router.log"
    router = bus.router_process(log_file=log_file)
    try:
        await _logged(log_file, "router.gc_frozen")
        lines = [json.loads(x) for x in log_file.read_text().splitlines() if "gc_frozen" in x]
        assert lines[0]["objects"] > 10_000, lines[0]  # modules, schemas and models at least
        await _logged(log_file, "router.started")
    finally:
        _stop(router)
    assert router.returncode == 0, _tail(log_file)
