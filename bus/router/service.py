"""The router service: consume a batch, audit it in PostgreSQL, deliver it in one Kafka
transaction with the consumer offsets.

Guarantees (design §6): the audit transaction is idempotent per message and event, so a batch
re-run after a crash at any point adds no second audit entry; deliveries, receipts, nacks,
dead letters and the offsets commit together in one Kafka transaction, so a read_committed
recipient sees each delivery once — also when a partition changes hands, because offsets are
read stably and committed fenced by the group generation (bus.router.eos). A record that
cannot be decoded, is refused, is too large, or whose delivery Kafka refuses for good never
blocks its partition.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Final

import aiokafka.errors as Errors
import aiokafka.producer.sender as aiokafka_sender
import asyncpg
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.errors import KafkaError
from aiokafka.partitioner import murmur2
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata, TopicPartition

from bus import failpoints
from bus.agencies import Registry
from bus.audit.log import AuditLog
from bus.codec import Codec, default_codec
from bus.db import Conn
from bus.errors import Problem
from bus.lifecycle import Backoff, Stoppable, cancel
from bus.router import eos, metrics, report
from bus.router.batch import BatchPlan, audit_batch
from bus.router.classify import Classifier
from bus.router.hanging import HangingWatch, OffsetsFate, Outcome
from bus.router.outputs import Outputs
from bus.router.principal import principal_check
from bus.router.producers import discard_producer
from bus.router.store_pg import PostgresRouterStore
from bus.router.verdict import Verdict, undeliverable
from bus.routing import RoutingPolicy
from bus.settings import ROUTER_LINGER_BELOW, Settings
from bus.signing import KeyStore, Signer
from bus.topics import submit_topics

__all__ = ["Router", "discard_producer"]

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

_BATCH_BYTES: Final = 256 * 1024
"""The largest record batch the router builds (one record larger than this goes alone). Kafka
refuses a batch above a topic's ``max.message.bytes`` (1 MiB by default) whole: a topic set
below this limit still gets every record, one at a time after the refusal, but slowly."""

_KAFKA_RETRY: Final = Backoff(initial_s=0.5, max_s=5.0)
"""While Kafka is away (at start, making a producer, reading committed offsets): wait, retry."""
_AUDIT_RETRY: Final = Backoff(initial_s=0.1, max_s=5.0, jitter=(0.8, 1.2))
"""While PostgreSQL is away during a batch's audit: wait, unless stopping, and retry."""


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


class Router(Stoppable):
    """One router replica. ``await run()`` until ``stop()``."""

    def __init__(
        self,
        settings: Settings,
        *,
        pool: asyncpg.Pool,
        keystore: KeyStore,
        registry: Registry,
        policy: RoutingPolicy,
        signer: Signer,
        router_id: str = "router-0",
        max_batch: int = 500,
        codec: Codec | None = None,
        log_gate: Callable[[datetime], Problem | None] | None = None,
    ) -> None:
        super().__init__()
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
            log_gate=log_gate,
        )
        self._submit_topics = submit_topics(settings, registry, policy)
        self._outputs = Outputs(settings, signer=signer, codec=self._codec)
        self._log = AuditLog()
        self._group = f"{settings.topic_prefix}.router"
        self._txn_id = f"{settings.topic_prefix}.router.{router_id}"
        self._max_batch = max_batch
        self._linger_s = settings.router_linger_ms / 1000
        self._batch_lock = asyncio.Lock()
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._in_flight: asyncio.Task[bool] | None = None
        # After Kafka refused a record for good: produce one record at a time until the one
        # it refuses is found; its source is then refused itself, and the rest flow on.
        self._careful = False
        self._undeliverable: dict[tuple[str, int, int], list[str]] = {}
        # A hanging transaction of our own on the group's offsets (bus.router.hanging).
        self._fate = OffsetsFate()
        self._hanging = HangingWatch(settings.router_hanging_offsets_after_s)
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
            max_batch_size=_BATCH_BYTES,
        )
        await producer.start()
        txn = producer._txn_manager
        log.info(
            "router.producer_ready",
            transactional_id=self._txn_id,
            producer_id=txn.producer_id,
            producer_epoch=txn.producer_epoch,
        )
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
            # aiokafka's own fetch wait (500 ms), not KAFKA_FETCH_MAX_WAIT_MS: a rewind's seek
            # waits for the fetch in flight before the partition is read again, and a router
            # at work is seldom idle anyway.
        )
        self._consumer.subscribe(
            self._submit_topics, listener=_Revocations(self._batch_lock, self._settle)
        )
        failures = 0
        while True:
            try:
                await self._consumer.start()
                break
            except KafkaError as e:
                failures += 1
                delay = _KAFKA_RETRY.delay(failures)
                log.warning("router.consumer_start_retry", error=repr(e), retry_in_s=delay)
                await asyncio.sleep(delay)
        log.info("router.started", group=self._group, transactional_id=self._txn_id)

    def stop(self) -> None:
        """Ask the loop to finish the batch in flight and return."""
        self.request_stop()

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
        watch = asyncio.create_task(self._watch_offsets())
        try:
            assert self._consumer is not None
            small = False
            while not self.stopping:
                if small and self._linger_s:
                    # The last batch was tiny: the bus is lightly loaded, so let records gather
                    # a moment rather than pay a transaction for each one or two (the one in
                    # flight goes on meanwhile). Busier, batches grow past the mark by
                    # themselves and nothing waits.
                    await self.pause(self._linger_s)
                # With a transaction in flight, take what has arrived and get to work on it;
                # with none, wait a little for a batch.
                wait_ms = 0 if self._in_flight is not None else 200
                batch = await self._consumer.getmany(
                    timeout_ms=wait_ms, max_records=self._max_batch
                )
                records = [r for tp in sorted(batch) for r in batch[tp]]
                small = 0 < len(records) < min(ROUTER_LINGER_BELOW, self._max_batch)
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
            await cancel(watch)
            if self._in_flight is not None:  # cancelled or failed: the open transaction aborts
                await cancel(self._in_flight)
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
        context = report.accepted(plan)
        offsets = {}
        for r in records:
            offsets[TopicPartition(r.topic, r.partition)] = OffsetAndMetadata(r.offset + 1, "")
        if not await self._settle():
            # The batch before failed: read both again from the committed offsets. The rewind
            # happens here, after this batch was fetched, so no fetch can slip past it.
            await self._rewind()
            return
        self._in_flight = asyncio.create_task(
            self._deliver_and_report(plan, offsets, membership, size=len(records), context=context)
        )

    async def _deliver_and_report(
        self,
        plan: BatchPlan,
        offsets: dict[TopicPartition, OffsetAndMetadata],
        membership: eos.GroupMembership,
        *,
        size: int,
        context: dict[str, object],
    ) -> bool:
        if not await self._deliver(plan, offsets, membership):
            return False  # whoever settles this batch rewinds
        failpoints.hit("router.after_commit")
        report.delivered(plan, offsets, size=size, context=context)
        return True

    async def _decide_with_retry(
        self, records: Sequence[ConsumerRecord[bytes, bytes]]
    ) -> BatchPlan | None:
        """Classify and audit a batch; while PostgreSQL is away, wait with backoff (the key
        store and the audit log both live there) instead of failing or spinning."""
        failures = 0
        while True:
            try:
                verdicts = await self._classifier.classify_all(records, now=datetime.now(UTC))
                async with self._pool.acquire() as conn, conn.transaction():
                    plan = await self._audit(conn, verdicts)
                    failpoints.hit("router.in_audit")  # the audit log's lock still held
                    return plan
            except _PG_ERRORS as e:
                metrics.RETRIES.labels(stage="audit").inc()
                # Replace every pooled connection: one cut mid-operation may be unusable.
                await self._pool.expire_connections()
                failures += 1
                delay = _AUDIT_RETRY.delay(failures)
                log.warning("router.audit_retry", error=repr(e), retry_in_s=round(delay, 2))
                if await self.pause(delay):
                    return None

    async def _audit(self, conn: Conn, verdicts: list[Verdict]) -> BatchPlan:
        """Refuse what Kafka refused for good before, then apply the batch rules through the
        stores in PostgreSQL (bus.router.plan, bus.router.batch)."""
        verdicts = [
            undeliverable(v, why) if (why := self._undeliverable.get(_source(v))) else v
            for v in verdicts
        ]
        store = PostgresRouterStore(conn, self._log)
        return await audit_batch(store, verdicts, outputs=self._outputs)

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
            await self._produce(producer, plan)
            failpoints.hit("router.after_produce")
            if failpoints.fails("router.produce_fails"):
                raise KafkaError("failpoint router.produce_fails: a record was not written")
            self._fate.sending()
            await producer.send_offsets_to_transaction(offsets, self._group)
            failpoints.hit("router.after_offsets")
            if failpoints.fails("router.commit_fails"):
                raise KafkaError("failpoint router.commit_fails: the commit did not happen")
            committing = True
            await asyncio.wait_for(
                producer.commit_transaction(), self._settings.router_transaction_timeout_s
            )
            self._fate.committed()
            if failpoints.fails("router.commit_lost"):
                self._fate.in_doubt()  # as far as the router can tell
                raise KafkaError("failpoint router.commit_lost: the commit's answer was lost")
            self._careful = False
            return True
        except (KafkaError, TimeoutError) as e:
            metrics.RETRIES.labels(stage="deliver").inc()
            log.warning(
                "router.deliver_failed",
                error=repr(e),
                sends=len(plan.sends),
                outcome="unknown" if committing else "aborted",
            )
            await self._replace_producer(producer, committing=committing)
            return False

    async def _produce(self, producer: AIOKafkaProducer, plan: BatchPlan) -> None:
        """Write every record of the plan into the open transaction and wait until each is
        acknowledged: aiokafka commits a transaction even when some of its records failed for
        good (an OutOfOrderSequenceNumber after a broker restart), and they would be missing
        from the inboxes while the offsets move on.

        The records go as record batches built here, one per partition as far as
        :data:`_BATCH_BYTES` allows, in plan order within each partition: aiokafka's
        per-record ``send`` (a coroutine, a future and a batch lookup each, and a wait for the
        sender whenever a small batch fills) was a tenth of the router's CPU.

        A record Kafka refuses for good (too large for a topic's limit, a topic the router may
        not write) would fail every retry of the batch and stop its partition. The first such
        refusal switches to one record at a time, which names the record; its submission is
        then refused as ``undeliverable`` (audited, dead-lettered by digest, nacked) and the
        batch is planned again without it."""
        if self._careful:
            await self._produce_each(producer, plan)
            return
        partitions: dict[str, list[int]] = {}
        hashes: dict[bytes, int] = {}  # a message's records share its case's key
        batches: dict[tuple[str, int], list[Any]] = {}
        topic = None
        acks = []
        try:
            for s in plan.sends:
                topic = s.topic
                ids = partitions.get(topic)
                if ids is None:
                    ids = partitions[topic] = sorted(await producer.partitions_for(topic))
                # The producer's own choice for a keyed record, as send() and the Java client
                # make it: murmur2 of the key (pure Python in aiokafka, ~2.5 µs), once a batch.
                h = hashes.get(s.key)
                if h is None:
                    h = hashes[s.key] = murmur2(s.key) & 0x7FFFFFFF
                tp = (topic, ids[h % len(ids)])
                chain = batches.get(tp)
                if chain is None:
                    chain = batches[tp] = [producer.create_batch()]
                added = chain[-1].append(
                    key=s.key, value=s.value, timestamp=None, headers=s.headers
                )
                if added is not None:
                    continue
                chain.append(producer.create_batch())  # full: a record always fits a new one
                chain[-1].append(key=s.key, value=s.value, timestamp=None, headers=s.headers)
            queued = [(tp, batch) for tp, chain in batches.items() for batch in chain]
            half = len(queued) // 2
            for n, ((topic, partition), batch) in enumerate(queued):
                batch.close()
                acks.append(await producer.send_batch(batch, topic, partition=partition))
                if n == half:
                    failpoints.hit("router.mid_produce")
        except KafkaError as e:
            self._note_refusal(e, None, topic)
            raise
        await self._written(acks, what="record batches")

    async def _produce_each(self, producer: AIOKafkaProducer, plan: BatchPlan) -> None:
        """One record at a time, each acknowledged before the next: which one Kafka refuses
        for good names its submission."""
        half = len(plan.sends) // 2
        acks = []
        for n, (s, origin) in enumerate(zip(plan.sends, plan.origins, strict=True)):
            try:
                ack = await producer.send(s.topic, s.value, key=s.key, headers=s.headers)
                await ack
            except KafkaError as e:
                self._note_refusal(e, origin, s.topic)
                raise
            acks.append(ack)
            if n == half:
                failpoints.hit("router.mid_produce")
        await self._written(acks, what="records")

    async def _written(self, acks: list[asyncio.Future[Any]], *, what: str) -> None:
        results = await asyncio.gather(*acks, return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            for r in failed:
                if isinstance(r, KafkaError):
                    self._note_refusal(r, None, None)
            raise KafkaError(f"{len(failed)} of {len(acks)} {what} not written: {failed[0]!r}")

    def _note_refusal(self, error: KafkaError, origin: Verdict | None, topic: str | None) -> None:
        if not isinstance(error, _REFUSED_FOR_GOOD):
            return
        if not self._careful or origin is None:
            log.warning("router.refused_for_good", error=repr(error), next="one record at a time")
            self._careful = True
            return
        reasons = self._undeliverable.setdefault(_source(origin), [])
        reasons.append(f"{topic}: {type(error).__name__}")
        log.warning(
            "router.undeliverable",
            message_id=str(origin.message_id) if origin.message_id else None,
            topic=topic,
            error=repr(error),
            partition=origin.record.partition,
            offset=origin.record.offset,
        )

    async def _replace_producer(self, producer: AIOKafkaProducer, *, committing: bool) -> None:
        """After a transaction failed: never abort one whose commit was sent (its outcome is
        the broker's, unknown here); close the producer and make it again under the same
        transactional id, whose InitProducerId waits for (or aborts) what was open."""
        if committing:
            self._fate.in_doubt()
        else:
            self._fate.failed_before_commit()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.abort_transaction(), 10)
        await discard_producer(producer, timeout_s=10)
        await asyncio.sleep(random.uniform(0.5, 1.5))
        self._producer = await self._start_producer_with_retry()

    async def _start_producer_with_retry(self) -> AIOKafkaProducer:
        failures = 0
        while True:
            try:
                return await self._new_producer()
            except KafkaError as e:
                failures += 1
                delay = _KAFKA_RETRY.delay(failures)
                log.warning("router.producer_start_retry", error=repr(e), retry_in_s=delay)
                await asyncio.sleep(delay)

    async def _rewind(self) -> None:
        """After a failed transaction, read every assigned partition again from its committed
        offset: the failed batch and the one decided behind it are both uncommitted.

        Not from a batch's first offsets: when the commit reached the broker but its answer
        was lost, the offsets moved with it, and re-reading the batch would deliver it twice.
        A partition with no committed offset yet starts again from its beginning.
        """
        consumer = self._consumer
        assert consumer is not None
        failures = 0
        while True:
            assigned = sorted(consumer.assignment())
            if not assigned:
                return
            try:
                committed = await eos.committed_once(consumer, assigned)
            except eos.UnstableOffsetCommitError as e:
                # A transaction's offsets are pending: wait for it to settle, and settle it
                # ourselves if it is a hanging one of ours (we hold the batch lock: none is open).
                self._hanging.observe(e.partitions)
                await self._settle_hanging(seen_by="rewind")
                await asyncio.sleep(0.1)
                continue
            except KafkaError as e:
                log.warning("router.rewind_retry", error=repr(e))
                failures += 1
                await asyncio.sleep(_KAFKA_RETRY.delay(failures))
                continue
            self._hanging.observe([])
            for tp in assigned:
                if tp in committed:
                    consumer.seek(tp, committed[tp].offset)
                else:
                    await consumer.seek_to_beginning(tp)
            return

    # -- a hanging transaction of our own (bus.router.hanging) ----------------------------------

    async def _unstable(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        consumer = self._consumer
        assert consumer is not None
        try:
            return await asyncio.wait_for(eos.unstable_partitions(consumer, partitions), 15)
        except (KafkaError, TimeoutError):
            return self._hanging.partitions  # no answer: no change

    async def _watch_offsets(self) -> None:
        """Every few seconds, look at every submit partition of the group (any replica's):
        one that stays pending while no transaction of ours ends may be a hanging one of ours.
        The rewind looks too (it holds the batch lock while it waits)."""
        consumer = self._consumer
        assert consumer is not None
        every = min(5.0, max(0.5, self._settings.router_hanging_offsets_after_s / 4))
        while True:
            await asyncio.sleep(every)
            try:
                partitions = [
                    TopicPartition(topic, p)
                    for topic in self._submit_topics
                    for p in sorted(consumer.partitions_for_topic(topic) or ())
                ]
                self._hanging.observe(await self._unstable(partitions))
                if self._hanging.due(self._fate) is None:
                    continue
                async with self._batch_lock:
                    if self._in_flight is None:  # no transaction of ours is open
                        await self._settle_hanging(seen_by="watch")
            except Exception as e:  # the watch must outlive whatever one look runs into
                log.warning("router.offsets_watch_failed", error=repr(e))

    async def _settle_hanging(self, *, seen_by: str) -> None:
        """End a transaction that adds only the group's offsets, with our last one's outcome:
        its marker settles whatever our producer id still has pending there. Called with the
        batch lock held and no transaction open."""
        verdict = self._hanging.due(self._fate)
        if verdict is None:
            return
        producer = self._producer
        assert producer is not None
        txn = producer._txn_manager
        where = dict(
            seen_by=seen_by,
            group=self._group,
            partitions=[f"{t.topic}/{t.partition}" for t in self._hanging.partitions],
            transactional_id=self._txn_id,
            producer_id=txn.producer_id,
            producer_epoch=txn.producer_epoch,
        )
        if verdict == "unknown":
            if not self._hanging.said_unknown:
                self._hanging.said_unknown = True
                log.error(
                    "router.hanging_offsets_fate_unknown",
                    **where,
                    runbook="CasebusRouterOffsetsStuck",
                    why="the outcome of this router's last transaction with the group's "
                    "offsets is not known here; it does not guess",
                )
            return
        self._hanging.tried()
        await self._end_offsets_transaction(producer, verdict, where)

    async def _end_offsets_transaction(
        self, producer: AIOKafkaProducer, outcome: Outcome, where: dict[str, object]
    ) -> None:
        committing = False
        try:
            await producer.begin_transaction()
            self._fate.sending()
            await asyncio.wait_for(eos.add_group_to_transaction(producer, self._group), 30)
            if outcome == "commit":
                committing = True
                await asyncio.wait_for(
                    producer.commit_transaction(), self._settings.router_transaction_timeout_s
                )
                self._fate.committed()
            else:
                await asyncio.wait_for(producer.abort_transaction(), 30)
                self._fate.failed_before_commit()
        except (KafkaError, TimeoutError) as e:
            log.error(
                "router.hanging_offsets_settle_failed", **where, outcome=outcome, error=repr(e)
            )
            await self._replace_producer(producer, committing=committing)
            return
        metrics.HANGING_SETTLED.labels(outcome=outcome).inc()
        log.warning("router.hanging_offsets_settled", **where, outcome=outcome)

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


# What Kafka refuses whatever the retry: the record or the topic is the problem, not the moment.
_REFUSED_FOR_GOOD = (
    Errors.MessageSizeTooLargeError,
    Errors.RecordListTooLargeError,
    Errors.RecordTooLargeError,
    Errors.InvalidTopicError,
    Errors.TopicAuthorizationFailedError,
    Errors.UnsupportedForMessageFormatError,
)


def _source(v: Verdict) -> tuple[str, int, int]:
    return (v.record.topic, v.record.partition, v.record.offset)
