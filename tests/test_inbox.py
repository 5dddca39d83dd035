"""The inbox reader on the real Kafka and PostgreSQL: each message is handled once, atomically
with the handler's own writes, in order, through redeliveries, failures and bad bytes."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from buskit import signed_ack
from keykit import ALGORITHM
from prometheus_client import REGISTRY

from bus.codec import cloudevents_headers, encode_envelope, kafka_key
from bus.errors import InboxHandlerError
from bus.inbox import InboxReader, handled_ids
from bus.models import Envelope
from bus.party import Party
from bus.settings import Settings
from bus.signing import Signer, load_signer, write_keypair

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
    # The department's own state, written by handlers in the reader's transaction; txid
    # tells which records shared a transaction.
    await pool.execute(
        "CREATE TABLE work_done (seq bigserial PRIMARY KEY, message_id uuid NOT NULL,"
        " case_id text NOT NULL, txid bigint NOT NULL DEFAULT txid_current())"
    )
    yield pool
    await pool.close()


@pytest.fixture
def signer(tmp_path: Path) -> Signer:
    files = write_keypair(SENDER, tmp_path, algorithm=ALGORITHM)
    return load_signer(files.private_key, agency_id=SENDER)


@pytest.fixture
def consumer_name() -> str:
    """A consumer name of this test's own, so metric values do not mix between tests."""
    return f"police-adapter-{uuid.uuid4().hex[:8]}"


def _envelope(signer: Signer, case_id: str) -> Envelope:
    """A signed bus.ack from SENDER on ``case_id``."""
    return signed_ack(Party(SENDER, signer), recipients=[AGENCY], case_id=case_id)


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


def _work_reaches(pool: asyncpg.Pool, count: int) -> Callable[[], Awaitable[bool]]:
    """A check for ``_until``: the handlers did the work of ``count`` messages."""

    async def check() -> bool:
        return len(await _work(pool)) >= count

    return check


def _assert_in_case_order(work: list[uuid.UUID], envelopes: list[Envelope]) -> None:
    """Per case, the handling order is the sending order."""
    for case in {e.case_id for e in envelopes}:
        sent = [e.message_id for e in envelopes if e.case_id == case]
        assert [m for m in work if m in sent] == sent


async def test_redelivered_messages_are_handled_exactly_once(
    settings: Settings,
    inbox_topic: str,
    pool: asyncpg.Pool,
    signer: Signer,
    consumer_name: str,
) -> None:
    envelopes = [_envelope(signer, f"YGH-2026-{i % 3:04d}") for i in range(9)]
    await _produce(settings, inbox_topic, list(envelopes))

    async with _reader(settings, pool, consumer_name) as reader:
        assert reader.group_id == f"{settings.topic_prefix}.inbox.{consumer_name}"
        assert reader.topic == inbox_topic
        await _until(_work_reaches(pool, 9))

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
    _assert_in_case_order(work, envelopes)


async def test_a_failing_handler_is_retried_without_skipping_and_keeps_order(
    settings: Settings,
    inbox_topic: str,
    pool: asyncpg.Pool,
    signer: Signer,
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

    async with _reader(settings, pool, consumer_name, fails_twice, retry_initial_s=0.05):
        await _until(_work_reaches(pool, 5))

    assert await _work(pool) == [e.message_id for e in envelopes]
    assert calls[flaky] == 3
    # Messages after the flaky one run once; the one before it ran again only if it shared the
    # batch transaction the failure rolled back (its work above is there once either way).
    assert [calls[e.message_id] for e in envelopes[2:]] == [1, 1, 1]
    assert calls[envelopes[0].message_id] in (1, 2)
    assert _seen(consumer_name, "failed") == 2
    async with pool.acquire() as conn:
        assert await handled_ids(conn, consumer_name) == [e.message_id for e in envelopes]


async def test_a_handler_failing_every_attempt_stops_the_reader_before_the_message(
    settings: Settings,
    inbox_topic: str,
    pool: asyncpg.Pool,
    signer: Signer,
    consumer_name: str,
) -> None:
    envelopes = [_envelope(signer, "YGH-2026-0008") for _ in range(3)]
    stuck = envelopes[1]
    calls: Counter[uuid.UUID] = Counter()

    async def always_fails_on_one(conn: Any, envelope: Envelope, record: Any) -> None:
        calls[envelope.message_id] += 1
        await _record_work(conn, envelope, record)
        if envelope.message_id == stuck.message_id:
            raise RuntimeError("mapping not implemented")

    await _produce(settings, inbox_topic, list(envelopes))
    reader = _reader(
        settings, pool, consumer_name, always_fails_on_one, max_attempts=3, retry_initial_s=0.05
    )
    with pytest.raises(InboxHandlerError) as raised:
        await asyncio.wait_for(reader.run(), 20)
    assert raised.value.attempts == 3
    assert calls[stuck.message_id] == 3  # a try in a batch transaction counts as an attempt
    assert _seen(consumer_name, "failed") == 3
    assert raised.value.message_id == str(stuck.message_id)
    assert raised.value.case_id == stuck.case_id
    assert await _work(pool) == [envelopes[0].message_id]

    # Fixed and restarted in the same group: it resumes at the failed message, not after it.
    async with _reader(settings, pool, consumer_name):
        await _until(_work_reaches(pool, 3))
    assert await _work(pool) == [e.message_id for e in envelopes]
    assert _seen(consumer_name, "duplicate") == 0


async def test_undecodable_records_are_skipped_and_the_next_message_is_handled(
    settings: Settings,
    inbox_topic: str,
    pool: asyncpg.Pool,
    signer: Signer,
    consumer_name: str,
) -> None:
    good = _envelope(signer, "YGH-2026-0001")
    truncated = encode_envelope(good)[:-5]
    await _produce(settings, inbox_topic, [b"not avro at all", truncated, good])

    async with _reader(settings, pool, consumer_name):
        await _until(_work_reaches(pool, 1))
    assert await _work(pool) == [good.message_id]
    assert _seen(consumer_name, "undecodable") == 2


async def test_stop_finishes_the_record_in_flight_and_commits_it(
    settings: Settings,
    inbox_topic: str,
    pool: asyncpg.Pool,
    signer: Signer,
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
    async with _reader(settings, pool, consumer_name):
        await _until(_work_reaches(pool, 3))
    assert await _work(pool) == [e.message_id for e in envelopes]
    assert _seen(consumer_name, "duplicate") == 0


async def _transactions(pool: asyncpg.Pool) -> list[list[uuid.UUID]]:
    """The committed work, grouped by the transaction that wrote it, in commit order."""
    groups: dict[int, list[uuid.UUID]] = {}
    for r in await pool.fetch("SELECT message_id, txid FROM work_done ORDER BY seq"):
        groups.setdefault(r["txid"], []).append(r["message_id"])
    return list(groups.values())


async def test_a_fetched_batch_is_handled_in_one_transaction_of_at_most_max_records(
    settings: Settings,
    inbox_topic: str,
    pool: asyncpg.Pool,
    signer: Signer,
    consumer_name: str,
) -> None:
    # Several cases, so the batch spans partitions.
    envelopes = [_envelope(signer, f"YGH-2026-{i % 4:04d}") for i in range(40)]
    await _produce(settings, inbox_topic, list(envelopes))

    async with _reader(settings, pool, consumer_name, max_records=16):
        await _until(_work_reaches(pool, 40))

    transactions = await _transactions(pool)
    # A transaction per record would make 40; a batch never exceeds max_records.
    assert len(transactions) <= 6, [len(t) for t in transactions]
    assert max(len(t) for t in transactions) == 16
    assert sorted(m for t in transactions for m in t) == sorted(e.message_id for e in envelopes)
    assert _seen(consumer_name, "handled") == 40
    assert _seen(consumer_name, "duplicate") == 0
    work = await _work(pool)
    _assert_in_case_order(work, envelopes)
    async with pool.acquire() as conn:
        assert await handled_ids(conn, consumer_name) == work  # markers in the order handled


async def test_a_message_twice_in_one_batch_is_handled_once(
    settings: Settings,
    inbox_topic: str,
    pool: asyncpg.Pool,
    signer: Signer,
    consumer_name: str,
) -> None:
    a, b, c = (_envelope(signer, "YGH-2026-0010") for _ in range(3))
    await _produce(settings, inbox_topic, [a, b, a, c, a])

    async def all_seen() -> bool:
        return _seen(consumer_name, "handled") + _seen(consumer_name, "duplicate") >= 5

    async with _reader(settings, pool, consumer_name):
        await _until(all_seen)

    assert await _transactions(pool) == [[a.message_id, b.message_id, c.message_id]]
    assert _seen(consumer_name, "handled") == 3
    assert _seen(consumer_name, "duplicate") == 2
    async with pool.acquire() as conn:
        offset = await conn.fetchval(
            "SELECT kafka_offset FROM inbox_handled WHERE consumer = $1 AND message_id = $2",
            consumer_name,
            a.message_id,
        )
    assert offset == 0  # the marker is the first copy's


async def test_a_handler_failing_mid_batch_rolls_back_and_the_batch_goes_one_by_one(
    settings: Settings,
    inbox_topic: str,
    pool: asyncpg.Pool,
    signer: Signer,
    consumer_name: str,
) -> None:
    envelopes = [_envelope(signer, "YGH-2026-0011") for _ in range(6)]
    flaky = envelopes[3].message_id
    calls: Counter[uuid.UUID] = Counter()

    async def fails_once(conn: Any, envelope: Envelope, record: Any) -> None:
        calls[envelope.message_id] += 1
        await _record_work(conn, envelope, record)
        if envelope.message_id == flaky and calls[flaky] == 1:
            raise RuntimeError("department system busy")

    await _produce(settings, inbox_topic, list(envelopes))

    async with _reader(settings, pool, consumer_name, fails_once, retry_initial_s=0.05):
        await _until(_work_reaches(pool, 6))

    # The batch ran up to the flaky message and was rolled back whole; then every record went
    # in a transaction of its own, the flaky one retried: each message's work is there once,
    # in order.
    assert await _transactions(pool) == [[e.message_id] for e in envelopes]
    assert [calls[e.message_id] for e in envelopes] == [2, 2, 2, 2, 1, 1]
    assert _seen(consumer_name, "failed") == 1
    assert _seen(consumer_name, "handled") == 6
    assert _seen(consumer_name, "duplicate") == 0
    async with pool.acquire() as conn:
        assert await handled_ids(conn, consumer_name) == [e.message_id for e in envelopes]


class _Crash(Exception):
    """Stands for the process dying."""


class _CrashBeforeOffsets(InboxReader):
    """Dies after the database commit, before the Kafka offsets are committed."""

    async def _commit(self, consumer: Any, offsets: dict[TopicPartition, int]) -> None:
        raise _Crash("killed between the database commit and the offset commit")


async def _committed_offsets(settings: Settings, group_id: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group_id)
    finally:
        await admin.close()
    return sum(max(o.offset, 0) for o in offsets.values())


async def test_a_batch_redelivered_after_a_crash_before_the_offset_commit_is_skipped(
    settings: Settings,
    inbox_topic: str,
    pool: asyncpg.Pool,
    signer: Signer,
    consumer_name: str,
) -> None:
    envelopes = [_envelope(signer, f"YGH-2026-{i % 2:04d}") for i in range(12)]
    calls: Counter[uuid.UUID] = Counter()

    async def counted(conn: Any, envelope: Envelope, record: Any) -> None:
        calls[envelope.message_id] += 1
        await _record_work(conn, envelope, record)

    await _produce(settings, inbox_topic, list(envelopes))
    crashing = _CrashBeforeOffsets(
        settings,
        agency_id=AGENCY,
        consumer_name=consumer_name,
        handler=counted,
        pool=pool,
        poll_timeout_ms=100,
    )
    with pytest.raises(_Crash):
        await asyncio.wait_for(crashing.run(), 20)
    before = await _work(pool)
    assert before  # the first batch committed in the database ...
    assert await _committed_offsets(settings, crashing.group_id) == 0  # ... and not in Kafka

    async def all_done() -> bool:
        return len(await _work(pool)) >= 12 and _seen(consumer_name, "duplicate") >= len(before)

    async with _reader(settings, pool, consumer_name, counted) as reader:
        assert reader.group_id == crashing.group_id
        await _until(all_done)

    assert sorted(await _work(pool)) == sorted(e.message_id for e in envelopes)
    assert all(calls[e.message_id] == 1 for e in envelopes)
    assert _seen(consumer_name, "duplicate") == len(before)
    assert _seen(consumer_name, "handled") == 12
    assert await _committed_offsets(settings, reader.group_id) == 12


async def test_two_readers_sharing_a_consumer_name_handle_each_batch_message_once(
    settings: Settings,
    inbox_topic: str,
    pool: asyncpg.Pool,
    signer: Signer,
    consumer_name: str,
) -> None:
    # Two groups read the same records at the same time; their batch transactions race for the
    # same markers, and the loser of each race must skip, not handle again.
    envelopes = [_envelope(signer, f"YGH-2026-{i % 4:04d}") for i in range(120)]
    await _produce(settings, inbox_topic, list(envelopes))

    async def all_seen() -> bool:
        return _seen(consumer_name, "handled") + _seen(consumer_name, "duplicate") >= 240

    one = _reader(settings, pool, consumer_name, max_records=20)
    other = _reader(
        settings, pool, consumer_name, group_id=f"{settings.topic_prefix}.other", max_records=20
    )
    async with one, other:
        await _until(all_seen)

    work = await _work(pool)
    assert sorted(work) == sorted(e.message_id for e in envelopes)
    assert _seen(consumer_name, "handled") == 120
    assert _seen(consumer_name, "duplicate") == 120
    _assert_in_case_order(work, envelopes)


async def test_offsets_are_committed_at_most_every_commit_every_s_and_all_of_them_at_stop(
    settings: Settings,
    inbox_topic: str,
    pool: asyncpg.Pool,
    signer: Signer,
    consumer_name: str,
) -> None:
    # An OffsetCommit per batch was a broker request per record at a light load; the markers,
    # not the offsets, keep a message from being handled twice.
    envelopes = [_envelope(signer, f"YGH-2026-{i:04d}") for i in range(5)]
    reader = _reader(settings, pool, consumer_name, commit_every_s=60.0)
    async with reader:
        await _produce(settings, inbox_topic, list(envelopes[:2]))
        await _until(_work_reaches(pool, 2))
        await _produce(settings, inbox_topic, list(envelopes[2:]))
        await _until(_work_reaches(pool, 5))
        # The first batch was committed at once; the later ones wait for the minute or the stop.
        meanwhile = await _committed_offsets(settings, reader.group_id)
    assert 1 <= meanwhile <= 2, meanwhile
    assert await _committed_offsets(settings, reader.group_id) == 5
    assert _seen(consumer_name, "duplicate") == 0


async def test_on_committed_is_called_after_each_transaction_that_handled_work_commits(
    settings: Settings,
    inbox_topic: str,
    pool: asyncpg.Pool,
    signer: Signer,
    consumer_name: str,
) -> None:
    # The adapters wake their webhook deliverer this way: a task started from the callback must
    # find the transaction's work, as the deliverer's query must find the stored delivery.
    envelopes = [_envelope(signer, f"YGH-2026-{i % 3:04d}") for i in range(30)]
    visible: dict[int, int] = {}  # call number -> work rows another connection saw
    checks: list[asyncio.Task[None]] = []

    async def look(call: int) -> None:
        visible[call] = await pool.fetchval("SELECT count(*) FROM work_done")

    def committed() -> None:
        checks.append(asyncio.get_running_loop().create_task(look(len(checks))))

    async def duplicates_seen() -> bool:
        return _seen(consumer_name, "duplicate") >= len(envelopes)

    async with _reader(settings, pool, consumer_name, max_records=8, on_committed=committed):
        await _produce(settings, inbox_topic, list(envelopes[:10]))
        await _until(_work_reaches(pool, 10))
        await _produce(settings, inbox_topic, list(envelopes[10:]))
        await _until(_work_reaches(pool, 30))
        calls = len(checks)
        # The same messages again: handled before, so no transaction handles anything.
        await _produce(settings, inbox_topic, list(envelopes))
        await _until(duplicates_seen)
        await asyncio.gather(*checks)

    transactions = await _transactions(pool)
    assert calls == len(checks) == len(transactions) >= 4  # batches of at most 8
    committed_by = [sum(len(t) for t in transactions[: i + 1]) for i in range(len(transactions))]
    assert [visible[i] >= committed_by[i] for i in range(calls)] == [True] * calls, (
        visible,
        committed_by,
    )


async def test_an_idle_readers_parked_fetch_ends_when_a_transaction_commits(
    settings: Settings,
    inbox_topic: str,
    pool: asyncpg.Pool,
    signer: Signer,
    consumer_name: str,
) -> None:
    # An idle reader's fetch waits at the broker (bus.settings.KAFKA_FETCH_MAX_WAIT_MS) so that
    # it costs a request every few seconds, not two a second. The router writes inboxes in
    # Kafka transactions, and a read_committed fetch may only see a record once its commit
    # marker is written: the marker must end the wait, or each delivery would be late by it.
    wait_s = 60
    reader = _reader(settings, pool, consumer_name, fetch_max_wait_ms=wait_s * 1000)
    envelopes = [_envelope(signer, f"YGH-2026-{i:04d}") for i in range(3)]
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        transactional_id=f"test-parked-{consumer_name}",
        enable_idempotence=True,
    )
    await producer.start()
    try:
        async with reader:
            await _produce(settings, inbox_topic, envelopes[:1])
            await _until(_work_reaches(pool, 1))  # the reader is up; its next fetch parks
            for round_, envelope in enumerate(envelopes[1:], start=2):
                await asyncio.sleep(1.0)
                loop = asyncio.get_running_loop()
                async with producer.transaction():
                    await producer.send_and_wait(
                        inbox_topic,
                        encode_envelope(envelope),
                        key=kafka_key(envelope),
                        headers=cloudevents_headers(envelope),
                    )
                    # Held open: the record is in the log, invisible until the commit.
                    await asyncio.sleep(0.3)
                    assert len(await _work(pool)) == round_ - 1
                committed = loop.time()
                # Well inside the fetch's wait: a wait run out would take a minute.
                await _until(_work_reaches(pool, round_), timeout_s=wait_s / 4)
                assert loop.time() - committed < wait_s / 4
    finally:
        await producer.stop()
    assert await _work(pool) == [e.message_id for e in envelopes]
