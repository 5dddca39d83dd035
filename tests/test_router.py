"""The router on the real broker and database: delivery with copies and receipts, refusals,
poison records, duplicates, and tree heads."""

from __future__ import annotations

import asyncio
import json
import os
import uuid

import aiokafka.producer.sender
import asyncpg
import structlog
from aiokafka.partitioner import murmur2
from buskit import Bus, Record, receipt_payload, signed_ack

from bus.agencies import load_registry
from bus.audit.events import decode_leaf, leaf_envelope
from bus.audit.log import AuditLog
from bus.party import Party
from bus.router import metrics
from bus.router.service import Router
from bus.routing import load_policy
from bus.settings import REPO_ROOT, load_settings
from bus.signing import InMemoryKeyStore, load_signer, verify_envelope

POLICE = "ygh.police.bureau"
BUREAU = "ygh.enforcement.bureau"
PROC = "ygh.procuratorate"
SLA = "casebus.sla"


async def _messages(bus: Bus, agency: str, *, want: int) -> list[Record]:
    """An inbox without the audit tree heads, which the procuratorate also gets, at any time:
    one signed over the new entry may arrive before the delivery that entry records."""
    for extra in range(5):
        records = await bus.inbox(agency, want=want + extra)
        found = [r for r in records if dict(r.headers).get("ce_type") != b"audit.tree_head"]
        if len(found) >= want:
            return found
    raise AssertionError(f"fewer than {want} messages in {agency}'s inbox")


async def test_an_accepted_message_reaches_recipients_and_copies_with_a_receipt_and_audit(
    bus: Bus,
) -> None:
    police = await bus.party(POLICE)
    env = police.envelope(receipt_payload(), recipients=[BUREAU], case_id="YGH-2026-0101")
    async with bus.router():
        await bus.submit(env)
        delivered = await bus.inbox(BUREAU, want=1)
        copies = {a: await _messages(bus, a, want=1) for a in (PROC, SLA)}
        receipts = await bus.inbox(POLICE, want=1)

    # The recipient gets the sender's exact bytes, keyed by case, with its audit index.
    assert [r.value for r in delivered] == [police.value(env)]
    assert delivered[0].key == b"YGH-2026-0101"
    headers = dict(delivered[0].headers)
    assert headers["ce_id"] == str(env.message_id).encode()
    for agency, records in copies.items():
        assert [r.value for r in records] == [police.value(env)], agency

    [receipt] = bus.envelopes(receipts)
    assert (receipt.kind, receipt.sender, receipt.recipients) == (
        "bus.delivered",
        "casebus",
        [POLICE],
    )
    body = bus.payload(receipt)
    assert body.original_message_id == env.message_id  # type: ignore[attr-defined]
    assert set(body.recipients) == {BUREAU, PROC, SLA}  # type: ignore[attr-defined]

    pool = await asyncpg.create_pool(bus.settings.database_url, min_size=1, max_size=2)
    try:
        accepted = await AuditLog().entry(pool, env.message_id, "accepted")
        delivered_entry = await AuditLog().entry(pool, env.message_id, "delivered")
    finally:
        await pool.close()
    assert body.audit_index == accepted.index  # type: ignore[attr-defined]
    assert headers["casebus_audit_index"] == str(accepted.index).encode()
    assert delivered_entry.index > accepted.index


async def test_an_ack_is_delivered_without_a_receipt_sent_but_its_receipt_is_audited(
    bus: Bus,
) -> None:
    # bus.ack and bus.nack are signals: the router sends their sender no bus.delivered (as AS4
    # never receipts a receipt; nothing of ours acted on one). It still signs that receipt and
    # keeps it in the ack's delivered leaf, the bus's word that the ack reached the sender.
    bureau = await bus.party(BUREAU)
    police = await bus.party(POLICE)
    ack = signed_ack(bureau, recipients=[POLICE], case_id="YGH-2026-0102")
    business = police.envelope(receipt_payload(), recipients=[BUREAU], case_id="YGH-2026-0103")
    async with bus.router():
        await bus.submit(ack, business)
        to_police = bus.envelopes(await bus.inbox(POLICE, want=2, settle_s=1.0))
        to_bureau = bus.envelopes(await bus.inbox(BUREAU, want=1, settle_s=1.0))
    # The police get the ack, and the receipt of their own message; nothing more.
    assert sorted(e.kind for e in to_police) == ["bus.ack", "bus.delivered"]
    [police_receipt] = [e for e in to_police if e.kind == "bus.delivered"]
    receipted = bus.payload(police_receipt).original_message_id  # type: ignore[attr-defined]
    assert receipted == business.message_id
    # The bureau gets the police's message, and no receipt of its ack.
    assert [e.message_id for e in to_bureau] == [business.message_id]

    pool = await asyncpg.create_pool(bus.settings.database_url, min_size=1, max_size=2)
    try:
        entry = await AuditLog().entry(pool, ack.message_id, "delivered")
    finally:
        await pool.close()
    value = leaf_envelope(decode_leaf(entry.leaf))
    assert value is not None
    receipt = bus.codec.decode_envelope(value)
    assert (receipt.kind, receipt.sender, receipt.recipients) == (
        "bus.delivered",
        "casebus",
        [BUREAU],
    )
    body = bus.payload(receipt)
    assert body.original_message_id == ack.message_id  # type: ignore[attr-defined]
    assert body.original_kind == "bus.ack"  # type: ignore[attr-defined]
    signer = load_signer(bus.settings.bus_key_file, agency_id="casebus")
    keys = InMemoryKeyStore([Party("casebus", signer).key_record()])
    assert (await verify_envelope(receipt, keys, value=value)).agency_id == "casebus"


def _batches() -> float:
    """How many batches the routers of this process have delivered."""
    [family] = metrics.BATCH_SIZE.collect()
    return next(s.value for s in family.samples if s.name.endswith("_count"))


async def test_a_lightly_loaded_router_lingers_so_trickling_messages_share_a_batch(
    bus: Bus,
) -> None:
    # Each batch costs a Kafka transaction and an audit transaction: after a tiny batch the
    # router waits for more. Five messages 0.2 s apart would be five batches without it.
    police = await bus.party(POLICE)
    first = police.envelope(receipt_payload(), recipients=[BUREAU], case_id="YGH-2026-0300")
    trickle = [
        police.envelope(receipt_payload(i), recipients=[BUREAU], case_id="YGH-2026-0301")
        for i in range(1, 6)
    ]
    async with bus.router(router_linger_ms=5000):
        await bus.submit(first)
        await bus.inbox(BUREAU, want=1)  # the router is up, and its first batch was tiny
        await asyncio.sleep(0.3)  # its count is taken just after the commit the inbox saw
        before = _batches()
        for envelope in trickle:
            await bus.submit(envelope)
            await asyncio.sleep(0.2)
        delivered = await bus.inbox(BUREAU, want=6, timeout_s=30)
        await asyncio.sleep(0.3)
        batches = _batches() - before
    # (The first is on another case, so perhaps another partition: read in any order.)
    assert [r.value for r in delivered if r.value != police.value(first)] == [
        police.value(e) for e in trickle
    ]
    # One batch if the trickle fell within the first linger, two if it began just after it.
    assert 1 <= batches <= 2, batches


async def test_poison_records_go_to_dead_letters_with_reasons_and_never_block_the_partition(
    bus: Bus,
) -> None:
    police = await bus.party(POLICE)
    case = "YGH-2026-0202"
    key = case.encode()
    good_before = police.envelope(receipt_payload(1), recipients=[BUREAU], case_id=case)
    # A valid envelope whose signature does not match its content.
    forged = police.envelope(receipt_payload(2), recipients=[BUREAU], case_id=case)
    forged = forged.model_copy(update={"case_id": case, "recipients": [BUREAU, PROC]})
    # A payload that breaks its kind's rules: signed, but the model refuses it.
    bad_payload = police.envelope(receipt_payload(3), recipients=[BUREAU], case_id=case)
    bad_payload = police.envelope(receipt_payload(3), recipients=[BUREAU], case_id=case).model_copy(
        update={
            "payload": bus.codec.encode_payload(
                "criminal.receipt",
                {
                    "transfer_letter_no": "",
                    "received_at": receipt_payload().received_at,
                    "receiver": "",
                    "signed_by": "x",
                    "receipt_no": None,
                    "note": None,
                },
            )
        }
    )
    from bus.signing import sign_envelope

    bad_payload = sign_envelope(bad_payload, police.signer)
    unknown_kind = sign_envelope(
        police.envelope(receipt_payload(4), recipients=[BUREAU], case_id=case).model_copy(
            update={"kind": "criminal.telepathy"}
        ),
        police.signer,
    )
    good_after = police.envelope(receipt_payload(5), recipients=[BUREAU], case_id=case)

    async with bus.router():
        await bus.submit(good_before)
        await bus.submit(os.urandom(300), key=key)
        await bus.submit(forged, bad_payload, unknown_kind, good_after)
        delivered = await bus.inbox(BUREAU, want=2, settle_s=1.0)
        dead = await bus.read(bus.settings.topic_dead(), want=4, settle_s=1.0)
        nacks = [
            e
            for e in bus.envelopes(await bus.inbox(POLICE, want=5, settle_s=1.0))
            if e.kind == "bus.nack"
        ]

    assert [bus.codec.decode_envelope(r.value).message_id for r in delivered] == [
        good_before.message_id,
        good_after.message_id,
    ]
    codes = [dict(r.headers)["casebus_dead_code"].decode() for r in dead]
    assert codes == ["undecodable", "bad_signature", "invalid_payload", "unknown_kind"]
    for r in dead:
        h = dict(r.headers)
        assert h["casebus_source_topic"] == bus.settings.topic_submit().encode()
        assert int(h["casebus_source_offset"]) >= 0
        reasons = json.loads(h["casebus_dead_reason"])
        assert reasons and all({"path", "rule", "message"} <= set(p) for p in reasons)
    invalid = json.loads(dict(dead[2].headers)["casebus_dead_reason"])
    assert {p["path"] for p in invalid} == {"payload.transfer_letter_no", "payload.receiver"}

    # The undecodable bytes name no sender; the three signed-as-police ones are nacked.
    by_cause = {bus.payload(n).original_message_id: bus.payload(n) for n in nacks}  # type: ignore[attr-defined]
    assert by_cause[forged.message_id].code == "bad_signature"  # type: ignore[attr-defined]
    assert by_cause[bad_payload.message_id].code == "invalid_payload"  # type: ignore[attr-defined]
    assert by_cause[unknown_kind.message_id].code == "unknown_kind"  # type: ignore[attr-defined]
    assert len(nacks) == 3


async def test_refused_route_is_audited_and_nacked_never_delivered(bus: Bus) -> None:
    regulator = await bus.party("ygh.regulator.planning")
    # A regulator may not send anything of the criminal chain, let alone to the court.
    env = regulator.envelope(receipt_payload(), recipients=["ygh.court"], case_id="YGH-9")
    async with bus.router():
        await bus.submit(env)
        nacks = bus.envelopes(await bus.inbox("ygh.regulator.planning", want=1))
        court = await bus.inbox("ygh.court", want=1, timeout_s=2)
    assert court == []
    assert bus.payload(nacks[0]).code == "unauthorized_route"  # type: ignore[attr-defined]
    pool = await asyncpg.create_pool(bus.settings.database_url, min_size=1, max_size=2)
    try:
        rows = await pool.fetch("SELECT event_kind, leaf FROM audit_entries ORDER BY idx")
    finally:
        await pool.close()
    assert [r["event_kind"] for r in rows] == ["rejected"]
    leaf = json.loads(rows[0]["leaf"])
    assert leaf["details"]["code"] == "unauthorized_route"
    assert leaf["details"]["original_message_id"] == str(env.message_id)


async def test_a_duplicate_is_delivered_once_and_a_conflicting_one_is_refused(bus: Bus) -> None:
    police = await bus.party(POLICE)
    env = police.envelope(receipt_payload(7), recipients=[BUREAU], case_id="YGH-3")
    same_id_other_bytes = police.envelope(
        receipt_payload(8), recipients=[BUREAU], case_id="YGH-3", message_id=env.message_id
    )
    async with bus.router():
        await bus.submit(env)
        await bus.inbox(BUREAU, want=1)
        await bus.submit(env, env, same_id_other_bytes)
        delivered = await bus.inbox(BUREAU, want=2, timeout_s=4)
        to_police = bus.envelopes(await bus.inbox(POLICE, want=2, settle_s=1.0))
    assert len(delivered) == 1
    kinds = sorted(e.kind for e in to_police)
    assert kinds == ["bus.delivered", "bus.nack"]
    nack = next(e for e in to_police if e.kind == "bus.nack")
    assert bus.payload(nack).code == "conflicting_duplicate"  # type: ignore[attr-defined]


async def test_tree_heads_reach_the_procuratorate_and_verify(bus: Bus) -> None:
    from bus.audit.checkpoint import verify_signed_checkpoint

    police = await bus.party(POLICE)
    async with bus.router():
        await bus.submit(
            *(
                police.envelope(receipt_payload(i), recipients=[BUREAU], case_id=f"YGH-{i}")
                for i in range(3)
            )
        )
        await bus.inbox(BUREAU, want=3)
        heads = [
            e
            for e in bus.envelopes(await bus.inbox(PROC, want=4, timeout_s=20))
            if e.kind == "audit.tree_head"
        ]
    assert heads, "no tree head reached the procuratorate"
    head = bus.payload(heads[-1])
    cp = verify_signed_checkpoint(
        head.checkpoint,
        bus.settings.audit_origin,
        bus.log_key,
    )
    assert cp.size == head.tree_size >= 6  # type: ignore[attr-defined]
    assert uuid.UUID(str(heads[-1].message_id))


async def test_every_routing_rule_both_ways_through_the_router(bus: Bus) -> None:
    """For each kind: its typical route is delivered (with the policy's copies); a route the
    policy refuses is audited and nacked, and reaches no inbox."""
    import random

    from bus.agencies import load_registry
    from bus.models import KINDS
    from bus.models import SIGNAL_KINDS as SIGNALS
    from bus.routing import load_policy
    from bus.samples import SAMPLE_ROUTES, refused_route, sample_envelope
    from bus.settings import REPO_ROOT

    policy = load_policy(
        REPO_ROOT / "deploy" / "routing.yaml", load_registry(bus.settings.agencies_file)
    )
    rng = random.Random(2026)
    allowed, refused = {}, {}
    for n, kind in enumerate(KINDS):
        sender, recipients = SAMPLE_ROUTES[kind]
        env = sample_envelope(
            await bus.party(sender), kind, rng, recipients=recipients, case_id=f"YGH-R-{n:03d}"
        )
        allowed[kind] = (
            env,
            set(policy.authorize(kind=kind, sender=sender, recipients=recipients).deliver_to),
        )
        bad_sender, bad_recipients = refused_route(kind)
        refused[kind] = sample_envelope(
            await bus.party(bad_sender),
            kind,
            rng,
            recipients=bad_recipients,
            case_id=f"YGH-X-{n:03d}",
        )
    inboxes = [bus.settings.topic_inbox(a) for a in load_registry(bus.settings.agencies_file).ids()]
    expected_deliveries = sum(len(to) for _, to in allowed.values())
    # A receipt for every allowed message but a signal's (bus.ack, bus.nack), a nack for each
    # refused one.
    receipted = {env.message_id for kind, (env, _) in allowed.items() if kind not in SIGNALS}
    want = expected_deliveries + len(receipted) + len(refused)
    async with bus.router():
        await bus.submit(*(e for e, _ in allowed.values()), *refused.values())
        records = await bus.read(inboxes, want=want, timeout_s=40, settle_s=2)

    where: dict[object, set[str]] = {}
    nacked: dict[object, str] = {}
    receipts: list[object] = []
    samples = {e.message_id for e, _ in allowed.values()}  # the sample bus.delivered is one
    prefix = bus.settings.topic_inbox("")
    for r in records:
        env = bus.codec.decode_envelope(r.value or b"")
        where.setdefault(env.message_id, set()).add(r.topic.removeprefix(prefix))
        if env.kind == "bus.nack":
            body = bus.payload(env)
            nacked[body.original_message_id] = body.code  # type: ignore[attr-defined]
        elif env.kind == "bus.delivered" and env.message_id not in samples:
            receipts.append(bus.payload(env).original_message_id)  # type: ignore[attr-defined]
    assert sorted(map(str, receipts)) == sorted(map(str, receipted))
    for kind, (env, to) in allowed.items():
        assert where.get(env.message_id) == to, f"{kind}: delivered to {where.get(env.message_id)}"
    for kind, env in refused.items():
        assert env.message_id not in where, f"{kind}: a refused message was delivered"
        assert nacked.get(env.message_id) == "unauthorized_route", kind
    pool = await asyncpg.create_pool(bus.settings.database_url, min_size=1, max_size=2)
    try:
        audited = await pool.fetch("SELECT leaf FROM audit_entries WHERE event_kind = 'rejected'")
    finally:
        await pool.close()
    rejected_ids = {json.loads(r["leaf"])["details"].get("original_message_id") for r in audited}
    assert {str(e.message_id) for e in refused.values()} <= rejected_ids


async def test_the_transactional_producer_retries_on_the_configured_backoffs(bus: Bus) -> None:
    # A transaction begun right after the last one committed is refused until the broker
    # wrote the last one's markers; the wait before asking again is this backoff. aiokafka's
    # default (100 ms) held the router's p99 at 150-250 ms in bench/router.py.
    defaults = load_settings()
    assert (defaults.router_retry_backoff_ms, defaults.router_txn_start_retry_ms) == (20, 5)
    registry = load_registry(bus.settings.agencies_file)
    router = Router(
        bus.settings.model_copy(
            update={"router_retry_backoff_ms": 7, "router_txn_start_retry_ms": 3}
        ),
        pool=None,  # type: ignore[arg-type]  # not used to make a producer
        keystore=InMemoryKeyStore([]),
        registry=registry,
        policy=load_policy(REPO_ROOT / "deploy" / "routing.yaml", registry),
        signer=load_signer(bus.settings.bus_key_file, agency_id="casebus"),
    )
    producer = await router._new_producer()
    try:
        assert producer.client._retry_backoff == 0.007
        assert producer._sender._retry_backoff == 0.007  # the transaction handlers' wait
        # ... but after a new transaction's first refusal, aiokafka's own constant.
        assert aiokafka.producer.sender.BACKOFF_OVERRIDE == 0.003
    finally:
        await producer.stop()


async def test_an_ack_in_another_agencys_name_is_refused_and_the_sender_told_why(
    bus: Bus,
) -> None:
    # The bureau acknowledges a message of the police's, but names the procuratorate as the
    # one who acknowledged it: one agency must not sign a receipt in another's name.
    from datetime import UTC, datetime

    from bus.models.bus_kinds import BusAck

    bureau = await bus.party(BUREAU)
    now = datetime.now(UTC)
    honest = bureau.envelope(
        BusAck(original_message_id=uuid.uuid4(), acknowledged_by=BUREAU, acknowledged_at=now),
        recipients=[POLICE],
        case_id="YGH-2026-0901",
    )
    forged = bureau.envelope(
        BusAck(original_message_id=uuid.uuid4(), acknowledged_by=PROC, acknowledged_at=now),
        recipients=[POLICE],
        case_id="YGH-2026-0901",
    )
    async with bus.router():
        await bus.submit(honest, forged)
        delivered = bus.envelopes(await bus.inbox(POLICE, want=1, settle_s=2))
        to_bureau = bus.envelopes(await bus.inbox(BUREAU, want=1, settle_s=1.0))
    assert [e.message_id for e in delivered] == [honest.message_id]
    [nack] = to_bureau  # no receipt for the honest ack: a signal is not receipted
    assert nack.kind == "bus.nack"
    body = bus.payload(nack)
    assert body.original_message_id == forged.message_id  # type: ignore[attr-defined]
    assert body.code == "party_mismatch"  # type: ignore[attr-defined]
    [reason] = body.reasons  # type: ignore[attr-defined]
    assert (reason.path, reason.rule) == ("payload.acknowledged_by", "party_mismatch")
    assert PROC in reason.message and BUREAU in reason.message


async def test_each_batch_is_logged_once_with_every_message_it_delivered(bus: Bus) -> None:
    # One router.accepted and one router.delivered line per batch, not per message (issue #18:
    # the per-message lines were a tenth of the router's CPU); together they name every message.
    police = await bus.party(POLICE)
    sent = [
        police.envelope(receipt_payload(n), recipients=[BUREAU], case_id=f"YGH-2026-02{n:02d}")
        for n in range(6)
    ]
    with structlog.testing.capture_logs() as events:
        async with bus.router():
            await bus.submit(*sent)
            delivered = await bus.inbox(BUREAU, want=len(sent))
    # The router builds its record batches itself: each case still lands where any Kafka
    # producer puts its key (murmur2, as the Java client), so a case stays in one partition.
    partitions = bus.settings.topic_partitions
    for r in delivered:
        assert r.key is not None
        assert r.partition == (murmur2(r.key) & 0x7FFFFFFF) % partitions, r.key
    ids = sorted(str(e.message_id) for e in sent)
    for name in ("router.accepted", "router.delivered"):
        batches = [e for e in events if e["event"] == name]
        assert sum(b["messages"] for b in batches) == len(sent), name
        assert sorted(i for b in batches for i in b["message_ids"]) == ids, name
        assert sum(n for b in batches for n in b["kinds"].values()) == len(sent), name
    submit = bus.settings.topic_submit()
    batches = [e for e in events if e["event"] == "router.delivered"]
    committed = {k: v for b in batches for k, v in b["offsets"].items()}
    read = {k: v for b in batches for k, v in b["read"].items()}
    assert sum(last - first + 1 for first, last in read.values()) == len(sent)
    assert all(k.startswith(f"{submit}/") for k in committed)
    # What was read up to offset O is committed as O + 1, the next record to read.
    assert {k: last + 1 for k, (_, last) in read.items()}.items() <= committed.items()
