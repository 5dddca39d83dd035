"""A batch carried out through the in-memory store (bus.router.batch): what is audited, what
is produced, and that a batch audited again after a crash appends nothing and produces the
same records byte for byte, the receipt the log holds included. No Kafka, no PostgreSQL.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from plankit import POLICE, Case, accepted, cases, run

from bus.audit.events import decode_leaf, leaf_envelope
from bus.codec import default_codec
from bus.router.batch import BatchPlan, audit_batch
from bus.router.outputs import Outputs, Send
from bus.router.plan import ATTACHMENT_NOT_HELD
from bus.router.store import InMemoryRouterStore, Seen
from bus.settings import Settings
from bus.signing import Ed25519Signer, write_keypair

fast = settings(max_examples=40, deadline=None, derandomize=True)
_keys = tempfile.TemporaryDirectory(prefix="test-router-batch-")
SETTINGS = Settings(topic_prefix="t")


def outputs(name: str) -> Outputs:
    """The router's outputs, signed with a key of its own called ``name``."""
    files = write_keypair("casebus", Path(_keys.name) / name)
    signer = Ed25519Signer.from_file(files.private_key, agency_id="casebus")
    return Outputs(SETTINGS, signer=signer, codec=default_codec())


OUTPUTS = outputs("bus")


@fast
@given(cases())
def test_a_batch_audited_again_appends_nothing_and_produces_the_same_records(
    case: Case,
) -> None:
    store = InMemoryRouterStore()
    first = run(audit_batch(store, case.verdicts, outputs=OUTPUTS))
    size = len(store.log)
    again = run(audit_batch(store, case.verdicts, outputs=OUTPUTS))
    assert len(store.log) == size
    assert (again.accepted, again.duplicates) == (first.accepted, first.duplicates)
    assert [r.record for r in again.refused] == [r.record for r in first.refused]
    # A refusal for a file not held may come back as a conflict (test_router_plan's
    # test_a_replay_may_give_another_reason...); everything else is produced byte for byte.
    not_held = {id(r.record) for r in first.refused if r.code == ATTACHMENT_NOT_HELD}
    assert sent_for(again, not_held) == sent_for(first, not_held)
    assert [r for r in again.refused if id(r.record) not in not_held] == [
        r for r in first.refused if id(r.record) not in not_held
    ]


def sent_for(plan: BatchPlan, leaving_out: set[int]) -> list[Send]:
    """The records produced, without those for the records ``leaving_out`` (by identity)."""
    return [
        s for s, v in zip(plan.sends, plan.origins, strict=True) if id(v.record) not in leaving_out
    ]


@fast
@given(cases())
def test_each_delivery_is_audited_once_and_a_duplicate_produces_nothing(case: Case) -> None:
    store = InMemoryRouterStore()
    plan = run(audit_batch(store, case.verdicts, outputs=OUTPUTS))
    kinds = [(r.message_id, r.event_kind) for r in store.log]
    assert len(kinds) == len(set(kinds))
    for a in plan.accepted:
        mid = a.envelope.message_id
        assert (mid, "accepted") in kinds and (mid, "delivered") in kinds
        assert store.accepted[mid].audit_index == kinds.index((mid, "accepted"))
    assert not {id(v) for v in plan.origins} & {id(d) for d in plan.duplicates}
    # Per accepted message: one record per recipient and the receipt; per refused one: its
    # dead letter and, with someone to tell, its nack.
    expected = sum(len(a.deliver_to) + 1 for a in plan.accepted) + sum(
        1 + (r.reply_to is not None) for r in plan.refused
    )
    assert len(plan.sends) == expected
    assert len(plan.accepted) + len(plan.refused) + len(plan.duplicates) == len(case.verdicts)


def test_a_rerun_sends_the_receipt_the_log_holds_not_a_new_one() -> None:
    batch = [accepted(0, 0, 0, 0), accepted(1, 0, 0, 1)]
    store = InMemoryRouterStore()
    first = run(audit_batch(store, batch, outputs=OUTPUTS))
    # A replica with another signing key audits the batch again after a crash.
    again = run(audit_batch(store, batch, outputs=outputs("another")))
    assert again.sends == first.sends
    logged = [leaf_envelope(decode_leaf(r.leaf)) for r in store.log if r.event_kind == "delivered"]
    receipts = [s.value for s in first.sends if s.topic == SETTINGS.topic_inbox(POLICE)]
    assert receipts == logged and len(receipts) == 2
    assert store.accepted[batch[0].envelope.message_id] == Seen(batch[0].value_sha256, 0, 0, 0)
