"""The broker behaves as the bus relies on: idempotent acks=all produce, consumer groups,
headers, and transactions seen correctly by read_committed consumers."""

from __future__ import annotations

import asyncio
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bus.settings import Settings


async def _new_topic(settings: Settings, partitions: int = 2) -> str:
    name = f"{settings.topic_prefix}.smoke.{uuid.uuid4().hex[:6]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()
    return name


async def _drain(consumer: AIOKafkaConsumer, want: int, timeout_s: float = 20) -> list:
    got: list = []
    deadline = asyncio.get_running_loop().time() + timeout_s
    while len(got) < want and asyncio.get_running_loop().time() < deadline:
        batch = await consumer.getmany(timeout_ms=500)
        for records in batch.values():
            got.extend(records)
    return got


async def test_idempotent_producer_round_trips_through_a_consumer_group_with_headers(
    settings: Settings,
) -> None:
    topic = await _new_topic(settings)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, acks="all", enable_idempotence=True
    )
    await producer.start()
    try:
        for i in range(10):
            await producer.send_and_wait(
                topic, f"v{i}".encode(), key=b"case-1", headers=[("ce_id", f"id-{i}".encode())]
            )
    finally:
        await producer.stop()

    group = f"{settings.topic_prefix}.g"
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        got = await _drain(consumer, 10)
        await consumer.commit()
    finally:
        await consumer.stop()
    # One key, one partition: the order is the send order.
    assert [r.value for r in got] == [f"v{i}".encode() for i in range(10)]
    assert [dict(r.headers)["ce_id"] for r in got] == [f"id-{i}".encode() for i in range(10)]

    # The group's committed offsets survive: a new member of the same group reads nothing old.
    again = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await again.start()
    try:
        assert await _drain(again, 1, timeout_s=3) == []
    finally:
        await again.stop()


async def test_read_committed_consumer_sees_committed_transactions_only(settings: Settings) -> None:
    topic = await _new_topic(settings, partitions=1)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, transactional_id=f"{topic}.tx"
    )
    await producer.start()
    try:
        async with producer.transaction():
            await producer.send(topic, b"committed-1", key=b"k")
            await producer.send(topic, b"committed-2", key=b"k")
        await producer.begin_transaction()
        await producer.send(topic, b"aborted", key=b"k")
        await producer.abort_transaction()
        async with producer.transaction():
            await producer.send(topic, b"committed-3", key=b"k")
    finally:
        await producer.stop()

    async def read(isolation: str, want: int) -> list[bytes]:
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=settings.kafka_bootstrap,
            auto_offset_reset="earliest",
            isolation_level=isolation,
        )
        await consumer.start()
        try:
            return [r.value for r in await _drain(consumer, want, timeout_s=10)]
        finally:
            await consumer.stop()

    assert await read("read_committed", 3) == [b"committed-1", b"committed-2", b"committed-3"]
    # The aborted record is in the log: a read_uncommitted consumer does see it.
    assert b"aborted" in await read("read_uncommitted", 4)
