"""The two KIP-447 pieces bus.router.eos adds to aiokafka, each against the real broker and
each deterministic: a consumer that joins while a transaction's offsets are pending starts
after them, not before; offsets sent with a generation the group has left are refused and
their transaction's records never become visible."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata, TopicPartition
from prometheus_client import REGISTRY

from bus.router import eos
from bus.settings import Settings


@pytest.fixture
async def topic(provisioned: Settings) -> str:
    name = f"{provisioned.topic_prefix}.eos-{uuid.uuid4().hex[:6]}"
    admin = AIOKafkaAdminClient(**provisioned.kafka_client_options())
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(**provisioned.kafka_client_options())
    await producer.start()
    try:
        for n in range(10):
            await producer.send_and_wait(name, f"r{n}".encode())
    finally:
        await producer.stop()
    return name


def _txn_producer(s: Settings, txn_id: str) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        **s.kafka_client_options(), transactional_id=txn_id, transaction_timeout_ms=60_000
    )


def _consumer(s: Settings, group: str, topic: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        topic,
        **s.kafka_client_options(),
        group_id=group,
        isolation_level="read_committed",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        retry_backoff_ms=50,
    )


@contextlib.asynccontextmanager
async def _joining_behind_pending_offsets(
    s: Settings, topic: str, *, wait_s: float
) -> AsyncIterator[tuple[AIOKafkaProducer, asyncio.Task[ConsumerRecord[bytes, bytes]]]]:
    """A group's owner with offset 6 pending in its open transaction, and a new member's first
    read, which must still wait after ``wait_s``: the owner, to end its transaction, and that
    read."""
    eos.install()
    group = f"{s.topic_prefix}.g-{uuid.uuid4().hex[:6]}"
    owner = _txn_producer(s, f"{group}.owner")
    await owner.start()
    consumer = _consumer(s, group, topic)
    try:
        await owner.begin_transaction()
        pending = {TopicPartition(topic, 0): OffsetAndMetadata(6, "")}
        await owner.send_offsets_to_transaction(pending, group)
        await consumer.start()
        first = asyncio.create_task(consumer.getone())
        await asyncio.sleep(wait_s)
        assert not first.done(), f"read offset {first.result().offset} while offsets pended"
        yield owner, first
    finally:
        await consumer.stop()
        await owner.stop()


async def test_a_consumer_joining_while_offsets_are_pending_starts_after_them(
    provisioned: Settings, topic: str
) -> None:
    async with _joining_behind_pending_offsets(provisioned, topic, wait_s=3) as (owner, first):
        # ... and how long it has waited is exported (CasebusRouterOffsetsStuck alerts on it).
        waited = REGISTRY.get_sample_value("casebus_router_offsets_unstable_seconds")
        assert waited is not None and 1.5 <= waited <= 30, waited
        await owner.commit_transaction()
        record = await asyncio.wait_for(first, 30)
        assert record.offset == 6
        assert REGISTRY.get_sample_value("casebus_router_offsets_unstable_seconds") == 0


async def test_an_aborted_pending_commit_lets_the_new_member_start_where_it_was(
    provisioned: Settings, topic: str
) -> None:
    async with _joining_behind_pending_offsets(provisioned, topic, wait_s=2) as (owner, first):
        await owner.abort_transaction()
        assert (await asyncio.wait_for(first, 30)).offset == 0


async def test_offsets_from_a_generation_the_group_has_left_are_refused(
    provisioned: Settings, topic: str
) -> None:
    eos.install()
    group = f"{provisioned.topic_prefix}.g-{uuid.uuid4().hex[:6]}"
    tp = TopicPartition(topic, 0)
    old = _consumer(provisioned, group, topic)
    await old.start()
    await old.getone()
    stale = eos.membership_of(old)
    assert stale.known, stale
    await old.stop()  # leaves the group: the next member is another generation
    new = _consumer(provisioned, group, topic)
    await new.start()
    zombie = _txn_producer(provisioned, f"{group}.zombie")
    await zombie.start()
    try:
        await new.getone()
        current = eos.membership_of(new)
        assert current.generation_id > stale.generation_id
        eos.record_membership(f"{group}.zombie", group, stale)
        await zombie.begin_transaction()
        await zombie.send(topic, b"written by a zombie")
        with pytest.raises(eos.MembershipFencedError):
            await zombie.send_offsets_to_transaction({tp: OffsetAndMetadata(9, "")}, group)
        await zombie.abort_transaction()
        assert await new.committed(tp) is None
        # The same producer with the member's current generation commits.
        eos.record_membership(f"{group}.zombie", group, current)
        await zombie.begin_transaction()
        await zombie.send_offsets_to_transaction({tp: OffsetAndMetadata(4, "")}, group)
        await zombie.commit_transaction()
        assert await new.committed(tp) == 4
    finally:
        eos.forget_membership(f"{group}.zombie", group)
        await zombie.stop()
        await new.stop()
    # The zombie's record was aborted: a read_committed reader never sees it.
    reader = _consumer(provisioned, f"{group}.reader", topic)
    await reader.start()
    try:
        seen = []
        while len(seen) < 10:
            batch = await reader.getmany(timeout_ms=2000)
            if not batch:
                break
            seen.extend(r.value for rs in batch.values() for r in rs)
    finally:
        await reader.stop()
    assert b"written by a zombie" not in seen
    assert len(seen) == 10
