"""Exactly once across rebalances, zombies and restarts: the two halves of KIP-447 that
aiokafka 0.14 does not speak, written against its protocol classes.

The router reads a submit partition, produces its outputs and commits the partition's
offset in one Kafka transaction, with one transactional id per replica (design §6). That is
only exactly once if whoever reads a partition's committed offset next sees every transaction
that touched it settled, and if a replica that lost a partition can no longer commit for it.
Kafka solved both in KIP-447 (Kafka 2.5; the Java client's "EOS v2"):

1. **A stable offset fetch.** OffsetFetch v7 carries ``require_stable``: while a transaction
   that committed offsets for a partition is still open (or its commit markers are still being
   written), the group coordinator answers ``UNSTABLE_OFFSET_COMMIT`` for that partition
   instead of the previous offset. aiokafka speaks OffsetFetch only up to v3, so a replica that
   joins while another's transaction is pending reads the old offset and routes the batch
   again (a fault test once saw 302 records for 300 ids). :class:`StableGroupCoordinator`
   asks v7 and waits while the answer is unstable.
2. **Offsets fenced by the group generation.** TxnOffsetCommit v3 carries the consumer's
   generation and member id; the coordinator refuses the offsets of a member that is no
   longer in the group (``ILLEGAL_GENERATION``, ``UNKNOWN_MEMBER_ID``), so a zombie (a
   replica paused past its session, cut off by the network) cannot commit a batch a new owner
   already routed: its transaction aborts. aiokafka sends v0, without them.
   :class:`FencedTxnOffsetCommitHandler` sends v3 with the membership the router recorded
   for its transactional id when it fetched the batch.

Both are installed process-wide by :func:`install` (a stable fetch is what every consumer of
transactional offsets wants). The classes they replace are private to aiokafka, so
:func:`install` checks they are still there and refuses to start otherwise: unlike a latency
setting, this is correctness. Per-partition transactional ids (Kafka's EOS v1) would fence
too, but need a producer per input partition: with per-agency submit topics, hundreds.
"""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import aiokafka.consumer.consumer as aiokafka_consumer
import aiokafka.errors as Errors
import aiokafka.producer.sender as aiokafka_sender
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.consumer.group_coordinator import GroupCoordinator
from aiokafka.producer.transaction_manager import TransactionState
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import (
    Boolean,
    CompactArray,
    CompactString,
    Int16,
    Int32,
    Int64,
    Schema,
    TaggedFields,
)
from aiokafka.structs import OffsetAndMetadata, TopicPartition

from bus.router import metrics

__all__ = [
    "FencedTxnOffsetCommitHandler",
    "GroupMembership",
    "StableGroupCoordinator",
    "UnstableOffsetCommitError",
    "add_group_to_transaction",
    "committed_once",
    "forget_membership",
    "install",
    "membership_of",
    "record_membership",
    "unstable_partitions",
]

log = structlog.get_logger("casebus.router")

UNSTABLE_OFFSET_COMMIT = 88
_UNKNOWN_OFFSET = -1
# Errors that mean the member no longer owns what it read: its transaction must abort.
_FENCED = {
    Errors.IllegalGenerationError.errno: "ILLEGAL_GENERATION",
    Errors.UnknownMemberIdError.errno: "UNKNOWN_MEMBER_ID",
    Errors.RebalanceInProgressError.errno: "REBALANCE_IN_PROGRESS",
    82: "FENCED_INSTANCE_ID",
}


class UnstableOffsetCommitError(Errors.KafkaError):  # type: ignore[misc]
    """A transaction that committed offsets for the partition is not settled yet; ask again."""

    retriable = True
    errno = UNSTABLE_OFFSET_COMMIT

    def __init__(self, partitions: list[TopicPartition]) -> None:
        super().__init__(f"pending transactional offsets on {partitions}")
        self.partitions = partitions


class MembershipFencedError(Errors.KafkaError):  # type: ignore[misc]
    """The group coordinator refused the batch's offsets: the partition has a new owner."""


# -- OffsetFetch v7 (flexible, with require_stable) ----------------------------------------------

_S = CompactString("utf-8")


class _OffsetFetchResponseV7(Response):  # type: ignore[misc]
    API_KEY = 9
    API_VERSION = 7
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "topics",
            CompactArray(
                ("topic", _S),
                (
                    "partitions",
                    CompactArray(
                        ("partition", Int32),
                        ("offset", Int64),
                        ("leader_epoch", Int32),
                        ("metadata", _S),
                        ("error_code", Int16),
                        ("tags", TaggedFields),
                    ),
                ),
                ("tags", TaggedFields),
            ),
        ),
        ("error_code", Int16),
        ("tags", TaggedFields),
    )


class _OffsetFetchRequestV7(RequestStruct):  # type: ignore[misc]
    FLEXIBLE_VERSION = True
    API_KEY = 9
    API_VERSION = 7
    RESPONSE_TYPE = _OffsetFetchResponseV7
    SCHEMA = Schema(
        ("group_id", _S),
        (
            "topics",
            CompactArray(
                ("topic", _S), ("partitions", CompactArray(Int32)), ("tags", TaggedFields)
            ),
        ),
        ("require_stable", Boolean),
        ("tags", TaggedFields),
    )


class StableOffsetFetchRequest(Request[_OffsetFetchRequestV7]):  # type: ignore[misc]
    """OffsetFetch with ``require_stable``; a broker older than 2.5 cannot answer it."""

    API_KEY = 9

    def __init__(self, group_id: str, partitions: list[tuple[str, list[int]]]) -> None:
        self._group_id = group_id
        self._partitions = partitions

    def build(self, request_struct_class: type[_OffsetFetchRequestV7]) -> _OffsetFetchRequestV7:
        topics: list[tuple[str, list[int], dict[int, bytes]]]
        topics = [(topic, parts, {}) for topic, parts in self._partitions]
        return request_struct_class(self._group_id, topics, True, {})


class StableGroupCoordinator(GroupCoordinator):  # type: ignore[misc]
    """aiokafka's group coordinator with every committed-offset read made stable: the
    position a new owner starts from, and every ``consumer.committed()``."""

    async def stable_fetch(self, partitions: list[TopicPartition]) -> Any:
        """One OffsetFetch v7 with ``require_stable`` for ``partitions``; its response."""
        by_topic: dict[str, list[int]] = collections.defaultdict(list)
        for tp in partitions:
            by_topic[tp.topic].append(tp.partition)
        response = await self._send_req(
            StableOffsetFetchRequest(self.group_id, sorted(by_topic.items()))
        )
        _raise_for(response.error_code, self)
        return response

    async def _do_fetch_commit_offsets(
        self, partitions: list[TopicPartition]
    ) -> dict[TopicPartition, OffsetAndMetadata]:
        response = await self.stable_fetch(partitions)
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        unstable: list[TopicPartition] = []
        for topic, topic_partitions, _ in response.topics:
            for partition, offset, _epoch, metadata, error_code, _ in topic_partitions:
                tp = TopicPartition(topic, partition)
                if error_code == UNSTABLE_OFFSET_COMMIT:
                    unstable.append(tp)
                    continue
                if error_code == Errors.UnknownTopicOrPartitionError.errno:
                    continue
                _raise_for(error_code, self)
                if offset != _UNKNOWN_OFFSET:
                    offsets[tp] = OffsetAndMetadata(offset, metadata or "")
        if unstable:
            # aiokafka's fetch_committed_offsets waits its retry backoff and asks again.
            self._note_unstable(unstable)
            raise UnstableOffsetCommitError(unstable)
        if self._unstable_since is not None:
            self._unstable_since = None
            metrics.OFFSETS_UNSTABLE.set(0)
        return offsets

    _unstable_since: float | None = None
    _unstable_logged: float = 0.0

    def _note_unstable(self, unstable: list[TopicPartition]) -> None:
        """Say so once, then every 10 s with how long, and export how long: a transaction
        normally settles within moments; offsets pending for longer than the transaction
        timeout are a hanging transaction, which the router settles itself when it is
        its own and it knows its outcome (bus.router.hanging), and an operator otherwise
        (CasebusRouterOffsetsStuck)."""
        now = time.monotonic()
        names = [f"{t.topic}/{t.partition}" for t in unstable]
        if self._unstable_since is None:
            self._unstable_since = self._unstable_logged = now
            log.info("router.offsets_unstable", partitions=names)
        metrics.OFFSETS_UNSTABLE.set(now - self._unstable_since)
        if now - self._unstable_logged >= 10.0:
            self._unstable_logged = now
            log.warning(
                "router.offsets_unstable_for",
                partitions=names,
                seconds=round(now - self._unstable_since, 1),
                group=self.group_id,
            )


async def committed_once(
    consumer: AIOKafkaConsumer, partitions: list[TopicPartition]
) -> dict[TopicPartition, OffsetAndMetadata]:
    """The committed offsets of ``partitions``, read stably, asking once.

    ``consumer.committed()`` asks until the answer is stable, however long that takes; a
    caller that must act on a hanging transaction (the router, holding its batch lock while it
    rewinds) needs the ``UnstableOffsetCommitError`` instead."""
    coordinator = consumer._coordinator
    assert isinstance(coordinator, StableGroupCoordinator), "eos.install() was not called"
    await coordinator.ensure_coordinator_known()
    result: dict[TopicPartition, OffsetAndMetadata]
    result = await coordinator._do_fetch_commit_offsets(partitions)
    return result


async def unstable_partitions(
    consumer: AIOKafkaConsumer, partitions: list[TopicPartition]
) -> list[TopicPartition]:
    """Those of ``partitions`` whose committed offset is pending in a transaction now: one
    stable OffsetFetch for the consumer's group, whoever owns them."""
    coordinator = consumer._coordinator
    assert isinstance(coordinator, StableGroupCoordinator), "eos.install() was not called"
    if not partitions:
        return []
    await coordinator.ensure_coordinator_known()
    response = await coordinator.stable_fetch(partitions)
    return sorted(
        TopicPartition(topic, partition)
        for topic, topic_partitions, _ in response.topics
        for partition, _offset, _epoch, _metadata, error_code, _ in topic_partitions
        if error_code == UNSTABLE_OFFSET_COMMIT
    )


async def add_group_to_transaction(producer: AIOKafkaProducer, group_id: str) -> None:
    """Put ``group_id``'s offsets partition into the producer's open transaction without
    committing any offset (AddOffsetsToTxn alone; aiokafka's ``send_offsets_to_transaction``
    refuses an empty set). Ending the transaction then writes its marker there, which settles
    any transaction of this producer id still pending on that partition (see
    :mod:`bus.router.hanging`)."""
    sender = producer._sender
    while not await sender._do_add_offsets_to_txn(group_id):
        pass  # the handler waited its backoff (coordinator moving, markers still being written)


def _raise_for(error_code: int, coordinator: GroupCoordinator) -> None:
    if error_code == 0:
        return
    error_type = Errors.for_code(error_code)
    if error_type is Errors.NotCoordinatorForGroupError:
        coordinator.coordinator_dead()
    if error_type is Errors.GroupAuthorizationFailedError:
        raise error_type(coordinator.group_id)
    if getattr(error_type, "retriable", False):
        raise error_type()
    raise Errors.KafkaError(f"OffsetFetch failed: {error_type.__name__} ({error_code})")


# -- TxnOffsetCommit v3 (flexible, with the group generation) ------------------------------------


class _TxnOffsetCommitResponseV3(Response):  # type: ignore[misc]
    API_KEY = 28
    API_VERSION = 3
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "errors",
            CompactArray(
                ("topic", _S),
                (
                    "partition_errors",
                    CompactArray(
                        ("partition", Int32), ("error_code", Int16), ("tags", TaggedFields)
                    ),
                ),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class _TxnOffsetCommitRequestV3(RequestStruct):  # type: ignore[misc]
    FLEXIBLE_VERSION = True
    API_KEY = 28
    API_VERSION = 3
    RESPONSE_TYPE = _TxnOffsetCommitResponseV3
    SCHEMA = Schema(
        ("transactional_id", _S),
        ("group_id", _S),
        ("producer_id", Int64),
        ("producer_epoch", Int16),
        ("generation_id", Int32),
        ("member_id", _S),
        ("group_instance_id", _S),
        (
            "topics",
            CompactArray(
                ("topic", _S),
                (
                    "partitions",
                    CompactArray(
                        ("partition", Int32),
                        ("offset", Int64),
                        ("leader_epoch", Int32),
                        ("metadata", _S),
                        ("tags", TaggedFields),
                    ),
                ),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


@dataclass(frozen=True, slots=True)
class GroupMembership:
    """What the group coordinator checks a member's transactional offsets against."""

    generation_id: int
    member_id: str
    group_instance_id: str | None = None

    @property
    def known(self) -> bool:
        return self.generation_id > 0 and bool(self.member_id)


_UNFENCED = GroupMembership(-1, "")
_MEMBERSHIPS: dict[tuple[str, str], GroupMembership] = {}


def record_membership(transactional_id: str, group_id: str, membership: GroupMembership) -> None:
    """Offsets this transactional id commits for ``group_id`` are checked against
    ``membership`` from now on (the router records it when it fetched the batch)."""
    _MEMBERSHIPS[(transactional_id, group_id)] = membership


def forget_membership(transactional_id: str, group_id: str) -> None:
    _MEMBERSHIPS.pop((transactional_id, group_id), None)


def membership_of(consumer: AIOKafkaConsumer) -> GroupMembership:
    """The consumer's current generation and member id (unknown between generations)."""
    coordinator = getattr(consumer, "_coordinator", None)
    generation = getattr(coordinator, "generation", -1)
    member_id = getattr(coordinator, "member_id", "")
    instance = getattr(coordinator, "_group_instance_id", None)
    if not isinstance(generation, int) or not isinstance(member_id, str):
        return _UNFENCED
    return GroupMembership(generation, member_id, instance)


class _FencedTxnOffsetCommitRequest(Request[_TxnOffsetCommitRequestV3]):  # type: ignore[misc]
    API_KEY = 28

    def __init__(self, **fields: Any) -> None:
        self._fields = fields

    def build(
        self, request_struct_class: type[_TxnOffsetCommitRequestV3]
    ) -> _TxnOffsetCommitRequestV3:
        return request_struct_class(**self._fields)


class FencedTxnOffsetCommitHandler(aiokafka_sender.TxnOffsetCommitHandler):  # type: ignore[misc]
    """aiokafka's handler for a transaction's offsets, sending v3 with the generation."""

    def create_request(self) -> _FencedTxnOffsetCommitRequest:
        txn = self._sender._txn_manager
        member = _MEMBERSHIPS.get((txn.transactional_id, self._group_id), _UNFENCED)
        by_topic: dict[str, list[tuple[int, int, int, str, dict[int, bytes]]]]
        by_topic = collections.defaultdict(list)
        for tp, offset in sorted(self._offsets.items()):
            by_topic[tp.topic].append((tp.partition, offset.offset, -1, offset.metadata, {}))
        return _FencedTxnOffsetCommitRequest(
            transactional_id=txn.transactional_id,
            group_id=self._group_id,
            producer_id=txn.producer_id,
            producer_epoch=txn.producer_epoch,
            generation_id=member.generation_id,
            member_id=member.member_id,
            group_instance_id=member.group_instance_id,
            topics=[(topic, parts, {}) for topic, parts in by_topic.items()],
            tags={},
        )

    def handle_response(self, resp: Any) -> float | None:
        fenced = [
            (topic, partition, _FENCED[code])
            for topic, partitions, _ in resp.errors
            for partition, code, _ in partitions
            if code in _FENCED
        ]
        if fenced:
            txn = self._sender._txn_manager
            log.warning(
                "router.offsets_fenced",
                transactional_id=txn.transactional_id,
                group=self._group_id,
                partitions=[f"{t}/{p}" for t, p, _ in fenced],
                error=fenced[0][2],
            )
            # The transaction can only abort now: its batch belongs to the partition's new
            # owner, who reads it again from the last committed offset.
            _abortable(txn, MembershipFencedError(fenced[0][2]))
            return None
        # Same shape as v0 for aiokafka's own handling of every other answer.
        shim = SimpleNamespace(
            errors=[
                (topic, [(partition, code) for partition, code, _ in partitions])
                for topic, partitions, _ in resp.errors
            ]
        )
        result: float | None = super().handle_response(shim)
        return result


def _abortable(txn: Any, exc: Exception) -> None:
    """Fail the transaction so that it can only be aborted, and the abort reaches the broker.

    Not aiokafka's ``error_transaction``: it forgets the partitions and the group already in
    the transaction, so the abort that follows counts as empty and no EndTxn is sent. The
    broker's transaction then stays open, and the next one's commit commits both."""
    txn._transition_to(TransactionState.ABORTABLE_ERROR)
    txn._pending_txn_partitions.clear()  # never added, so nothing of theirs was written
    for _, _, fut in txn._pending_txn_offsets:
        fut.set_exception(exc)
    txn._pending_txn_offsets.clear()
    waiter = txn._transaction_waiter
    if not waiter.done():
        waiter.set_exception(exc)
        waiter.exception()  # what the caller sees is the offsets' own failure


_installed = False


def install() -> None:
    """Make this process's consumers fetch offsets stably and its transactional producers
    commit offsets fenced by generation. Idempotent; raises if aiokafka no longer has the
    pieces this replaces (the router must not run with weaker guarantees than it claims)."""
    global _installed
    if _installed:
        return
    wanted = (
        (aiokafka_consumer, "GroupCoordinator"),
        (GroupCoordinator, "_do_fetch_commit_offsets"),
        (aiokafka_sender, "TxnOffsetCommitHandler"),
        (aiokafka_sender.Sender, "_do_add_offsets_to_txn"),
    )
    missing = [name for owner, name in wanted if not hasattr(owner, name)]
    if missing:
        raise RuntimeError(
            "this aiokafka lacks what the router's exactly-once guarantee is built on: "
            + ", ".join(missing)
        )
    aiokafka_consumer.GroupCoordinator = StableGroupCoordinator
    aiokafka_sender.TxnOffsetCommitHandler = FencedTxnOffsetCommitHandler
    _installed = True
