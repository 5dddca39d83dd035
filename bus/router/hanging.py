"""Settling a hanging transaction of the router's own on its group's offsets.

What was seen: after a clean broker restart, about one run in ninety left one submit
partition's committed offset pending for good. The router's transaction had added the group's
offsets (AddOffsetsToTxn, TxnOffsetCommit) just before the broker stopped; the transaction
coordinator later finished that transaction, but its marker never reached the group's
``__consumer_offsets`` partition. Kafka's own ``kafka-transactions.sh find-hanging`` lists it;
the group coordinator answers ``UNSTABLE_OFFSET_COMMIT`` for the partition until a marker for
that producer id arrives, so a router that must read the offset (after a failed batch, on a
new assignment) waits forever.

Any marker of the same producer id on that partition settles it: transaction markers are per
producer id, and the group coordinator applies a marker to every offset that producer id has
pending there. The router's next transaction that adds the group's offsets writes one, so a
router that keeps routing never notices. One that is waiting for the offset writes one on
purpose: a transaction that adds the group (AddOffsetsToTxn alone, no offset) and ends. The
end must be the hanging transaction's own outcome, or the offsets it carried are wrongly
applied or dropped:

- commit, when this producer's last transaction that added the group's offsets committed
  (its commit was answered): those offsets belong to routed, committed output;
- abort, when that transaction aborted before its commit was sent (a transaction whose commit
  was never sent can only end in an abort);
- nothing, when its outcome is unknown (the commit was sent but not answered, or the
  transaction was a previous process's): the router does not guess. It says so
  (``router.hanging_offsets_fate_unknown``) and the operator's runbook applies
  (``CasebusRouterOffsetsStuck``).

Another replica's producer id is never touched: a marker of ours settles only our own. A
partition that stays pending while this router keeps ending transactions of its own is not
ours either (our last marker would have settled it), so the router acts only when no
transaction of its own that added the group's offsets ended since the wait began.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

from aiokafka.structs import TopicPartition

__all__ = ["HangingWatch", "OffsetsFate", "Outcome", "settle_offsets"]

Outcome = Literal["commit", "abort"]


@dataclass
class OffsetsFate:
    """What became of this producer's last transaction that added the group's offsets."""

    outcome: Outcome | None = None  # None: unknown (nothing ended in this process, or in doubt)
    ended_at: float = field(default=float("-inf"))  # time.monotonic() of its end
    _sending: bool = False

    def sending(self) -> None:
        """The open transaction is adding the group's offsets."""
        self._sending = True
        self.outcome = None

    def committed(self) -> None:
        """Its commit was answered."""
        self._settle("commit")

    def failed_before_commit(self) -> None:
        """The transaction failed before its commit was sent: it can only abort (by our abort,
        by the next InitProducerId, or by the broker's transaction timeout)."""
        if self._sending:
            self._settle("abort")

    def in_doubt(self) -> None:
        """The commit was sent and not answered: the broker decided, we do not know what."""
        if self._sending:
            self._settle(None)

    def _settle(self, outcome: Outcome | None) -> None:
        self._sending = False
        self.outcome = outcome
        self.ended_at = time.monotonic()


@dataclass
class HangingWatch:
    """Tells, from the group's unstable partitions seen over time, when to settle our own."""

    after_s: float
    since: float | None = None
    partitions: list[TopicPartition] = field(default_factory=list)
    said_unknown: bool = False

    def observe(self, unstable: list[TopicPartition], now: float | None = None) -> None:
        """One look at the group: the partitions whose committed offset is pending now."""
        now = time.monotonic() if now is None else now
        if not unstable:
            self.since, self.partitions, self.said_unknown = None, [], False
            return
        if self.since is None:
            self.since = now
        self.partitions = list(unstable)

    def due(
        self, fate: OffsetsFate, now: float | None = None
    ) -> Outcome | Literal["unknown"] | None:
        """What to end a settling transaction with, once a partition has been pending for
        ``after_s`` with no transaction of ours that added the group's offsets ended since;
        ``"unknown"`` when one is due but our last one's outcome is not known; else None."""
        now = time.monotonic() if now is None else now
        if self.since is None or now - self.since < self.after_s:
            return None
        if fate.ended_at > self.since:
            return None  # our own marker came after the wait began: the pending one is not ours
        return fate.outcome or "unknown"

    def tried(self, now: float | None = None) -> None:
        """A settling transaction ended (or was found impossible): wait ``after_s`` again
        before the next attempt."""
        self.since = time.monotonic() if now is None else now


async def settle_offsets(
    *, transactional_id: str, group_id: str, outcome: Outcome, client_options: dict[str, object]
) -> tuple[int, int]:
    """The operator's end of a hanging transaction on the group's offsets, for a router that
    could not tell its outcome itself (``router.hanging_offsets_fate_unknown``): take over the
    replica's transactional id (InitProducerId; a replica running under it is fenced and
    starts a new producer on its next batch), then end a transaction that adds only the
    group's offsets with ``outcome``. Kafka's own ``kafka-transactions.sh abort`` can only
    abort; a transaction whose output was delivered (the router logged ``router.delivered``
    for its offsets) must be ended as a commit, or its batch is routed again.

    Returns the producer id and epoch used."""
    from aiokafka import AIOKafkaProducer

    from bus.router import eos

    eos.install()
    producer = AIOKafkaProducer(
        **client_options, transactional_id=transactional_id, enable_idempotence=True, acks="all"
    )
    await producer.start()
    try:
        txn = producer._txn_manager
        await producer.begin_transaction()
        await eos.add_group_to_transaction(producer, group_id)
        if outcome == "commit":
            await producer.commit_transaction()
        else:
            await producer.abort_transaction()
        return int(txn.producer_id), int(txn.producer_epoch)
    finally:
        await producer.stop()
