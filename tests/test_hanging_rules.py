"""The rules by which a router settles a hanging transaction of its own (bus.router.hanging):
which outcome, and when. The broker-side behaviour is in test_router_hanging.py."""

from __future__ import annotations

from aiokafka.structs import TopicPartition

from bus.router.hanging import HangingWatch, OffsetsFate

P0 = TopicPartition("x.submit", 0)
P1 = TopicPartition("x.submit", 1)


def test_a_fresh_process_knows_no_outcome() -> None:
    assert OffsetsFate().outcome is None


def test_a_commit_that_was_answered_is_a_commit() -> None:
    fate = OffsetsFate()
    fate.sending()
    fate.committed()
    assert fate.outcome == "commit"


def test_a_transaction_that_failed_before_its_commit_was_sent_aborted() -> None:
    fate = OffsetsFate()
    fate.sending()
    fate.failed_before_commit()
    assert fate.outcome == "abort"


def test_a_commit_that_was_not_answered_is_in_doubt() -> None:
    fate = OffsetsFate()
    fate.sending()
    fate.committed()
    fate.sending()
    fate.in_doubt()
    assert fate.outcome is None


def test_a_transaction_that_never_added_the_offsets_leaves_the_last_outcome_alone() -> None:
    # The stall that was caught: a committed batch's offsets hanging, then the next batch
    # failed in its produce (before its offsets) and aborted. Settling with that abort would
    # drop committed offsets and route the batch twice.
    fate = OffsetsFate()
    fate.sending()
    fate.committed()
    ended = fate.ended_at
    fate.failed_before_commit()
    fate.in_doubt()
    assert (fate.outcome, fate.ended_at) == ("commit", ended)


def _committed(at: float) -> OffsetsFate:
    fate = OffsetsFate()
    fate.sending()
    fate.committed()
    fate.ended_at = at
    return fate


def test_nothing_is_due_before_the_wait_is_long_enough() -> None:
    watch = HangingWatch(after_s=30)
    watch.observe([P0], now=100)
    assert watch.due(_committed(at=90), now=129) is None
    assert watch.due(_committed(at=90), now=130) == "commit"


def test_a_partition_that_settles_ends_the_wait() -> None:
    watch = HangingWatch(after_s=30)
    watch.observe([P0], now=100)
    watch.observe([], now=110)
    watch.observe([P1], now=120)
    assert watch.due(_committed(at=90), now=140) is None
    assert watch.due(_committed(at=90), now=150) == "commit"


def test_pending_offsets_while_our_own_transactions_keep_ending_are_not_ours() -> None:
    watch = HangingWatch(after_s=30)
    watch.observe([P0], now=100)
    assert watch.due(_committed(at=101), now=200) is None


def test_an_unknown_outcome_is_said_not_guessed() -> None:
    watch = HangingWatch(after_s=30)
    watch.observe([P0], now=100)
    assert watch.due(OffsetsFate(), now=200) == "unknown"


def test_after_an_attempt_the_next_waits_again() -> None:
    watch = HangingWatch(after_s=30)
    watch.observe([P0], now=100)
    assert watch.due(_committed(at=90), now=130) == "commit"
    watch.tried(now=130)
    watch.observe([P0], now=135)
    assert watch.due(_committed(at=90), now=159) is None
    assert watch.due(_committed(at=90), now=160) == "commit"
