"""The transactional outbox on the real PostgreSQL and Kafka: only committed rows are published,
each once, in per-case order, by one or several relays, and Kafka outages are waited out."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import defaultdict
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from buskit import signed_ack
from keykit import new_signer
from prometheus_client import REGISTRY

from bus.codec import decode_envelope
from bus.errors import OutboxConflictError, OutboxMisuseError
from bus.models import Envelope
from bus.outbox import OUTBOX_COLUMNS, OutboxRelay, OutboxWriter
from bus.party import Party
from bus.settings import Settings
from bus.signing import Ed25519Signer, Sm2Signer, sign_envelope

SENDER = "ygh.enforcement.bureau"
RECIPIENT = "ygh.police.bureau"


@pytest.fixture
async def submit_topic(settings: Settings) -> str:
    """This test's ``<prefix>.submit`` topic, with the test partition count."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(settings.topic_submit(), settings.topic_partitions, 1)])
    finally:
        await admin.close()
    return settings.topic_submit()


@pytest.fixture
def signer() -> Ed25519Signer | Sm2Signer:
    return new_signer(SENDER)  # of the run's crypto profile


@pytest.fixture
def owner() -> str:
    """An owner label of this test's own, so metric values do not mix between tests."""
    return f"adapter-{uuid.uuid4().hex[:8]}"


def _envelope(signer: Ed25519Signer, case_id: str) -> Envelope:
    """A signed bus.ack from SENDER on ``case_id``."""
    return signed_ack(Party(SENDER, signer), recipients=[RECIPIENT], case_id=case_id)


def _metric(name: str, owner: str) -> float:
    return REGISTRY.get_sample_value(name, {"owner": owner}) or 0.0


async def _add_all(
    pool: asyncpg.Pool, settings: Settings, envelopes: list[Envelope], owner: str
) -> None:
    writer = OutboxWriter(settings)
    async with pool.acquire() as conn, conn.transaction():
        for envelope in envelopes:
            assert await writer.add(conn, envelope, owner=owner)


async def _wait_published(pool: asyncpg.Pool, want: int, timeout_s: float = 15) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        done = await pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NOT NULL")
        if done >= want:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"fewer than {want} outbox rows published after {timeout_s} s")


async def _read_topic(
    settings: Settings, topic: str, want: int, *, linger_s: float = 1.0
) -> list[Any]:
    """Every record of ``topic`` (read_committed) once ``want`` arrived and ``linger_s`` passed
    without more, so duplicates beyond ``want`` are seen too."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        enable_auto_commit=False,
    )
    await consumer.start()
    got: list[Any] = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 15
        quiet_until = None
        while loop.time() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                got.extend(records)
            if len(got) >= want:
                if batch:
                    quiet_until = loop.time() + linger_s
                elif quiet_until is None or loop.time() >= quiet_until:
                    break
    finally:
        await consumer.stop()
    return got


def _by_case(records: list[Any]) -> dict[str, list[uuid.UUID]]:
    out: dict[str, list[uuid.UUID]] = defaultdict(list)
    partitions: dict[bytes, set[int]] = defaultdict(set)
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        envelope = decode_envelope(r.value)
        assert r.key == envelope.case_id.encode()
        assert dict(r.headers)["ce_id"] == str(envelope.message_id).encode()
        out[envelope.case_id].append(envelope.message_id)
        partitions[r.key].add(r.partition)
    assert all(len(p) == 1 for p in partitions.values()), "a case was spread over partitions"
    return out


def _expected_by_case(envelopes: list[Envelope]) -> dict[str, list[uuid.UUID]]:
    out: dict[str, list[uuid.UUID]] = defaultdict(list)
    for e in envelopes:
        out[e.case_id].append(e.message_id)
    return out


async def test_adding_a_message_twice_is_a_no_op_and_other_bytes_conflict(
    settings: Settings, pool: asyncpg.Pool, signer: Ed25519Signer, owner: str
) -> None:
    writer = OutboxWriter(settings)
    envelope = _envelope(signer, "YGH-2026-0001")
    other = sign_envelope(envelope.model_copy(update={"case_id": "YGH-2026-0002"}), signer)
    async with pool.acquire() as conn:
        async with conn.transaction():
            assert await writer.add(conn, envelope, owner=owner) is True
        async with conn.transaction():
            assert await writer.add(conn, envelope, owner=owner) is False
        with pytest.raises(OutboxConflictError) as raised:
            async with conn.transaction():
                await writer.add(conn, other, owner=owner)
        assert isinstance(raised.value, ValueError)
        assert raised.value.message_id == str(envelope.message_id)
        # Outside a transaction, or unsigned: refused before anything is written.
        with pytest.raises(OutboxMisuseError, match="transaction"):
            await writer.add(conn, _envelope(signer, "YGH-2026-0003"), owner=owner)
        unsigned = _envelope(signer, "YGH-2026-0004")
        unsigned = unsigned.model_copy(
            update={"signature": unsigned.signature.model_copy(update={"value": b""})}
        )
        with pytest.raises(OutboxMisuseError, match="signed"):
            async with conn.transaction():
                await writer.add(conn, unsigned, owner=owner)
        rows = await conn.fetch("SELECT owner, message_id, topic, attempts FROM outbox")
    assert [(r["owner"], r["message_id"], r["topic"], r["attempts"]) for r in rows] == [
        (owner, envelope.message_id, settings.topic_submit(), 0)
    ]


async def test_a_row_is_what_add_stores_and_is_refused_unsigned_or_without_owner(
    settings: Settings, pool: asyncpg.Pool, signer: Ed25519Signer, owner: str
) -> None:
    """:meth:`OutboxWriter.row` (for a caller writing the row in a statement of its own, the
    adapter's submissions) gives the columns :meth:`OutboxWriter.add` stores, in
    ``OUTBOX_COLUMNS`` order, and refuses what ``add`` refuses but the transaction."""
    writer = OutboxWriter(settings)
    envelope = _envelope(signer, "YGH-2026-0011")
    row = writer.row(envelope, owner=owner)
    async with pool.acquire() as conn:
        async with conn.transaction():
            assert await writer.add(conn, envelope, owner=owner)
        stored = await conn.fetchrow(
            f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE message_id = $1", envelope.message_id
        )
    assert stored is not None
    assert [bytes(v) if isinstance(v, bytes) else v for v in stored.values()][:6] == list(row)[:6]
    assert json.loads(stored["headers"]) == json.loads(row.headers)
    assert decode_envelope(row.value) == envelope
    unsigned = envelope.model_copy(
        update={"signature": envelope.signature.model_copy(update={"value": b""})}
    )
    with pytest.raises(OutboxMisuseError, match="signed"):
        writer.row(unsigned, owner=owner)
    with pytest.raises(OutboxMisuseError, match="owner"):
        writer.row(envelope, owner="")


async def test_rows_of_a_rolled_back_transaction_are_never_published(
    settings: Settings, submit_topic: str, pool: asyncpg.Pool, signer: Ed25519Signer, owner: str
) -> None:
    writer = OutboxWriter(settings)
    doomed = [_envelope(signer, f"YGH-2026-{i:04d}") for i in range(3)]
    with pytest.raises(RuntimeError, match="adapter state failed"):
        async with pool.acquire() as conn, conn.transaction():
            for envelope in doomed:
                await writer.add(conn, envelope, owner=owner)
            raise RuntimeError("adapter state failed")
    kept = _envelope(signer, "YGH-2026-0100")
    await _add_all(pool, settings, [kept], owner)

    async with OutboxRelay(settings, pool=pool, poll_interval_s=0.1):
        await _wait_published(pool, 1)
    records = await _read_topic(settings, submit_topic, 1)
    assert [decode_envelope(r.value).message_id for r in records] == [kept.message_id]
    assert await pool.fetchval("SELECT count(*) FROM outbox") == 1


async def test_a_committed_batch_is_published_once_each_in_per_case_order(
    settings: Settings, submit_topic: str, pool: asyncpg.Pool, signer: Ed25519Signer, owner: str
) -> None:
    envelopes = [_envelope(signer, f"榕执〔2026〕{i % 10}号") for i in range(200)]
    await _add_all(pool, settings, envelopes, owner)
    before = _metric("casebus_outbox_published_total", owner)

    async with OutboxRelay(settings, pool=pool, batch_size=50, poll_interval_s=0.1):
        await _wait_published(pool, 200)
    records = await _read_topic(settings, submit_topic, 200)

    assert len(records) == 200
    assert _by_case(records) == _expected_by_case(envelopes)
    assert _metric("casebus_outbox_published_total", owner) - before == 200
    assert _metric("casebus_outbox_pending", owner) == 0
    assert await pool.fetchval("SELECT max(attempts) FROM outbox") == 1


async def test_two_relays_at_once_publish_each_row_exactly_once(
    settings: Settings, submit_topic: str, pool: asyncpg.Pool, signer: Ed25519Signer, owner: str
) -> None:
    envelopes = [_envelope(signer, f"YGH-2026-{i % 10:04d}") for i in range(300)]
    relays = [
        OutboxRelay(settings, pool=pool, batch_size=20, poll_interval_s=0.05) for _ in range(2)
    ]
    async with relays[0], relays[1]:
        # Written in several commits while both relays already run, so they compete for rows.
        for n, start in enumerate(range(0, 300, 50)):
            await _add_all(pool, settings, envelopes[start : start + 50], owner)
            relays[n % 2].wake()
        await _wait_published(pool, 300)
    records = await _read_topic(settings, submit_topic, 300, linger_s=2.0)

    ids = [decode_envelope(r.value).message_id for r in records]
    assert len(ids) == len(set(ids)) == 300
    assert _by_case(records) == _expected_by_case(envelopes)
    assert await pool.fetchval("SELECT max(attempts) FROM outbox") == 1


async def test_a_failing_row_holds_back_the_later_rows_of_its_case_only(
    settings: Settings, submit_topic: str, pool: asyncpg.Pool, signer: Ed25519Signer, owner: str
) -> None:
    blocked = [_envelope(signer, "YGH-2026-0001") for _ in range(3)]
    free = [_envelope(signer, "YGH-2026-0002") for _ in range(2)]
    await _add_all(pool, settings, [blocked[0], free[0], blocked[1], free[1], blocked[2]], owner)
    # Make the case's first row unpublishable: larger than the producer's max request size.
    original = await pool.fetchval(
        "SELECT value FROM outbox WHERE message_id = $1", blocked[0].message_id
    )
    await pool.execute(
        "UPDATE outbox SET value = $2 WHERE message_id = $1",
        blocked[0].message_id,
        bytes(2 * 1024 * 1024),
    )

    relay = OutboxRelay(settings, pool=pool, poll_interval_s=0.1, backoff_initial_s=0.1)
    async with relay:
        await _wait_published(pool, 2)
        await asyncio.sleep(0.5)
    rows = {
        r["message_id"]: r
        for r in await pool.fetch(
            "SELECT message_id, published_at, attempts, last_error FROM outbox"
        )
    }
    assert all(rows[e.message_id]["published_at"] is not None for e in free)
    assert all(rows[e.message_id]["published_at"] is None for e in blocked)
    assert rows[blocked[0].message_id]["attempts"] >= 1
    assert "MessageSizeTooLarge" in rows[blocked[0].message_id]["last_error"]
    # The later rows of the case were never even tried.
    assert [rows[e.message_id]["attempts"] for e in blocked[1:]] == [0, 0]

    await pool.execute(
        "UPDATE outbox SET value = $2 WHERE message_id = $1", blocked[0].message_id, original
    )
    async with OutboxRelay(settings, pool=pool, poll_interval_s=0.1):
        await _wait_published(pool, 5)
    records = await _read_topic(settings, submit_topic, 5)
    assert _by_case(records) == _expected_by_case(blocked + free)


async def test_unreachable_kafka_keeps_rows_pending_backs_off_and_resumes(
    settings: Settings, submit_topic: str, pool: asyncpg.Pool, signer: Ed25519Signer, owner: str
) -> None:
    envelopes = [_envelope(signer, f"YGH-2026-{i % 2:04d}") for i in range(6)]
    await _add_all(pool, settings, envelopes, owner)
    errors_before = _metric("casebus_outbox_publish_errors_total", owner)
    nowhere = settings.model_copy(update={"kafka_bootstrap": "127.0.0.1:1"})

    async with OutboxRelay(
        nowhere, pool=pool, poll_interval_s=0.05, backoff_initial_s=0.1, backoff_max_s=5.0
    ):
        await asyncio.sleep(2.5)
    rows = await pool.fetch(
        "SELECT case_id, published_at, attempts, last_error FROM outbox ORDER BY id"
    )
    assert all(r["published_at"] is None for r in rows)
    heads, rest = rows[:2], rows[2:]
    # Backoff doubles from 0.1 s (at least half of each step): a handful of rounds, no busy loop.
    assert all(2 <= r["attempts"] <= 8 for r in heads), [r["attempts"] for r in heads]
    assert all(r["attempts"] == 0 for r in rest)
    assert all("Kafka unavailable" in r["last_error"] for r in heads)
    errors = _metric("casebus_outbox_publish_errors_total", owner) - errors_before
    assert errors == sum(r["attempts"] for r in heads)
    assert _metric("casebus_outbox_pending", owner) == 6

    async with OutboxRelay(settings, pool=pool, poll_interval_s=0.1):
        await _wait_published(pool, 6)
    records = await _read_topic(settings, submit_topic, 6)
    assert _by_case(records) == _expected_by_case(envelopes)
    assert _metric("casebus_outbox_pending", owner) == 0
