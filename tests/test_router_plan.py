"""The router's batch rules (bus.router.plan) as properties over generated batches: reruns,
duplicates, conflicts, readmission and the attachment check, without Kafka or PostgreSQL.

These rules are the exactly-once promise: a message is delivered once per message id, a batch
decided again after a crash comes out the same, and the same id with other bytes is refused
``conflicting_duplicate``. The fault tests (test_router_faults.py) prove the same promise
end to end, with the broker and the database killed under the router.
"""

from __future__ import annotations

import uuid

from hypothesis import given, settings
from plankit import FILE, IDS, POLICE, Case, accepted, cases, refused

from bus.router.plan import (
    ATTACHMENT_NOT_HELD,
    Decision,
    Planned,
    claims_to_check,
    decide,
    ids_to_look_up,
)
from bus.router.store import Seen
from bus.router.verdict import UNWITNESSED, Accepted, Refused, Verdict

fast = settings(max_examples=150, deadline=None, derandomize=True)


def decided(case: Case) -> Decision:
    holding = {(POLICE, FILE)} if case.holds_file else set()
    return decide(case.verdicts, case.seen, holding)


def message_id(v: Verdict) -> uuid.UUID:
    assert v.envelope is not None
    return v.envelope.message_id


def judged_as_accepted(v: Verdict, seen: dict[uuid.UUID, Seen]) -> bool:
    """Whether the rules treat ``v`` as an accepted submission: accepted by the classifier,
    or refused only for an unwitnessed log with bytes the log accepted before."""
    if isinstance(v, Accepted):
        return True
    prior = seen.get(message_id(v))
    return v.code == UNWITNESSED and prior is not None and prior.value_sha256 == v.value_sha256


def new_and_not_held(v: Verdict, case: Case) -> bool:
    return message_id(v) not in case.seen and bool(v.envelope.attachments) and not case.holds_file  # type: ignore[union-attr]


@fast
@given(cases())
def test_every_record_keeps_its_place_and_nothing_is_added(case: Case) -> None:
    items = decided(case).items
    assert [p.verdict.record for p in items] == [v.record for v in case.verdicts]
    for p, v in zip(items, case.verdicts, strict=True):
        assert (p.verdict.value_sha256, p.verdict.envelope) == (v.value_sha256, v.envelope)


@fast
@given(cases())
def test_a_message_id_is_delivered_at_most_once_per_batch(case: Case) -> None:
    delivered = [message_id(a) for p in decided(case).items if (a := p.delivered) is not None]
    assert len(delivered) == len(set(delivered))


@fast
@given(cases())
def test_a_message_seen_before_is_a_rerun_from_its_own_offset_else_a_duplicate_or_conflict(
    case: Case,
) -> None:
    for p, v in zip(decided(case).items, case.verdicts, strict=True):
        prior = case.seen.get(message_id(v))
        if prior is None or not judged_as_accepted(v, case.seen):
            continue
        if prior.value_sha256 != v.value_sha256:
            assert p.fate == "conflict"
        elif (prior.partition, prior.offset) == (v.record.partition, v.record.offset):
            assert p.fate == "rerun" and p.delivered is not None
        else:
            assert p.fate == "duplicate" and p.delivered is None and p.refused is None


@fast
@given(cases())
def test_in_a_batch_the_first_copy_of_a_new_message_goes_and_later_ones_do_not(
    case: Case,
) -> None:
    first: dict[uuid.UUID, bytes] = {}
    for p, v in zip(decided(case).items, case.verdicts, strict=True):
        mid = message_id(v)
        if mid in case.seen or not judged_as_accepted(v, case.seen):
            continue
        if new_and_not_held(v, case):
            assert p.fate == "not_held"
        elif mid not in first:
            assert p.fate == "first" and p.delivered is not None
            first[mid] = v.value_sha256
        elif first[mid] == v.value_sha256:
            assert p.fate == "duplicate"
        else:
            assert p.fate == "conflict"


@fast
@given(cases())
def test_a_conflict_is_refused_conflicting_duplicate_and_nacked_to_its_sender(
    case: Case,
) -> None:
    for p, v in zip(decided(case).items, case.verdicts, strict=True):
        if p.fate != "conflict":
            continue
        r = p.refused
        assert r is not None and (r.outcome, r.code, r.reply_to) == (
            "reject",
            "conflicting_duplicate",
            POLICE,
        )
        assert [(x.path, x.rule, x.value) for x in r.problems] == [
            ("message_id", "conflicting_duplicate", str(message_id(v)))
        ]


@fast
@given(cases())
def test_a_refusal_stands_unless_the_log_accepted_these_bytes_while_it_was_witnessed(
    case: Case,
) -> None:
    for p, v in zip(decided(case).items, case.verdicts, strict=True):
        if not isinstance(v, Refused):
            continue
        if judged_as_accepted(v, case.seen):
            assert isinstance(p.verdict, Accepted)
            assert p.verdict.deliver_to == v.deliver_to and p.fate in ("rerun", "duplicate")
        else:
            assert p == Planned(v, "refused")


@fast
@given(cases())
def test_only_new_messages_referring_to_a_file_their_sender_does_not_hold_are_refused(
    case: Case,
) -> None:
    asked = set(claims_to_check(case.verdicts, case.seen))
    for p, v in zip(decided(case).items, case.verdicts, strict=True):
        if isinstance(v, Accepted) and message_id(v) not in case.seen and v.envelope.attachments:
            assert (POLICE, FILE) in asked
        refused_for_it = p.fate == "not_held"
        assert refused_for_it == (judged_as_accepted(v, case.seen) and new_and_not_held(v, case))
        if refused_for_it:
            assert p.refused is not None and p.refused.code == ATTACHMENT_NOT_HELD
            assert [x.path for x in p.refused.problems] == ["attachments[0].sha256"]
    if not any(isinstance(v, Accepted) and v.envelope.attachments for v in case.verdicts):
        assert asked == set()


@fast
@given(cases())
def test_the_store_is_asked_about_accepted_and_unwitnessed_messages_only(case: Case) -> None:
    wanted = [
        message_id(v) for v in case.verdicts if isinstance(v, Accepted) or v.code == UNWITNESSED
    ]
    assert ids_to_look_up(case.verdicts) == wanted


def after(case: Case, decision: Decision) -> dict[uuid.UUID, Seen]:
    """What the store knows once ``decision`` was audited: its first deliveries noted."""
    seen = dict(case.seen)
    for index, p in enumerate(decision.items):
        if p.fate == "first" and (a := p.delivered) is not None:
            seen[message_id(a)] = Seen(a.value_sha256, a.record.partition, a.record.offset, index)
    return seen


@fast
@given(cases())
def test_a_batch_decided_again_after_its_audit_committed_comes_out_the_same(
    case: Case,
) -> None:
    once = decided(case)
    again = decided(Case(case.verdicts, after(case, once), case.holds_file, case.unwitnessed))
    for p, q in zip(once.items, again.items, strict=True):
        assert (q.delivered, q.refused is None) == (p.delivered, p.refused is None)
        if p.fate == "not_held" and q.fate == "conflict":
            continue  # the one reason that may change: test_a_replay_may_give_another_reason
        assert q.verdict == p.verdict
        assert q.fate == ("rerun" if p.fate == "first" else p.fate)


def test_a_replay_may_give_another_reason_for_a_conflict_refused_for_its_attachment() -> None:
    """Today's rule, kept as it is: the attachment check is made only for messages the store
    had not seen, so once the first copy's audit committed, a second copy with other bytes
    and a file its sender does not hold is refused for the conflict instead. It is refused
    either way; the audit entry (one per refused byte string) keeps the first reason."""
    batch = [accepted(0, 0, 0, 0), accepted(0, 1, 0, 1)]
    once = decide(batch, {}, set())
    assert [p.fate for p in once.items] == ["first", "not_held"]
    seen = {IDS[0]: Seen(batch[0].value_sha256, 0, 0, 0)}
    assert [p.fate for p in decide(batch, seen, set()).items] == ["rerun", "conflict"]


@fast
@given(cases())
def test_a_batch_delivered_before_is_delivered_again_when_the_log_went_unwitnessed(
    case: Case,
) -> None:
    once = decided(case)
    closed = tuple(
        refused(
            IDS.index(message_id(v)),
            int(bool(v.envelope.attachments)),
            v.record.partition,
            v.record.offset,
            UNWITNESSED,
        )  # type: ignore[union-attr]
        if isinstance(v, Accepted)
        else v
        for v in case.verdicts
    )
    again = decided(Case(closed, after(case, once), case.holds_file, True))
    assert [p.delivered for p in again.items] == [p.delivered for p in once.items]
    assert [p.fate == "duplicate" for p in again.items] == [
        p.fate == "duplicate" for p in once.items
    ]


def test_two_copies_in_one_batch_with_other_bytes_the_second_is_a_conflict() -> None:
    batch = [accepted(0, 0, 0, 0), accepted(0, 1, 1, 0), accepted(0, 0, 0, 1)]
    fates = [p.fate for p in decide(batch, {}, {(POLICE, FILE)}).items]
    assert fates == ["first", "conflict", "duplicate"]
