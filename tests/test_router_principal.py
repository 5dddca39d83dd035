"""The router holds an envelope's sender to the Kafka principal that wrote it.

Pure logic first (``bus.router.principal`` and the classifier's use of it, no broker), then the
router on the real plaintext broker with per-agency submit topics. The same refusal on the
secure broker, with real credentials and ACLs, is in ``test_security.py``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
from aiokafka.structs import ConsumerRecord
from buskit import Bus, receipt_payload
from hypothesis import given, settings
from hypothesis import strategies as st

from bus.agencies import load_registry
from bus.codec import default_codec
from bus.models import Envelope
from bus.party import Party, make_party
from bus.router.classify import Classifier, Verdict
from bus.router.principal import PRINCIPAL_MISMATCH, PrincipalCheck, principal_check
from bus.routing import DEFAULT_POLICY_PATH, load_policy
from bus.settings import REPO_ROOT, Settings
from bus.signing import InMemoryKeyStore
from bus.topics import ensure_topics

A = "ygh.enforcement.bureau"  # the principal that writes
B = "ygh.police.bureau"  # the sender it claims to be
C = "ygh.enforcement.tangchi"  # the recipient B could legitimately write to
PROC = "ygh.procuratorate"
SLA = "casebus.sla"
REGISTRY = load_registry(REPO_ROOT / "deploy" / "agencies.yaml")
POLICY = load_policy(DEFAULT_POLICY_PATH, REGISTRY)
CHECK = PrincipalCheck(prefix="t")


# --- the pure check ----------------------------------------------------------------------------


def test_the_owner_of_a_topic_is_the_agency_after_prefix_submit() -> None:
    assert CHECK.owner("t.submit.ygh.police.bureau") == B
    assert CHECK.owner("t.submit.casebus.sla") == SLA
    assert CHECK.owner("t.submit") is None  # the shared topic speaks for nobody
    assert CHECK.owner("t.submit.") is None
    assert CHECK.owner("t.inbox.ygh.police.bureau") is None
    assert CHECK.owner("u.submit.ygh.police.bureau") is None
    assert CHECK.owner("tt.submit.ygh.police.bureau") is None


def test_a_sender_other_than_the_topics_agency_is_a_principal_mismatch() -> None:
    assert CHECK.check(f"t.submit.{B}", B) is None
    assert CHECK.check("t.submit", B) is None
    problem = CHECK.check(f"t.submit.{A}", B)
    assert problem is not None
    assert (problem.path, problem.rule, problem.value) == ("sender", PRINCIPAL_MISMATCH, B)
    assert f"t.submit.{A}" in problem.message and A in problem.message
    assert problem.message_zh and A in problem.message_zh


def test_only_per_agency_settings_check_principals() -> None:
    assert principal_check(Settings(topic_prefix="t")) is None
    assert principal_check(Settings(topic_prefix="t", submit_topics="per_agency")) == CHECK


_ID = st.lists(st.from_regex(r"[a-z0-9]{1,4}", fullmatch=True), min_size=1, max_size=3).map(
    ".".join
)


@settings(max_examples=200, deadline=None)
@given(writer=_ID, claimed=_ID, prefix=st.sampled_from(["casebus", "t", "a.b"]))
def test_the_check_passes_exactly_when_the_sender_owns_the_topic(
    writer: str, claimed: str, prefix: str
) -> None:
    """Dotted ids that prefix each other (``x``, ``x.y``) never pass for one another."""
    s = Settings(topic_prefix=prefix, submit_topics="per_agency")
    check = principal_check(s)
    assert check is not None
    topic = s.topic_submit(writer)
    assert check.owner(topic) == writer
    assert (check.check(topic, claimed) is None) == (writer == claimed)


# --- the classifier ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def parties(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Party]:
    keys = tmp_path_factory.mktemp("keys")
    return {a: make_party(a, keys) for a in (A, B)}


def _record(
    topic: str, value: bytes, headers: list[tuple[str, bytes]] | None = None
) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic=topic,
        partition=0,
        offset=7,
        timestamp=int(datetime.now(UTC).timestamp() * 1000),
        timestamp_type=0,
        key=b"YGH-2026-0042",
        value=value,
        checksum=None,
        serialized_key_size=13,
        serialized_value_size=len(value),
        headers=headers or [],
    )


async def _classify(
    parties: dict[str, Party], topic: str, value: bytes, *, per_agency: bool, headers=None
) -> Verdict:
    keystore = InMemoryKeyStore([p.key_record() for p in parties.values()])
    classifier = Classifier(
        codec=default_codec(),
        keystore=keystore,
        registry=REGISTRY,
        policy=POLICY,
        principal=CHECK if per_agency else None,
    )
    return await classifier.classify(_record(topic, value, headers), now=datetime.now(UTC))


def _claiming_b(parties: dict[str, Party]) -> Envelope:
    """A message B may send, signed with B's own key: nothing wrong with it but who wrote it."""
    return parties[B].envelope(receipt_payload(), recipients=[C], case_id="YGH-2026-0042")


async def test_b_signed_message_on_a_topic_is_refused_and_nacked_to_a(
    parties: dict[str, Party],
) -> None:
    env = _claiming_b(parties)
    v = await _classify(parties, f"t.submit.{A}", parties[B].value(env), per_agency=True)
    assert (v.outcome, v.code, v.reply_to) == ("reject", PRINCIPAL_MISMATCH, A)
    assert [p.rule for p in v.problems] == [PRINCIPAL_MISMATCH]
    assert v.deliver_to == ()
    assert v.key is None  # refused before the signature was looked at: a valid one is no help


async def test_the_same_bytes_on_bs_own_topic_or_the_shared_topic_are_accepted(
    parties: dict[str, Party],
) -> None:
    env = _claiming_b(parties)
    value = parties[B].value(env)
    own = await _classify(parties, f"t.submit.{B}", value, per_agency=True)
    assert (own.outcome, own.reply_to, own.deliver_to) == ("accept", B, (C, PROC, SLA))
    shared = await _classify(parties, "t.submit", value, per_agency=False)
    assert shared.outcome == "accept"


async def test_on_a_per_agency_topic_every_nack_goes_to_the_topics_agency(
    parties: dict[str, Party],
) -> None:
    # Garbage naming B in its headers: B must not be spammed with nacks for what A wrote.
    junk = await _classify(
        parties, f"t.submit.{A}", b"junk", per_agency=True, headers=[("ce_source", B.encode())]
    )
    assert (junk.outcome, junk.code, junk.reply_to) == ("dead", "undecodable", A)
    shared = await _classify(
        parties, "t.submit", b"junk", per_agency=False, headers=[("ce_source", B.encode())]
    )
    assert shared.reply_to == B  # the shared topic knows no better than the header
    # A's own message with a broken signature: refused for the signature, nacked to A.
    env = parties[A].envelope(receipt_payload(), recipients=[C], case_id="YGH-2026-0043")
    forged = env.model_copy(
        update={"signature": env.signature.model_copy(update={"value": b"x" * 64})}
    )
    bad = await _classify(parties, f"t.submit.{A}", parties[A].value(forged), per_agency=True)
    assert (bad.code, bad.reply_to) == ("bad_signature", A)


# --- on the real broker ------------------------------------------------------------------------


async def _audit(database_url: str) -> list[dict[str, object]]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT event_kind, leaf FROM audit_entries ORDER BY idx")
    finally:
        await conn.close()
    return [{"event_kind": r["event_kind"], **json.loads(r["leaf"])} for r in rows]


async def test_the_router_refuses_a_sender_that_is_not_the_topics_principal(
    bus: Bus, tmp_path: Path
) -> None:
    bus.settings = bus.settings.model_copy(update={"submit_topics": "per_agency"})
    await ensure_topics(bus.settings, REGISTRY)
    police = await bus.party(B)
    env = police.envelope(receipt_payload(), recipients=[C], case_id="YGH-2026-0044")
    async with bus.router():
        await bus.submit(env, sender=A)  # B's message, written where only A's principal writes
        [nack] = bus.envelopes(await bus.inbox(A, want=1))
        # Same Kafka transaction as any delivery would be: the nack is visible, so they would be.
        assert await bus.inbox(C, want=1, timeout_s=1) == []
        assert await bus.inbox(B, want=1, timeout_s=1) == []
        await bus.submit(env)  # the same bytes where B's principal writes: delivered
        delivered = await bus.inbox(C, want=1)
    payload = bus.payload(nack)
    assert payload.code == PRINCIPAL_MISMATCH  # type: ignore[attr-defined]
    assert payload.original_message_id == env.message_id  # type: ignore[attr-defined]
    assert nack.recipients == [A]
    assert [r.value for r in delivered] == [police.value(env)]
    entries = await _audit(bus.settings.database_url)
    rejected = [e for e in entries if e["event_kind"] == "rejected"]
    assert len(rejected) == 1
    details = rejected[0]["details"]
    assert isinstance(details, dict)
    assert details["code"] == PRINCIPAL_MISMATCH
    assert details["sender"] == B and details["nack_to"] == A
    assert details["source"]["topic"] == bus.settings.topic_submit(A)
    assert [e["event_kind"] for e in entries].count("accepted") == 1
