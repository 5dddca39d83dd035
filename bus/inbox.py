"""The consumer side of an adapter: read one agency's inbox topic and handle each message once.

Kafka delivers at least once, and the router may deliver a message again after a crash. The
:class:`InboxReader` makes handling idempotent with the ``inbox_handled`` table (design §6): a
message's ``(consumer, message_id)`` row is inserted in the same PostgreSQL transaction as the
handler's own writes, and the handler runs only if that row is new. The work therefore commits
together with the "handled" marker, or not at all; a redelivered message finds its marker and
skips the handler. Kafka offsets are committed after the database commit, so a crash in between
re-reads records whose markers already exist. For the same reason the offsets need not be
committed after every batch: a reader commits at most every five seconds (``commit_every_s``),
and whatever is left when it stops; a crash or a rebalance in between only re-reads records its
markers skip. An idle reader's fetch waits at the broker for ``fetch_max_wait_ms``
(:data:`~bus.settings.KAFKA_FETCH_MAX_WAIT_MS`); a new record ends the wait at once. Stopping a
reader over TLS waits for the held fetch: the broker reads the TLS close once it answered it.

Each fetched batch (up to ``max_records``) is handled in ONE transaction: one statement inserts
the markers of all its messages, then the handler runs for each new one, in offset order per
partition, on the same connection. A transaction per record would make an inbox move at one
commit's latency. If anything in the batch fails, the whole transaction is rolled back and the
batch is handled again one record per transaction, exactly as a single failing message always
was: a handler that raises is retried with backoff, never skipped, so the reader does not move
past a message of a case before it is handled and per-case order holds. After ``max_attempts``
(the failed try in the batch counts as the first) the reader stops and raises
:class:`InboxHandlerError`; the message is read again on the next run.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, Literal
from uuid import UUID

import asyncpg
import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from prometheus_client import Counter

from bus.codec import Codec, default_codec
from bus.db import Conn
from bus.errors import (
    ConfigError,
    DecodeError,
    InboxHandlerError,
    TransportError,
    ValidationFailedError,
)
from bus.lifecycle import EQUAL_JITTER, BackgroundService, Backoff, Every
from bus.models import Envelope
from bus.settings import KAFKA_FETCH_MAX_WAIT_MS, Settings

__all__ = [
    "INBOX_MESSAGES",
    "InboxHandler",
    "InboxReader",
    "handled_ids",
]

log = structlog.get_logger("casebus.inbox")

INBOX_MESSAGES: Final = Counter(
    "casebus_inbox_messages_total",
    "Inbox records by consumer and outcome (handled, duplicate, undecodable, failed).",
    ["consumer", "outcome"],
)
"""Inbox records seen, by consumer and outcome."""

InboxHandler = Callable[[Conn, Envelope, ConsumerRecord[bytes, bytes]], Awaitable[None]]
"""``await handler(conn, envelope, record)``: do the work on ``conn``, inside the reader's
transaction; raise to have it rolled back and retried. Only work done on ``conn`` is once-only:
the handler may run again for a message whose transaction was rolled back, also when another
message of the same batch failed."""

_Outcome = Literal["handled", "duplicate", "undecodable", "failed"]

# The markers of a batch (or of one record) in one statement. Rows go in message_id order so
# that two readers sharing a consumer name lock common markers in the same order, not in a
# deadlock.
# handled_at is the transaction's now() for all of them: handled_ids breaks the tie by
# (topic, partition, offset), the order the batch is handled in.
_MARK: Final = """
INSERT INTO inbox_handled (consumer, message_id, topic, partition, kafka_offset)
SELECT $1, m.message_id, m.topic, m.partition, m.kafka_offset
FROM unnest($2::uuid[], $3::text[], $4::integer[], $5::bigint[])
    AS m (message_id, topic, partition, kafka_offset)
ORDER BY m.message_id
ON CONFLICT (consumer, message_id) DO NOTHING
RETURNING message_id
"""

# Markers of messages not handled when the reader stopped mid-batch: they must not commit.
_UNMARK: Final = """
DELETE FROM inbox_handled WHERE consumer = $1 AND message_id = ANY($2::uuid[])
"""


@dataclass(frozen=True, slots=True)
class _Item:
    """One record of a batch, decoded once; ``envelope`` is None when it could not be."""

    record: ConsumerRecord[bytes, bytes]
    envelope: Envelope | None
    log: Any  # structlog's bound logger with the record's context


class _BatchFailed(Exception):
    """The batch transaction was rolled back; ``index`` is the item whose handler raised (its
    first attempt, already counted and logged), None when the failure was not a handler's."""

    def __init__(self, index: int | None, error: Exception) -> None:
        super().__init__(f"{type(error).__name__}: {error}")
        self.index = index
        self.error = error


class InboxReader(BackgroundService):
    """Reads ``<prefix>.inbox.<agency_id>`` and hands each new message to ``handler`` once.

    The consumer group is ``<prefix>.inbox.<consumer_name>`` unless ``group_id`` says otherwise;
    idempotency is keyed by ``consumer_name``, so readers sharing the name (in one group or
    not) never handle a message twice. Use ``async with`` or :meth:`start` / :meth:`stop`, or
    await :meth:`run` directly. Stopping finishes the record in flight, commits what is handled
    and its offsets, and closes; :meth:`stop` re-raises what ended :meth:`run`.

    ``on_committed`` is called after each transaction in which the handler ran commits: what
    the handler wrote is visible to other connections from then on (a task woken from inside
    the handler would look before the commit and find nothing).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        agency_id: str,
        consumer_name: str,
        handler: InboxHandler,
        pool: asyncpg.Pool,
        codec: Codec | None = None,
        group_id: str | None = None,
        max_attempts: int = 5,
        retry_initial_s: float = 0.2,
        retry_max_s: float = 5.0,
        poll_timeout_ms: int = 500,
        max_records: int = 100,
        commit_every_s: float = 5.0,
        fetch_max_wait_ms: int = KAFKA_FETCH_MAX_WAIT_MS,
        on_committed: Callable[[], None] | None = None,
    ) -> None:
        if not consumer_name:
            raise ConfigError("consumer_name must not be empty")
        if max_attempts < 1:
            raise ConfigError(f"max_attempts must be at least 1, not {max_attempts}")
        super().__init__(task_name=f"casebus-inbox-{consumer_name}")
        self._settings = settings
        self._topic = settings.topic_inbox(agency_id)
        self._consumer_name = consumer_name
        self._group_id = group_id or f"{settings.topic_prefix}.inbox.{consumer_name}"
        self._handler = handler
        self._pool = pool
        self._codec = codec if codec is not None else default_codec()
        self._max_attempts = max_attempts
        self._retry = Backoff(initial_s=retry_initial_s, max_s=retry_max_s, jitter=EQUAL_JITTER)
        self._poll_timeout_ms = poll_timeout_ms
        self._max_records = max_records
        self._fetch_max_wait_ms = fetch_max_wait_ms
        self._on_committed = on_committed
        self._uncommitted: dict[TopicPartition, int] = {}  # handled, offsets not yet in Kafka
        self._commit_every = Every(commit_every_s)
        self._log = log.bind(consumer=consumer_name, group_id=self._group_id)

    @property
    def topic(self) -> str:
        """The inbox topic read."""
        return self._topic

    @property
    def group_id(self) -> str:
        """The Kafka consumer group."""
        return self._group_id

    @property
    def consumer_name(self) -> str:
        """The idempotency key's consumer part in ``inbox_handled``."""
        return self._consumer_name

    # -- the loop (start, stop and ``async with``: BackgroundService) ---------------------------

    async def run(self) -> None:
        """Consume until :meth:`stop`; raises :class:`InboxHandlerError` or TransportError."""
        consumer = AIOKafkaConsumer(
            self._topic,
            **self._settings.kafka_client_options(),
            group_id=self._group_id,
            isolation_level="read_committed",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=self._fetch_max_wait_ms,
            client_id=f"casebus-inbox-{self._consumer_name}",
        )
        try:
            await consumer.start()
        except KafkaError as e:
            await consumer.stop()
            raise TransportError(f"cannot consume {self._topic}: {e}", retriable=True) from e
        self._log.info("inbox.started", topic=self._topic)
        try:
            while not self.stopping:
                try:
                    batch = await consumer.getmany(
                        timeout_ms=self._poll_timeout_ms, max_records=self._max_records
                    )
                except KafkaError as e:  # aiokafka retries transient errors itself
                    raise TransportError(
                        f"consuming {self._topic} failed: {e}", retriable=True
                    ) from e
                if batch:
                    await self._handle_batch(consumer, batch)
                else:
                    await self._commit_due(consumer)
        finally:
            try:
                await self._commit_due(consumer, now=True)
            finally:
                await consumer.stop()
            self._log.info("inbox.stopped", topic=self._topic)

    # -- records --------------------------------------------------------------------------------

    async def _handle_batch(
        self, consumer: Any, batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]
    ) -> None:
        if self.stopping:
            return  # the batch is read again on the next run
        # Partitions in a fixed order, records in offset order: the order handled_ids reports.
        items = [self._decode(record) for tp in sorted(batch) for record in batch[tp]]
        settled = 0  # items[:settled] are handled or skipped for good: their offsets may commit
        try:
            try:
                settled = await self._handle_together(items)
            except _BatchFailed as failed:
                # Nothing of the batch committed: hand it over to the per-record path, where a
                # failing message is retried and reported as it always was.
                self._log.info("inbox.batch_rolled_back", records=len(items), error=str(failed))
                for i, item in enumerate(items):
                    if self.stopping:
                        return  # the rest is read again on the next run
                    if i == failed.index:
                        passed = await self._handle(item, failures=1, last_error=failed.error)
                    else:
                        passed = await self._handle(item)
                    if not passed:
                        return
                    settled = i + 1
        finally:
            # After the database commits, never before: a crash in between only re-reads.
            done = {
                TopicPartition(item.record.topic, item.record.partition): item.record.offset + 1
                for item in items[:settled]
            }
            if done:
                self._uncommitted.update(done)
                await self._commit_due(consumer)

    async def _commit_due(self, consumer: Any, *, now: bool = False) -> None:
        """Commit the handled offsets if ``commit_every_s`` passed since the last commit (an
        OffsetCommit request to the broker each time), or ``now``."""
        if not self._uncommitted:
            return
        if not self._commit_every.due(force=now):
            return
        offsets, self._uncommitted = self._uncommitted, {}
        await self._commit(consumer, offsets)

    async def _commit(self, consumer: Any, offsets: dict[TopicPartition, int]) -> None:
        try:
            await consumer.commit(offsets)
        except KafkaError as e:
            # E.g. a rebalance moved the partition: its new reader re-reads and skips by marker.
            self._log.warning("inbox.commit_failed", error=f"{type(e).__name__}: {e}")

    def _decode(self, record: ConsumerRecord[bytes, bytes]) -> _Item:
        """The record with its envelope; an undecodable one is logged and counted here, once."""
        bound = self._log.bind(topic=record.topic, partition=record.partition, offset=record.offset)
        try:
            if record.value is None:
                raise DecodeError("the record has no value")
            envelope = self._codec.decode_envelope(record.value)
        except (DecodeError, ValidationFailedError) as e:
            # The router delivers only decodable messages; skipping here is defence in depth.
            bound.warning("inbox.undecodable", error=str(e))
            self._count("undecodable")
            return _Item(record, None, bound)
        bound = bound.bind(
            message_id=str(envelope.message_id),
            case_id=envelope.case_id,
            kind=envelope.kind,
            sender=envelope.sender,
        )
        return _Item(record, envelope, bound)

    async def _handle_together(self, items: list[_Item]) -> int:
        """Handle ``items`` in one transaction; return how many are settled (all of them, unless
        the reader is stopping). Anything failing rolls it all back and raises _BatchFailed."""
        first: dict[UUID, int] = {}  # a message id twice in one batch is handled at its first
        for i, item in enumerate(items):
            if item.envelope is not None:
                first.setdefault(item.envelope.message_id, i)
        if not first:
            return len(items)
        settled = len(items)
        handled: set[int] = set()
        current: int | None = None  # the item whose handler is running
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                fresh = await self._mark(conn, {m: items[i].record for m, i in first.items()})
                for i, item in enumerate(items):
                    envelope = item.envelope
                    if envelope is None or envelope.message_id not in fresh:
                        continue
                    if first[envelope.message_id] != i:
                        continue
                    if self.stopping:
                        # Commit what is handled; the rest is read again, so stays unmarked.
                        settled = i
                        unhandled = [m for m, j in first.items() if j >= i and m in fresh]
                        await conn.execute(_UNMARK, self._consumer_name, unhandled)
                        break
                    current = i
                    await self._handler(conn, envelope, item.record)
                    current = None
                    handled.add(i)
        except Exception as e:  # the handler may raise anything; so may the database
            if current is not None:
                self._note_failure(items[current], 1, e)
            raise _BatchFailed(current, e) from e
        if handled:
            self._committed()
        for i, item in enumerate(items[:settled]):
            if item.envelope is None:
                continue  # counted when decoded
            if i in handled:
                item.log.info("inbox.handled", attempt=1)
                self._count("handled")
            else:
                item.log.info("inbox.duplicate")
                self._count("duplicate")
        return settled

    async def _handle(
        self, item: _Item, *, failures: int = 0, last_error: Exception | None = None
    ) -> bool:
        """Handle one record in its own transaction, after ``failures`` failed attempts; True
        once it may be passed, False if abandoned because stopping."""
        envelope, bound = item.envelope, item.log
        if envelope is None:
            return True  # undecodable: logged and counted by _decode
        attempt = failures
        while True:
            if attempt:  # the last attempt failed
                if attempt >= self._max_attempts:
                    raise InboxHandlerError(
                        f"handler failed {attempt} times on {envelope.kind} "
                        f"{envelope.message_id}: {type(last_error).__name__}: {last_error}",
                        attempts=attempt,
                        topic=item.record.topic,
                        partition=item.record.partition,
                        offset=item.record.offset,
                        message_id=str(envelope.message_id),
                        case_id=envelope.case_id,
                        agency=envelope.sender,
                    ) from last_error
                if await self.pause(self._retry.delay(attempt)):
                    bound.info("inbox.retry_abandoned", attempt=attempt)
                    return False
            attempt += 1
            try:
                fresh = await self._handle_once(item.record, envelope)
            except Exception as e:  # the handler may raise anything: roll back and retry
                self._note_failure(item, attempt, e)
                last_error = e
                continue
            if fresh:
                bound.info("inbox.handled", attempt=attempt)
                self._count("handled")
            else:
                bound.info("inbox.duplicate")
                self._count("duplicate")
            return True

    def _note_failure(self, item: _Item, attempt: int, error: Exception) -> None:
        self._count("failed")
        item.log.warning(
            "inbox.handler_failed",
            attempt=attempt,
            max_attempts=self._max_attempts,
            error=f"{type(error).__name__}: {error}",
        )

    async def _handle_once(self, record: ConsumerRecord[bytes, bytes], envelope: Envelope) -> bool:
        async with self._pool.acquire() as conn, conn.transaction():
            fresh = bool(await self._mark(conn, {envelope.message_id: record}))
            if fresh:
                await self._handler(conn, envelope, record)
        if fresh:
            self._committed()
        return fresh

    def _committed(self) -> None:
        if self._on_committed is not None:
            self._on_committed()

    async def _mark(
        self, conn: Conn, records: dict[UUID, ConsumerRecord[bytes, bytes]]
    ) -> set[UUID]:
        """Insert the "handled" markers of ``records`` (by message id); the ids that were new."""
        rows = await conn.fetch(
            _MARK,
            self._consumer_name,
            list(records),
            [r.topic for r in records.values()],
            [r.partition for r in records.values()],
            [r.offset for r in records.values()],
        )
        return {r["message_id"] for r in rows}

    def _count(self, outcome: _Outcome) -> None:
        INBOX_MESSAGES.labels(consumer=self._consumer_name, outcome=outcome).inc()


async def handled_ids(conn: Conn, consumer: str) -> list[UUID]:
    """The message ids ``consumer`` has handled, in the order it handled them."""
    rows = await conn.fetch(
        "SELECT message_id FROM inbox_handled WHERE consumer = $1"
        " ORDER BY handled_at, topic, partition, kafka_offset",
        consumer,
    )
    return [r["message_id"] for r in rows]
