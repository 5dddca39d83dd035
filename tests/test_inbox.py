"""The inbox reader on the real Kafka and PostgreSQL: each message is handled once, atomically
with the handler's own writes, in order, through redeliveries, failures and bad bytes."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from prometheus_client import REGISTRY

from bus.codec import cloudevents_headers, encode_envelope, encode_payload, kafka_key
from bus.inbox import InboxHandlerFailed, InboxReader, handled_ids
from bus.models import PAYLOAD_MODELS, Envelope, Signature
from bus.settings import Settings
from bus.signing import Ed25519Signer, sign_envelope, write_keypair

AGENCY = "ygh.police.bureau"
SENDER = "ygh.enforcement.bureau"

Handler = Callable[[Any, Envelope, Any], Awaitable[None]]


@pytest.fixture
async def inbox_topic(settings: Settings) -> str:
    """This test's inbox topic of the police bureau."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(settings.topic_inbox(AGENCY), settings.topic_partitions, 1)]
        )
    finally:
        await admin.close()
    return settings.topic_inbox(AGENCY)


@pytest.fixture
async def pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=4)
    # The department's own state, written by handlers in the reader's transaction.
    await pool.execute(
        "CREATE TABLE work_done (seq bigserial PRIMARY KEY, message_id uuid NOT NULL,"
        " case_id text NOT NULL)"
    )
    yield pool
    await pool.close()


@pytest.fixture
def signer(tmp_path: Path) -> Ed25519Signer:
    files = write_keypair(SENDER, tmp_path)
    return Ed25519Signer.from_file(files.private_key, agency_id=SENDER)


@pytest.fixture
def consumer_name() -> str:
    """A consumer name of this test's own, so metric values do not mix between tests."""
    return f"police-adapter-{uuid.uuid4().hex[:8]}"


def _envelope(signer: Ed25519Signer, case_id: str) -> Envelope:
    mid = uuid.uuid4()
    now = datetime.now(UTC)
    ack = PAYLOAD_MODELS["bus.ack"](
        original_message_id=uuid.uuid4(), acknowledged_by=SENDER, acknowledged_at=now
    )
    unsigned = Envelope(
        message_id=mid,
        kind="bus.ack",
        schema_version=1,
        sender=SENDER,
        recipients=[AGENCY],
        case_id=case_id,
        correlation_id=str(mid),
        sent_at=now,
        payload=encode_payload("bus.ack", ack),
        signature=Signature(algorithm="ed25519", key_id=signer.key_id, value=b""),
    )
    return sign_envelope(unsigned, signer)


async def _produce(settings: Settings, topic: str, items: list[Envelope | bytes]) -> None:
    """Write envelopes (or raw bytes, under the key of the case ``raw``) to ``topic``."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, acks="all", enable_idempotence=True
    )
    await producer.start()
    try:
        for item in items:
            if isinstance(item, Envelope):
                await producer.send_and_wait(
                    topic,
                    encode_envelope(item),
                    key=kafka_key(item),
                    headers=cloudevents_headers(item),
                )
            else:
                await producer.send_and_wait(topic, item, key=b"YGH-2026-0001")
    finally:
        await producer.stop()


async def _record_work(conn: Any, envelope: Envelope, record: Any) -> None:
    await conn.execute(
        "INSERT INTO work_done (message_id, case_id) VALUES ($1, $2)",
        envelope.message_id,
        envelope.case_id,
    )


def _reader(
    settings: Settings,
    pool: asyncpg.Pool,
    consumer_name: str,
    handler: Handler = _record_work,
    **options: Any,
) -> InboxReader:
    return InboxReader(
        settings,
        agency_id=AGENCY,
        consumer_name=consumer_name,
        handler=handler,
        pool=pool,
        poll_timeout_ms=100,
        **options,
    )


def _seen(consumer: str, outcome: str) -> float:
    return (
        REGISTRY.get_sample_value(
            "casebus_inbox_messages_total", {"consumer": consumer, "outcome": outcome}
        )
        or 0.0
    )


async def _until(check: Callable[[], Awaitable[bool]], timeout_s: float = 15) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        await asyncio.sleep(0.05)


async def _work(pool: asyncpg.Pool) -> list[uuid.UUID]:
    return [
        r["message_id"] for r in await pool.fetch("SELECT message_id FROM work_done ORDER BY seq")
    ]


async def test_redelivered_messages_are_handled_exactly_once(
    settings: Settings,
    inbox_topic: str,
    pool: asyncpg.Pool,
    signer: Ed25519Signer,
    consumer_name: str,
) -> None:
    envelopes = [_envelope(signer, f"YGH-2026-{i % 3:04d}") for i in range(9)]
    await _produce(settings, inbox_topic, list(envelopes))

    async def all_done() -> bool:
        return len(await _work(pool)) >= 9

    async with _reader(settings, pool, consumer_name) as reader:
        assert reader.group_id == f"{settings.topic_prefix}.inbox.{consumer_name}"
        assert reader.topic == inbox_topic
        await _until(all_done)

    # The router delivers the same messages again, and a reader in a new consumer group (its
    # offsets reset to the start) reads the originals a second time as well.
    await _produce(settings, inbox_topic, list(envelopes))

    async def all_redelivered() -> bool:
        return _seen(consumer_name, "duplicate") >= 18

    replay = _reader(settings, pool, consumer_name, group_id=f"{settings.topic_prefix}.replay")
    async with replay:
        await _until(all_redelivered)

    work = await _work(pool)
    assert sorted(work) == sorted(e.message_id for e in envelopes)
    assert _seen(consumer_name, "handled") == 9
    async with pool.acquire() as conn:
        assert sorted(await handled_ids(conn, consumer_name)) == sorted(work)
        markers = await conn.fetch(
            "SELECT topic, partition, kafka_offset FROM inbox_handled WHERE consumer = $1",
            consumer_name,
        )
    assert {m["topic"] for m in markers} == {inbox_topic}
    # Per case, the handling order is the sending order.
    for case in {e.case_id for e in envelopes}:
        sent = [e.message_id for e in envelopes if e.case_id == case]
        assert [m for m in work if m in sent] == sent


async def test_a_failing_handler_is_retried_without_skipping_and_keeps_order(
    settings: Settings,
    inbox_topic: str,
    pool: asyncpg.Pool,
    signer: Ed25519Signer,
    consumer_name: str,
) -> None:
    envelopes = [_envelope(signer, "YGH-2026-0007") for _ in range(5)]
    flaky = envelopes[1].message_id
    calls: Counter[uuid.UUID] = Counter()

    async def fails_twice(conn: Any, envelope: Envelope, record: Any) -> None:
        calls[envelope.message_id] += 1
        # Written first, so a failure afterwards proves the rollback takes it away again.
        await _record_work(conn, envelope, record)
        if envelope.message_id == flaky and calls[flaky] <= 2:
            raise RuntimeError("department system busy")

    await _produce(settings, inbox_topic, list(envelopes))

    async def all_done() -> bool:
        return len(await _work(pool)) >= 5

    async with _reader(settings, pool, consumer_name, fails_twice, retry_initial_s=0.05):
        await _until(all_done)

    assert await _work(pool) == [e.message_id for e in envelopes]
    assert calls[flaky] == 3
    assert all(calls[e.message_id] == 1 for e in envelopes if e.message_id != flaky)
    assert _seen(consumer_name, "failed") == 2
    async with pool.acquire() as conn:
        assert await handled_ids(conn, consumer_name) == [e.message_id for e in envelopes]


async def test_a_handler_failing_every_attempt_stops_the_reader_before_the_message(
    settings: Settings,
    inbox_topic: str,
    pool: asyncpg.Pool,
    signer: Ed25519Signer,
    consumer_name: str,
) -> None:
    envelopes = [_envelope(signer, "YGH-2026-0008") for _ in range(3)]
    stuck = envelopes[1]

    async def always_fails_on_one(conn: Any, envelope: Envelope, record: Any) -> None:
        await _record_work(conn, envelope, record)
        if envelope.message_id == stuck.message_id:
            raise RuntimeError("mapping not implemented")

    await _produce(settings, inbox_topic, list(envelopes))
    reader = _reader(
        settings, pool, consumer_name, always_fails_on_one, max_attempts=3, retry_initial_s=0.05
    )
    with pytest.raises(InboxHandlerFailed) as raised:
        await asyncio.wait_for(reader.run(), 20)
    assert raised.value.attempts == 3
    assert raised.value.message_id == str(stuck.message_id)
    assert raised.value.case_id == stuck.case_id
    assert await _work(pool) == [envelopes[0].message_id]

    # Fixed and restarted in the same group: it resumes at the failed message, not after it.
    async def all_done() -> bool:
        return len(await _work(pool)) >= 3

    async with _reader(settings, pool, consumer_name):
        await _until(all_done)
    assert await _work(pool) == [e.message_id for e in envelopes]
    assert _seen(consumer_name, "duplicate") == 0


async def test_undecodable_records_are_skipped_and_the_next_message_is_handled(
    settings: Settings,
    inbox_topic: str,
    pool: asyncpg.Pool,
    signer: Ed25519Signer,
    consumer_name: str,
) -> None:
    good = _envelope(signer, "YGH-2026-0001")
    truncated = encode_envelope(good)[:-5]
    await _produce(settings, inbox_topic, [b"not avro at all", truncated, good])

    async def handled() -> bool:
        return len(await _work(pool)) >= 1

    async with _reader(settings, pool, consumer_name):
        await _until(handled)
    assert await _work(pool) == [good.message_id]
    assert _seen(consumer_name, "undecodable") == 2


async def test_stop_finishes_the_record_in_flight_and_commits_it(
    settings: Settings,
    inbox_topic: str,
    pool: asyncpg.Pool,
    signer: Ed25519Signer,
    consumer_name: str,
) -> None:
    envelopes = [_envelope(signer, "YGH-2026-0009") for _ in range(3)]
    started = asyncio.Event()

    async def slow(conn: Any, envelope: Envelope, record: Any) -> None:
        started.set()
        await asyncio.sleep(1.0)
        await _record_work(conn, envelope, record)

    await _produce(settings, inbox_topic, list(envelopes))
    reader = _reader(settings, pool, consumer_name, slow)
    await reader.start()
    await asyncio.wait_for(started.wait(), 15)
    await reader.stop()
    assert await _work(pool) == [envelopes[0].message_id]

    # The handled record's offset was committed: the group goes on with the next one.
    async def all_done() -> bool:
        return len(await _work(pool)) >= 3

    async with _reader(settings, pool, consumer_name):
        await _until(all_done)
    assert await _work(pool) == [e.message_id for e in envelopes]
    assert _seen(consumer_name, "duplicate") == 0
