"""The router service: consume a batch, audit it in PostgreSQL, deliver it in one Kafka
transaction with the consumer offsets.

Guarantees (design §6): the audit transaction is idempotent per message and event, so a batch
re-run after a crash at any point adds no second audit entry; deliveries, receipts, nacks,
dead letters and the offsets commit together in one Kafka transaction, so a read_committed
recipient sees each delivery once (inbox readers drop the rare zombie duplicate by id). A
record that cannot be decoded or is refused never blocks its partition.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import aiokafka.producer.sender as aiokafka_sender
import asyncpg
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata, TopicPartition

from bus import failpoints
from bus.agencies import Registry
from bus.audit.events import decode_leaf, leaf_envelope
from bus.audit.log import AuditLog, AuditRecord
from bus.codec import Codec, default_codec
from bus.db import Conn
from bus.errors import Problem
from bus.models import Envelope
from bus.router import eos, metrics
from bus.router.classify import Classifier, Verdict
from bus.router.outputs import Outputs, Send, rejection_id
from bus.router.principal import principal_check
from bus.routing import RoutingPolicy
from bus.settings import Settings
from bus.signing import Ed25519Signer, KeyStore
from bus.topics import submit_topics

__all__ = ["BatchPlan", "Router"]

log = structlog.get_logger("casebus.router")

# InternalClientError too: a session cut mid-query can leave a pooled connection in a state
# asyncpg refuses to use again ("cannot switch to state 15; another operation is in progress",
# MagicStack/asyncpg#784). It is as transient as the outage that caused it.
_PG_ERRORS = (
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncio.TimeoutError,
)


def _set_txn_start_retry(seconds: float) -> None:
    """Make aiokafka ask again ``seconds`` after a new transaction's first AddPartitionsToTxn
    was refused with CONCURRENT_TRANSACTIONS (the last transaction's markers are still being
    written). aiokafka uses a module constant there (KAFKA-5477: 20 ms) instead of the retry
    backoff; the router starts its next transaction the moment the last one commits, so it
    meets this wait on most batches. A later aiokafka without the constant only costs
    latency, never correctness: then this warns and leaves it."""
    if not isinstance(getattr(aiokafka_sender, "BACKOFF_OVERRIDE", None), float):
        log.warning("router.txn_start_retry_not_set", reason="aiokafka has no BACKOFF_OVERRIDE")
        return
    aiokafka_sender.BACKOFF_OVERRIDE = seconds


@dataclass(slots=True)
class BatchPlan:
    """What one batch turned into: the records to produce, and the tallies for logs."""

    sends: list[Send] = field(default_factory=list)
    accepted: list[Verdict] = field(default_factory=list)
    duplicates: list[Verdict] = field(default_factory=list)
    refused: list[Verdict] = field(default_factory=list)


class _Revocations(ConsumerRebalanceListener):  # type: ignore[misc]
    """Lets a rebalance wait until the batch being decided and the one being delivered are
    committed or aborted, so no partition changes hands with a transaction open on it."""

    def __init__(
        self, lock: asyncio.Lock, settle: Callable[[], Awaitable[bool]] | None = None
    ) -> None:
        self._lock = lock
        self._settle = settle

    async def on_partitions_revoked(self, revoked: object) -> None:
        async with self._lock:
            if self._settle is not None:
                await self._settle()

    async def on_partitions_assigned(self, assigned: object) -> None:
        return None


class Router:
    """One router replica. ``await run()`` until ``stop()``."""

    def __init__(
        self,
        settings: Settings,
        *,
        pool: asyncpg.Pool,
        keystore: KeyStore,
        registry: Registry,
        policy: RoutingPolicy,
        signer: Ed25519Signer,
        router_id: str = "router-0",
        max_batch: int = 500,
        codec: Codec | None = None,
    ) -> None:
        self._settings = settings
        self._pool = pool
        self._codec = codec or default_codec()
        self._classifier = Classifier(
            codec=self._codec,
            keystore=keystore,
            registry=registry,
            policy=policy,
            principal=principal_check(settings),
            max_record_bytes=settings.router_max_record_bytes,
        )
        self._submit_topics = submit_topics(settings, registry, policy)
        self._outputs = Outputs(settings, signer=signer, codec=self._codec)
        self._log = AuditLog()
        self._group = f"{settings.topic_prefix}.router"
        self._txn_id = f"{settings.topic_prefix}.router.{router_id}"
        self._max_batch = max_batch
        self._batch_lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._in_flight: asyncio.Task[bool] | None = None
        _set_txn_start_retry(settings.router_txn_start_retry_ms / 1000)  # process-wide
        eos.install()  # process-wide: stable offset fetches, generation-fenced offsets

    # -- lifecycle ------------------------------------------------------------------------------

    async def _new_producer(self) -> AIOKafkaProducer:
        producer = AIOKafkaProducer(
            **self._settings.kafka_client_options(),
            transactional_id=self._txn_id,
            transaction_timeout_ms=int(self._settings.router_transaction_timeout_s * 1000),
            enable_idempotence=True,
            acks="all",
            linger_ms=5,
            retry_backoff_ms=self._settings.router_retry_backoff_ms,
            request_timeout_ms=15_000,
        )
        await producer.start()
        return producer

    async def start(self) -> None:
        """Connect to Kafka: the transactional producer first, so a zombie is fenced early.
        A broker that is not up yet is waited for, not a reason to die."""
        self._producer = await self._start_producer_with_retry()
        self._consumer = AIOKafkaConsumer(
            **self._settings.kafka_client_options(),
            group_id=self._group,
            isolation_level="read_committed",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=self._max_batch,
            max_poll_interval_ms=600_000,
        )
        self._consumer.subscribe(
            self._submit_topics, listener=_Revocations(self._batch_lock, self._settle)
        )
        delay = 0.5
        while True:
            try:
                await self._consumer.start()
                break
            except KafkaError as e:
                log.warning("router.consumer_start_retry", error=repr(e), retry_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        log.info("router.started", group=self._group, transactional_id=self._txn_id)

    def stop(self) -> None:
        """Ask the loop to finish the batch in flight and return."""
        self._stopping.set()

    async def close(self) -> None:
        """Leave the group and close the producer."""
        if self._consumer is not None:
            await self._consumer.stop()
        if self._producer is not None:
            await self._producer.stop()
        log.info("router.stopped")

    async def run(self) -> None:
        """The consume → audit → deliver loop, two batches deep.

        While batch N's Kafka transaction is in flight, batch N+1 is fetched, classified and
        audited; N+1's transaction begins only after N's committed. The audit may run ahead of
        delivery because it is idempotent per message and source offset: if N's transaction
        fails, both batches are read again from the committed offsets and delivered exactly as
        the log recorded them.
        """
        await self.start()
        try:
            assert self._consumer is not None
            while not self._stopping.is_set():
                # With a transaction in flight, take what has arrived and get to work on it;
                # with none, wait a little for a batch.
                wait_ms = 0 if self._in_flight is not None else 200
                batch = await self._consumer.getmany(
                    timeout_ms=wait_ms, max_records=self._max_batch
                )
                records = [r for tp in sorted(batch) for r in batch[tp]]
                # The generation these records were fetched in: their offsets commit only if
                # this replica is still that generation's member when the transaction ends.
                membership = eos.membership_of(self._consumer)
                if not records:
                    if self._in_flight is not None:
                        async with self._batch_lock:
                            if not await self._settle():
                                await self._rewind()
                    continue
                async with self._batch_lock:
                    await self._process(records, membership)
                await self._observe_lag()
            async with self._batch_lock:  # a graceful stop finishes the batch in flight
                await self._settle()
        finally:
            if self._in_flight is not None:  # cancelled or failed: the open transaction aborts
                self._in_flight.cancel()
                with contextlib.suppress(BaseException):
                    await self._in_flight
            await self.close()

    async def _settle(self) -> bool:
        """Wait for the batch in flight: True if it committed (or none was in flight). On
        False the caller rewinds, unless a rebalance or a stop is about to reset positions."""
        task, self._in_flight = self._in_flight, None
        if task is None:
            return True
        return await task

    # -- one batch ------------------------------------------------------------------------------

    async def _process(
        self, records: Sequence[ConsumerRecord[bytes, bytes]], membership: eos.GroupMembership
    ) -> None:
        plan = await self._decide_with_retry(records)
        failpoints.hit("router.after_audit")
        if plan is None:  # stopping while the database was away: nothing was committed
            return
        for v in plan.accepted:
            env = v.envelope
            assert env is not None
            log.info(
                "router.accepted",
                message_id=str(env.message_id),
                case_id=env.case_id,
                kind=env.kind,
                sender=env.sender,
                key_id=v.key.key_id if v.key else None,
                partition=v.record.partition,
                offset=v.record.offset,
            )
        offsets = {}
        for r in records:
            offsets[TopicPartition(r.topic, r.partition)] = OffsetAndMetadata(r.offset + 1, "")
        if not await self._settle():
            # The batch before failed: read both again from the committed offsets. The rewind
            # happens here, after this batch was fetched, so no fetch can slip past it.
            await self._rewind()
            return
        self._in_flight = asyncio.create_task(
            self._deliver_and_report(plan, offsets, membership, size=len(records))
        )

    async def _deliver_and_report(
        self,
        plan: BatchPlan,
        offsets: dict[TopicPartition, OffsetAndMetadata],
        membership: eos.GroupMembership,
        *,
        size: int,
    ) -> bool:
        if not await self._deliver(plan, offsets, membership):
            return False  # whoever settles this batch rewinds
        failpoints.hit("router.after_commit")
        done = datetime.now(UTC)
        metrics.BATCH_SIZE.observe(size)
        for v in plan.accepted:
            env = v.envelope
            assert env is not None
            metrics.MESSAGES.labels(kind=env.kind, outcome="delivered").inc()
            metrics.LATENCY.observe((done - v.received_at).total_seconds())
            log.info(
                "router.delivered",
                message_id=str(env.message_id),
                case_id=env.case_id,
                kind=env.kind,
                sender=env.sender,
                deliver_to=list(v.deliver_to),
                partition=v.record.partition,
                offset=v.record.offset,
            )
        for v in plan.duplicates:
            metrics.MESSAGES.labels(kind=_kind(v), outcome="duplicate").inc()
        for v in plan.refused:
            outcome = "dead_lettered" if v.outcome == "dead" else "rejected"
            metrics.MESSAGES.labels(kind=_kind(v), outcome=outcome).inc()
            log.warning(
                f"router.{outcome}",
                message_id=str(v.message_id or rejection_id(v)),
                case_id=v.case_id,
                kind=_kind(v),
                sender=v.reply_to,
                code=v.code,
                problems=[p.as_dict() for p in v.problems],
                partition=v.record.partition,
                offset=v.record.offset,
            )
        return True

    async def _decide_with_retry(
        self, records: Sequence[ConsumerRecord[bytes, bytes]]
    ) -> BatchPlan | None:
        """Classify and audit a batch; while PostgreSQL is away, wait with backoff (the key
        store and the audit log both live there) instead of failing or spinning."""
        delay = 0.1
        while True:
            try:
                verdicts = await self._classifier.classify_all(records, now=datetime.now(UTC))
                async with self._pool.acquire() as conn, conn.transaction():
                    return await self._audit(conn, verdicts)
            except _PG_ERRORS as e:
                metrics.RETRIES.labels(stage="audit").inc()
                # Replace every pooled connection: one cut mid-operation may be unusable.
                await self._pool.expire_connections()
                log.warning("router.audit_retry", error=repr(e), retry_in_s=round(delay, 2))
                try:
                    await asyncio.wait_for(self._stopping.wait(), delay)
                    return None
                except TimeoutError:
                    pass
                delay = min(delay * 2, 5.0) * random.uniform(0.8, 1.2)

    async def _audit(self, conn: Conn, verdicts: list[Verdict]) -> BatchPlan:
        """Classify duplicates, append every audit entry, and say what to produce."""
        plan = BatchPlan()
        ids = [v.envelope.message_id for v in verdicts if v.outcome == "accept" and v.envelope]
        known = {
            r["message_id"]: r
            for r in await conn.fetch(
                "SELECT * FROM router_accepted WHERE message_id = ANY($1::uuid[])", ids
            )
        }
        seen_now: dict[object, Verdict] = {}
        first_pass: list[AuditRecord] = []
        nacks: dict[int, Envelope | None] = {}
        for i, v in enumerate(verdicts):
            if v.outcome == "accept":
                env = v.envelope
                assert env is not None
                prior = known.get(env.message_id)
                earlier = seen_now.get(env.message_id)
                if prior is not None:
                    same_bytes = bytes(prior["value_sha256"]) == v.value_sha256
                    rerun = (prior["src_partition"], prior["src_offset"]) == (
                        v.record.partition,
                        v.record.offset,
                    )
                elif earlier is not None:
                    same_bytes, rerun = earlier.value_sha256 == v.value_sha256, False
                else:
                    same_bytes, rerun = True, True
                if not same_bytes:
                    v.outcome, v.code = "reject", "conflicting_duplicate"
                    v.problems = [_conflict(env.message_id)]
                elif not rerun:
                    plan.duplicates.append(v)
                    log.info(
                        "router.duplicate",
                        message_id=str(env.message_id),
                        case_id=env.case_id,
                        kind=env.kind,
                        sender=env.sender,
                    )
                    continue
                else:
                    seen_now[env.message_id] = v
                    first_pass.append(self._outputs.accepted_record(v))
                    continue
            nack = self._outputs.nack(v)
            nacks[i] = nack
            first_pass.append(self._outputs.rejected_record(v, nack))

        await _keep_oversize_bodies(conn, [v for v in verdicts if v.oversize])
        appended = {
            (e.message_id, e.event_kind): e for e in await self._log.append(conn, first_pass)
        }
        second_pass: list[AuditRecord] = []
        receipts: dict[int, tuple[bytes, Envelope | None]] = {}
        duplicates = {id(v) for v in plan.duplicates}
        fresh: list[tuple[Verdict, int]] = []
        for i, v in enumerate(verdicts):
            if v.outcome != "accept" or id(v) in duplicates:
                continue
            env = v.envelope
            assert env is not None
            entry = appended[(env.message_id, "accepted")]
            if entry.new:
                fresh.append((v, entry.index))
            record, receipt, value = self._outputs.receipt(v, audit_index=entry.index)
            receipts[i] = (value, receipt)
            second_pass.append(record)
        if fresh:  # one round trip for the whole batch
            await conn.execute(
                """INSERT INTO router_accepted
                   (message_id, value_sha256, src_partition, src_offset, audit_index)
                   SELECT * FROM unnest($1::uuid[], $2::bytea[], $3::int[], $4::bigint[],
                                        $5::bigint[])
                   ON CONFLICT (message_id) DO NOTHING""",
                [v.envelope.message_id for v, _ in fresh if v.envelope is not None],
                [v.value_sha256 for v, _ in fresh],
                [v.record.partition for v, _ in fresh],
                [v.record.offset for v, _ in fresh],
                [index for _, index in fresh],
            )
        for e in await self._log.append(conn, second_pass):
            if not e.new:  # a re-run: send exactly what the log already says was sent
                stored = await self._log.entry(conn, e.message_id, "delivered")
                logged = leaf_envelope(decode_leaf(stored.leaf))
                for i, v in enumerate(verdicts):
                    if logged and v.envelope is not None and v.envelope.message_id == e.message_id:
                        receipts[i] = (logged, None)

        for i, v in enumerate(verdicts):
            if id(v) in duplicates:
                continue
            if v.outcome == "accept":
                env = v.envelope
                assert env is not None
                index = appended[(env.message_id, "accepted")].index
                plan.sends.extend(self._outputs.deliveries(v, audit_index=index))
                plan.sends.append(self._outputs.receipt_send(v, *receipts[i]))
                plan.accepted.append(v)
            else:
                plan.sends.append(self._outputs.dead_letter(v))
                nack = nacks.get(i)
                if nack is not None:
                    plan.sends.append(self._outputs.nack_send(v, nack))
                plan.refused.append(v)
        return plan

    async def _deliver(
        self,
        plan: BatchPlan,
        offsets: dict[TopicPartition, OffsetAndMetadata],
        membership: eos.GroupMembership,
    ) -> bool:
        """Produce the plan and commit the offsets in one Kafka transaction.

        After a failure the outcome may be unknown (the commit reached the coordinator but
        its answer did not come back, or it never answered): as the Java producer's contract
        says, a transaction whose commit was sent is never aborted. The producer is closed and
        made again under the same transactional id; its InitProducerId waits for the old
        transaction to finish (or aborts it if the commit never arrived), and the caller then
        rewinds to offsets read stably, so the batch is routed again only if it did not
        commit."""
        producer = self._producer
        assert producer is not None
        committing = False
        try:
            if not membership.known:
                raise KafkaError("the batch was fetched between two generations of the group")
            eos.record_membership(self._txn_id, self._group, membership)
            await producer.begin_transaction()
            half = len(plan.sends) // 2
            acks = []
            for n, s in enumerate(plan.sends):
                acks.append(await producer.send(s.topic, s.value, key=s.key, headers=s.headers))
                if n == half:
                    failpoints.hit("router.mid_produce")
            # aiokafka commits a transaction even when some of its records failed for good (an
            # OutOfOrderSequenceNumber after a broker restart): they would be missing from the
            # inboxes while the offsets move on. Every record must be acknowledged first.
            failed = [
                r
                for r in await asyncio.gather(*acks, return_exceptions=True)
                if isinstance(r, BaseException)
            ]
            if failed:
                raise KafkaError(f"{len(failed)} of {len(acks)} records not written: {failed[0]!r}")
            failpoints.hit("router.after_produce")
            await producer.send_offsets_to_transaction(offsets, self._group)
            failpoints.hit("router.after_offsets")
            if failpoints.fails("router.commit_fails"):
                raise KafkaError("failpoint router.commit_fails: the commit did not happen")
            committing = True
            await asyncio.wait_for(
                producer.commit_transaction(), self._settings.router_transaction_timeout_s
            )
            if failpoints.fails("router.commit_lost"):
                raise KafkaError("failpoint router.commit_lost: the commit's answer was lost")
            return True
        except (KafkaError, TimeoutError) as e:
            metrics.RETRIES.labels(stage="deliver").inc()
            log.warning(
                "router.deliver_failed",
                error=repr(e),
                sends=len(plan.sends),
                outcome="unknown" if committing else "aborted",
            )
            if not committing:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(producer.abort_transaction(), 10)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.stop(), 10)
            await asyncio.sleep(random.uniform(0.5, 1.5))
            self._producer = await self._start_producer_with_retry()
            return False

    async def _start_producer_with_retry(self) -> AIOKafkaProducer:
        delay = 0.5
        while True:
            try:
                return await self._new_producer()
            except KafkaError as e:
                log.warning("router.producer_start_retry", error=repr(e), retry_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _rewind(self) -> None:
        """After a failed transaction, read every assigned partition again from its committed
        offset: the failed batch and the one decided behind it are both uncommitted.

        Not from a batch's first offsets: when the commit reached the broker but its answer
        was lost, the offsets moved with it, and re-reading the batch would deliver it twice.
        A partition with no committed offset yet starts again from its beginning.
        """
        consumer = self._consumer
        assert consumer is not None
        delay = 0.5
        while True:
            try:
                for tp in consumer.assignment():
                    committed = await consumer.committed(tp)
                    if committed is None:
                        await consumer.seek_to_beginning(tp)
                    else:
                        consumer.seek(tp, committed)
                return
            except KafkaError as e:
                log.warning("router.rewind_retry", error=repr(e))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _observe_lag(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        for tp in consumer.assignment():
            high = consumer.highwater(tp)
            if high is None:
                continue
            with contextlib.suppress(Exception):
                position = await consumer.position(tp)
                metrics.LAG.labels(partition=str(tp.partition)).set(max(0, high - position))


async def _keep_oversize_bodies(conn: Conn, verdicts: list[Verdict]) -> None:
    """Keep the whole of each too-large record where an operator can read it back; its dead
    letter and audit entry carry only its digest, size and a prefix."""
    for v in verdicts:
        r = v.record
        headers = [
            {"key": k, "value": base64.b64encode(bytes(h or b"")).decode("ascii")}
            for k, h in r.headers or ()
        ]
        await conn.execute(
            """INSERT INTO dead_letter_bodies (value_sha256, src_topic, src_partition, src_offset,
                   record_key, record_value, record_headers, received_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8)
               ON CONFLICT (value_sha256) DO NOTHING""",
            v.value_sha256,
            r.topic,
            r.partition,
            r.offset,
            r.key,
            v.value,
            json.dumps(headers),
            v.received_at,
        )


def _kind(v: Verdict) -> str:
    return v.envelope.kind if v.envelope is not None else "unknown"


def _conflict(message_id: object) -> Problem:
    return Problem(
        "message_id",
        "conflicting_duplicate",
        "this message id was already accepted with other content",
        str(message_id),
        "该消息编号已以不同内容被接收",
    )
