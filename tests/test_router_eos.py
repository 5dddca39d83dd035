"""Exactly once at the edges, made to happen on purpose rather than hoped for under load.

- A replica frozen (SIGSTOP) after producing a batch, or after adding the batch's offsets to
  its transaction, while a second replica takes its partitions and the frozen one is later let
  go: a zombie. Before bus.router.eos, both variants delivered the batch twice (the new owner
  read the old offset; the zombie's transaction then committed).
- A commit that happened but whose answer the router never saw.
- A record too large to route, then a valid message on the same key: the partition moves on.
Every count is raw, on a read_committed consumer, not through the inbox helper's dedup.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import uuid
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import MessageSizeTooLargeError
from buskit import Bus, receipt_payload
from faultkit import check_exactly_once_in_order, logged, stop, stream, tail

from bus.audit.events import decode_leaf
from bus.router.outputs import OVERSIZE_PREFIX_BYTES
from bus.settings import Settings

POLICE = "ygh.police.bureau"
BUREAU = "ygh.enforcement.bureau"

pytestmark = pytest.mark.slow


@pytest.fixture
async def bus(provisioned: Settings, tmp_path: Path) -> Bus:
    b = Bus(provisioned.model_copy(update={"router_max_batch": 25}), tmp_path)
    await b.setup()
    yield b  # type: ignore[misc]
    await b.close()


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


async def _frozen(pid: int, log_file: Path, timeout_s: float = 60) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while _state(pid) != "T":
        if loop.time() > deadline:
            raise AssertionError("the router never reached its failpoint:\n" + tail(log_file))
        await asyncio.sleep(0.1)


def _logged_deliveries(log_file: Path) -> int:
    """Messages the router logged as delivered: one ``router.delivered`` line per batch, which
    counts its ``messages``."""
    return sum(
        json.loads(line)["messages"]
        for line in log_file.read_text().splitlines()
        if line.startswith("{") and '"router.delivered"' in line
    )


async def _delivered(log_file: Path, n: int, timeout_s: float = 90) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while _logged_deliveries(log_file) < n:
        if loop.time() > deadline:
            raise AssertionError(f"fewer than {n} deliveries logged:\n" + tail(log_file))
        await asyncio.sleep(0.3)


@pytest.mark.parametrize("point", ["router.after_produce", "router.after_offsets"])
@pytest.mark.timeout(300)
async def test_a_frozen_replica_that_comes_back_delivers_nothing_twice(
    bus: Bus, tmp_path: Path, point: str
) -> None:
    police = await bus.party(POLICE)
    sent = stream(police, cases=6, per_case=25)
    await bus.submit(*sent)
    logs = {name: tmp_path / f"{name}.log" for name in ("a", "b")}
    # A long transaction timeout: the broker must not settle the zombie's transaction for it.
    slow_abort = {"CASEBUS_ROUTER_TRANSACTION_TIMEOUT_S": "120"}
    a = bus.router_process(
        router_id="router-a",
        failpoints=f"{point}:1:stop",
        log_file=logs["a"],
        extra_env=slow_abort,
    )
    b = None
    try:
        await _frozen(a.pid, logs["a"])
        b = bus.router_process(router_id="router-b", log_file=logs["b"], extra_env=slow_abort)
        if point == "router.after_offsets":
            # The zombie's offsets are pending: the new owner must wait for them, not start
            # from the offset before them.
            await logged(logs["b"], "router.offsets_unstable", timeout_s=90)
        else:
            # The new owner routes everything, the frozen replica's batch included. (Its
            # deliveries are not readable yet: a read_committed reader stops at the frozen
            # replica's open transaction until it ends.)
            await _delivered(logs["b"], len(sent))
        a.send_signal(signal.SIGCONT)
        await check_exactly_once_in_order(bus, sent)
        if point == "router.after_produce":
            assert "router.offsets_fenced" in logs["a"].read_text(), tail(logs["a"])
    finally:
        if a.poll() is None:
            a.send_signal(signal.SIGCONT)
        stop(a)
        if b is not None:
            stop(b)


@pytest.mark.timeout(300)
async def test_a_replica_frozen_inside_its_audit_transaction_does_not_stop_the_others(
    bus: Bus, tmp_path: Path
) -> None:
    # The frozen replica holds the audit log's append lock (a transaction-scoped advisory
    # lock). Before the routers' sessions had idle_in_transaction_session_timeout, every other
    # replica's audit waited for it until it was let go (bench/faults_loop.py: 80 s).
    police = await bus.party(POLICE)
    sent = stream(police, cases=6, per_case=25)
    await bus.submit(*sent)
    logs = {name: tmp_path / f"{name}.log" for name in ("a", "b")}
    a = bus.router_process(
        router_id="router-a", failpoints="router.in_audit:1:stop", log_file=logs["a"]
    )
    b = None
    try:
        await _frozen(a.pid, logs["a"])
        b = bus.router_process(router_id="router-b", log_file=logs["b"])
        await _delivered(logs["b"], len(sent), timeout_s=60)  # while the other is frozen
        assert _state(a.pid) == "T"
        a.send_signal(signal.SIGCONT)
        await check_exactly_once_in_order(bus, sent)
    finally:
        if a.poll() is None:
            a.send_signal(signal.SIGCONT)
        stop(a)
        if b is not None:
            stop(b)


@pytest.mark.timeout(300)
async def test_a_commit_whose_answer_was_lost_is_not_routed_again(bus: Bus, tmp_path: Path) -> None:
    police = await bus.party(POLICE)
    sent = stream(police, cases=10, per_case=20)
    await bus.submit(*sent)
    log_file = tmp_path / "router.log"
    router = bus.router_process(failpoints="router.commit_lost:2", log_file=log_file)
    try:
        await check_exactly_once_in_order(bus, sent)
        assert router.poll() is None, tail(log_file)
    finally:
        stop(router)
    log = log_file.read_text()
    assert "failpoint router.commit_lost" in log, tail(log_file)
    failed = [json.loads(x) for x in log.splitlines() if "router.deliver_failed" in x]
    assert [f["outcome"] for f in failed] == ["unknown"], failed


async def _dead_and_audited(bus: Bus, sha256: str) -> tuple[dict[str, bytes], dict[str, object]]:
    dead = await bus.read(bus.settings.topic_dead(), want=1, timeout_s=30)
    [letter] = [r for r in dead if dict(r.headers).get("casebus_value_sha256") == sha256.encode()]
    headers = {k: bytes(v) for k, v in letter.headers}
    assert len(letter.value or b"") == OVERSIZE_PREFIX_BYTES
    conn = await asyncpg.connect(bus.settings.database_url)
    try:
        leaves = [
            decode_leaf(r["leaf"])
            for r in await conn.fetch(
                "SELECT leaf FROM audit_entries WHERE event_kind IN ('dead_lettered', 'rejected')"
            )
        ]
        body = await conn.fetchval(
            "SELECT record_value FROM dead_letter_bodies WHERE value_sha256 = $1",
            bytes.fromhex(sha256),
        )
    finally:
        await conn.close()
    [leaf] = [x for x in leaves if x["details"].get("value", {}).get("sha256") == sha256]
    assert body is not None and body[:OVERSIZE_PREFIX_BYTES] == letter.value
    return headers, leaf


@pytest.mark.timeout(120)
async def test_a_record_too_large_to_route_does_not_stop_its_partition(bus: Bus) -> None:
    police = await bus.party(POLICE)
    garbage = os.urandom(1_000_000)
    env = police.envelope(receipt_payload(), recipients=[BUREAU], case_id="YGH-2026-0777")
    async with bus.router():
        loop = asyncio.get_running_loop()
        await bus.submit(garbage, key=b"YGH-2026-0777")
        await bus.submit(env)  # same key, so the same partition, after the garbage
        t0 = loop.time()
        delivered = await bus.inbox(BUREAU, want=1, timeout_s=30)
        took = loop.time() - t0
        assert [r.value for r in delivered] == [police.value(env)]
        assert took < 10, took
        sha = hashlib.sha256(garbage).hexdigest()
        headers, leaf = await _dead_and_audited(bus, sha)
    assert headers["casebus_dead_code"] == b"too_large"
    reason = json.loads(headers["casebus_dead_reason"])
    assert reason[0]["rule"] == "too_large"
    assert str(bus.settings.router_max_record_bytes) in reason[0]["message"]
    assert leaf["event"] == "dead_lettered" and "envelope" not in leaf
    assert leaf["details"]["value"]["size"] == len(garbage)


@pytest.mark.timeout(120)
async def test_an_envelope_over_the_limit_is_nacked_naming_the_limit(bus: Bus) -> None:
    police = await bus.party(POLICE)
    env = police.envelope(receipt_payload(), recipients=[BUREAU], case_id="YGH-2026-0778")
    value = police.value(env)
    limit = 4096
    padding = ("x-padding", b"p" * (limit - len(value) + 100))  # headers count too
    async with bus.router(router_max_record_bytes=limit):
        producer = bus._producer
        assert producer is not None
        await producer.send_and_wait(
            bus.settings.topic_submit(POLICE),
            value,
            key=env.case_id.encode(),
            headers=[*bus.codec.cloudevents_headers(env), padding],
        )
        nacks = [e for e in bus.envelopes(await bus.inbox(POLICE, want=1)) if e.kind == "bus.nack"]
    [nack] = nacks
    payload = bus.payload(nack)
    assert payload.original_message_id == env.message_id  # type: ignore[attr-defined]
    assert payload.code == "too_large"  # type: ignore[attr-defined]
    [reason] = payload.reasons  # type: ignore[attr-defined]
    assert reason.rule == "too_large" and str(limit) in reason.message


async def _set_topic_config(bus: Bus, topic: str, configs: dict[str, str]) -> None:
    """The topic's whole set of overrides (AlterConfigs, not incremental: {} resets all)."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    admin = AIOKafkaAdminClient(**bus.settings.kafka_client_options())
    await admin.start()
    try:
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs)])
    finally:
        await admin.close()
    # The broker applies the change a moment later: wait until a 400-byte record is refused
    # (or taken) as the new limit says, probing in transactions that are aborted, so that no
    # reader ever sees a probe.
    refuse = "max.message.bytes" in configs
    probe = AIOKafkaProducer(
        **bus.settings.kafka_client_options(), transactional_id=f"probe-{uuid.uuid4().hex[:8]}"
    )
    await probe.start()
    try:
        for _ in range(100):
            await probe.begin_transaction()
            try:
                await probe.send_and_wait(topic, b"p" * 400)
                refused = False
            except MessageSizeTooLargeError:
                refused = True
            await probe.abort_transaction()
            if refused == refuse:
                return
            await asyncio.sleep(0.1)
    finally:
        await probe.stop()
    raise AssertionError(f"{topic}: the broker never applied {configs}")


@pytest.mark.timeout(180)
async def test_a_delivery_kafka_refuses_for_good_is_refused_and_the_partition_moves_on(
    bus: Bus,
) -> None:
    # The bureau's inbox takes no record above 200 bytes: every delivery to it is refused by
    # the broker (MESSAGE_TOO_LARGE), whatever the retry. The message is refused in turn —
    # audited, dead-lettered, nacked — and what comes after it on the partition flows on.
    police = await bus.party(POLICE)
    inbox = bus.settings.topic_inbox(BUREAU)
    stuck = police.envelope(receipt_payload(1), recipients=[BUREAU], case_id="YGH-2026-0801")
    await _set_topic_config(bus, inbox, {"max.message.bytes": "200"})
    async with bus.router():
        await bus.submit(stuck)
        nacks = [
            e
            for e in bus.envelopes(await bus.inbox(POLICE, want=1, timeout_s=60))
            if e.kind == "bus.nack"
        ]
        assert [bus.payload(n).original_message_id for n in nacks] == [stuck.message_id]  # type: ignore[attr-defined]
        assert bus.payload(nacks[0]).code == "undeliverable"  # type: ignore[attr-defined]
        await _set_topic_config(bus, inbox, {})
        after = police.envelope(receipt_payload(2), recipients=[BUREAU], case_id="YGH-2026-0801")
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await bus.submit(after)
        delivered = await bus.inbox(BUREAU, want=1, timeout_s=30, settle_s=1)
        took = loop.time() - t0
    assert [r.value for r in delivered] == [police.value(after)]
    assert took < 10, took
    sha = hashlib.sha256(police.value(stuck)).hexdigest()
    dead = await bus.read(bus.settings.topic_dead(), want=1, timeout_s=30)
    [letter] = dead
    headers = {k: bytes(v) for k, v in letter.headers}
    assert headers["casebus_dead_code"] == b"undeliverable"
    assert headers["casebus_value_sha256"] == sha.encode()
    conn = await asyncpg.connect(bus.settings.database_url)
    try:
        events = [
            r["event_kind"]
            for r in await conn.fetch(
                "SELECT event_kind FROM audit_entries WHERE case_id = 'YGH-2026-0801' ORDER BY idx"
            )
        ]
    finally:
        await conn.close()
    # The log tells what happened: accepted, then refused once Kafka would not take it.
    assert events[0] == "accepted" and "rejected" in events, events
