"""The router refuses a submission referring to a stored file its sender does not hold.

A sender's adapter refuses at submit a message referring to a file the sender neither uploaded
nor may read; a sender writing its signed envelope straight to its submit topic skips that
check, so the router makes it again, on the real broker and database: refused, audited,
dead-lettered and nacked ``attachment_not_held`` when the sender never held the file; delivered
once it uploaded the file, or when it received the file earlier and forwards it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import asyncpg
from aiokafka.structs import ConsumerRecord
from buskit import Bus, Record, receipt_payload
from keykit import ALGORITHM

from bus.attachments import attachment_uri, delivery_role, held, record_references, record_upload
from bus.audit.log import AuditLog
from bus.codec import default_codec
from bus.db import Conn
from bus.models import NACK_CODES, Attachment, BusAck, BusNack, Envelope
from bus.party import Party, make_party
from bus.provision import OwnKey, ensure_registered
from bus.router.batch import BatchPlan, audit_batch
from bus.router.outputs import Outputs
from bus.router.plan import ATTACHMENT_NOT_HELD, attachment_claims, not_held_problems
from bus.router.store_pg import PostgresRouterStore
from bus.router.verdict import Accepted
from bus.settings import REPO_ROOT, Settings
from bus.signing import load_signer, sign_envelope, write_keypair

POLICE = "ygh.police.bureau"
BUREAU = "ygh.enforcement.bureau"
MARKET = "ygh.regulator.market"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def stored(name: str, data: bytes) -> Attachment:
    """An attachment referring to ``data`` in the bus's store."""
    return Attachment(
        name=name,
        media_type="application/pdf",
        size_bytes=len(data),
        sha256=sha(data),
        uri=attachment_uri(sha(data)),
    )


def elsewhere(name: str, data: bytes) -> Attachment:
    """An attachment on a department's own file server, which the bus neither checks nor
    serves."""
    return Attachment(
        name=name,
        media_type="application/pdf",
        size_bytes=len(data),
        sha256=sha(data),
        uri=f"https://files.example.gov.cn/{name}",
    )


def carrying(party: Party, env: Envelope, *attachments: Attachment) -> Envelope:
    """``env`` with ``attachments``, signed again by ``party``."""
    return sign_envelope(env.model_copy(update={"attachments": list(attachments)}), party.signer)


def receipt(police: Party, n: int, *attachments: Attachment) -> Envelope:
    env = police.envelope(receipt_payload(n), recipients=[BUREAU], case_id=f"YGH-ATT-{n}")
    return carrying(police, env, *attachments)


def ack(sender: Party, to: str, *attachments: Attachment) -> Envelope:
    payload = BusAck(
        original_message_id=uuid.uuid4(),
        acknowledged_by=sender.agency_id,
        acknowledged_at=datetime.now(UTC),
    )
    return carrying(
        sender, sender.envelope(payload, recipients=[to], case_id="YGH-ATT-F"), *attachments
    )


def nacks(bus: Bus, records: list[Record]) -> dict[uuid.UUID, BusNack]:
    """The bus.nack payloads among ``records``, by the message each refuses."""
    out: dict[uuid.UUID, BusNack] = {}
    for e in bus.envelopes(records):
        if e.kind == "bus.nack":
            n = cast(BusNack, bus.payload(e))
            out[n.original_message_id] = n
    return out


def delivered_ids(bus: Bus, records: list[Record]) -> list[uuid.UUID]:
    return [
        e.message_id for e in bus.envelopes(records) if not e.kind.startswith(("bus.", "audit."))
    ]


# -- pure ----------------------------------------------------------------------------------------


def test_the_new_code_is_a_listed_nack_code_and_documented() -> None:
    assert ATTACHMENT_NOT_HELD in NACK_CODES
    table = (REPO_ROOT / "docs" / "wire-format.md").read_text(encoding="utf-8")
    assert f"| `{ATTACHMENT_NOT_HELD}` |" in table


def test_only_well_formed_bus_store_references_are_claims(tmp_path: Path) -> None:
    police = make_party(POLICE, tmp_path)
    mine, theirs, outside = b"mine", b"theirs", b"outside"
    mismatched = stored("d.pdf", b"d").model_copy(update={"uri": attachment_uri(sha(b"e"))})
    malformed = stored("f.pdf", b"f").model_copy(update={"uri": attachment_uri("XYZ")})
    env = receipt(
        police,
        1,
        stored("a.pdf", mine),
        elsewhere("b.pdf", outside),
        stored("c.pdf", theirs),
        mismatched,
        malformed,
    )
    # A mismatched or malformed bus URI grants the recipients nothing (record_references skips
    # it), and the department's own server is not the bus's: neither is a claim.
    assert attachment_claims(env) == [(0, sha(mine)), (2, sha(theirs))]
    problems = not_held_problems(env, {(POLICE, sha(mine)), (BUREAU, sha(theirs))})
    [p] = problems
    assert (p.path, p.rule, p.value) == ("attachments[2].sha256", ATTACHMENT_NOT_HELD, sha(theirs))
    assert "c.pdf" in p.message and POLICE in p.message and p.message_zh
    assert not_held_problems(env, {(POLICE, sha(mine)), (POLICE, sha(theirs))}) == []
    plain = police.envelope(receipt_payload(2), recipients=[BUREAU], case_id="YGH-ATT-2")
    assert attachment_claims(plain) == [] and not_held_problems(plain, set()) == []


# -- the ledger's batch check --------------------------------------------------------------------


async def test_held_answers_many_agencies_claims_in_one_query(pool: asyncpg.Pool) -> None:
    police_file, bureau_file, nobodys = b"police file", b"bureau file", b"nobody's"
    await record_upload(pool, sha(police_file), POLICE)
    await record_upload(pool, sha(bureau_file), BUREAU)
    claims = [
        (POLICE, sha(police_file)),
        (POLICE, sha(bureau_file)),
        (BUREAU, sha(bureau_file)),
        (BUREAU, sha(police_file)),
        (MARKET, sha(nobodys)),
        (POLICE, sha(police_file)),  # asked twice, answered once
    ]
    assert await held(pool, claims) == {(POLICE, sha(police_file)), (BUREAU, sha(bureau_file))}
    assert await held(pool, []) == set()


# -- on the real bus -----------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def router(bus: Bus) -> AsyncIterator[None]:
    """The router in this process, connected as its own login (group casebus_router, when the
    session may make one): it reads the attachment ledger with migration 0015's grant alone.
    The owner registers the bus key first, as an operator does: the router may not."""
    key_file = bus.settings.bus_key_file
    assert key_file is not None
    signer = load_signer(key_file, agency_id="casebus")
    conn = await asyncpg.connect(bus.settings.database_url)
    try:
        own = OwnKey.of(signer, key_file, valid_from=datetime(2020, 1, 1, tzinfo=UTC))
        await ensure_registered(conn, registry=None, keys=[own])
    finally:
        await conn.close()
    async with bus.router(database_url=bus.settings.for_service("router").database_url):
        yield


async def _audit(bus: Bus) -> list[tuple[str, dict[str, Any]]]:
    conn = await asyncpg.connect(bus.settings.database_url)
    try:
        rows = await conn.fetch("SELECT event_kind, leaf FROM audit_entries ORDER BY idx")
    finally:
        await conn.close()
    return [(r["event_kind"], json.loads(r["leaf"])) for r in rows]


async def test_a_file_the_sender_never_held_is_refused_named_audited_and_dead_lettered(
    bus: Bus,
) -> None:
    police = await bus.party(POLICE)
    await bus.party(BUREAU)
    bureau_file, never = b"%PDF bureau's own file", b"%PDF uploaded by nobody"
    conn = await asyncpg.connect(bus.settings.database_url)
    try:  # the bureau uploaded its file: the police knows its hash, which is not enough
        await record_upload(conn, sha(bureau_file), BUREAU)
    finally:
        await conn.close()
    env = receipt(
        police,
        1,
        elsewhere("现场照片.jpg", b"on the police's own server"),
        stored("调查报告.pdf", bureau_file),
        stored("鉴定结论.pdf", never),
    )
    async with router(bus):
        await bus.submit(env)  # straight to the police's submit topic, no adapter
        to_police = await bus.inbox(POLICE, want=1)
        dead = await bus.read(bus.settings.topic_dead(), want=1)
        to_bureau = await bus.inbox(BUREAU, want=1, timeout_s=3)

    assert to_bureau == []
    nack = nacks(bus, to_police)[env.message_id]
    assert nack.code == ATTACHMENT_NOT_HELD
    reasons = [(r.path, r.rule) for r in nack.reasons]
    assert reasons == [
        ("attachments[1].sha256", ATTACHMENT_NOT_HELD),
        ("attachments[2].sha256", ATTACHMENT_NOT_HELD),
    ]
    assert all(r.message_zh for r in nack.reasons)

    [letter] = dead
    h = dict(letter.headers)
    assert letter.value == police.value(env)
    assert h["casebus_dead_code"] == ATTACHMENT_NOT_HELD.encode()
    named = {(p["path"], p["value"]) for p in json.loads(h["casebus_dead_reason"])}
    assert named == {
        ("attachments[1].sha256", sha(bureau_file)),
        ("attachments[2].sha256", sha(never)),
    }

    [(kind, leaf)] = await _audit(bus)
    assert kind == "rejected"
    details = leaf["details"]
    assert details["code"] == ATTACHMENT_NOT_HELD
    assert details["original_message_id"] == str(env.message_id)
    assert details["nack_to"] == POLICE
    assert {p["value"] for p in details["problems"]} == {sha(bureau_file), sha(never)}


async def test_once_uploaded_the_file_goes_and_an_accepted_message_stays_accepted(
    bus: Bus,
) -> None:
    police = await bus.party(POLICE)
    await bus.party(BUREAU)
    report = b"%PDF the police's report"
    before = receipt(police, 2, stored("报告.pdf", report))
    after = receipt(police, 3, stored("报告.pdf", report))
    async with router(bus):
        await bus.submit(before)
        assert set(nacks(bus, await bus.inbox(POLICE, want=1))) == {before.message_id}
        conn = await asyncpg.connect(bus.settings.database_url)
        try:
            await record_upload(conn, sha(report), POLICE)
        finally:
            await conn.close()
        await bus.submit(after)
        assert delivered_ids(bus, await bus.inbox(BUREAU, want=1)) == [after.message_id]

        # The log accepted `after`: sent again, it is a duplicate (delivered once, no nack),
        # even after the police's upload is gone from the ledger; a new message is refused.
        conn = await asyncpg.connect(bus.settings.database_url)
        try:
            await conn.execute(
                "DELETE FROM attachment_uploads WHERE sha256 = $1", bytes.fromhex(sha(report))
            )
        finally:
            await conn.close()
        later = receipt(police, 4, stored("报告.pdf", report))
        await bus.submit(after, later)
        # The police's inbox holds three records: the two nacks and `after`'s one receipt (a
        # duplicate gets none); the settle catches a fourth if one comes.
        to_police = await bus.inbox(POLICE, want=3, settle_s=1.0)
        to_bureau = await bus.inbox(BUREAU, want=1, settle_s=1.0)

    assert delivered_ids(bus, to_bureau) == [after.message_id]
    assert len(to_police) == 3
    assert set(nacks(bus, to_police)) == {before.message_id, later.message_id}
    receipts = [e for e in bus.envelopes(to_police) if e.kind == "bus.delivered"]
    assert [bus.payload(e).original_message_id for e in receipts] == [after.message_id]  # type: ignore[attr-defined]
    audit = [(k, leaf["details"].get("code")) for k, leaf in await _audit(bus)]
    assert [k for k, _ in audit] == ["rejected", "accepted", "delivered", "rejected"]
    assert [c for k, c in audit if k == "rejected"] == [ATTACHMENT_NOT_HELD, ATTACHMENT_NOT_HELD]


async def test_a_file_the_sender_received_may_be_forwarded(bus: Bus) -> None:
    police = await bus.party(POLICE)
    bureau = await bus.party(BUREAU)
    await bus.party(MARKET)
    photo = b"\xff\xd8\xff\xe0 scene photo"
    sent = receipt(police, 5, stored("现场照片.jpg", photo))
    too_early = ack(bureau, MARKET, stored("现场照片.jpg", photo))
    forward = ack(bureau, MARKET, stored("现场照片.jpg", photo))
    conn = await asyncpg.connect(bus.settings.database_url)
    try:
        await record_upload(conn, sha(photo), POLICE)
        async with router(bus):
            # Before the bureau received it, the bureau knows the hash and nothing more.
            await bus.submit(too_early)
            assert set(nacks(bus, await bus.inbox(BUREAU, want=1))) == {too_early.message_id}
            await bus.submit(sent)
            [got] = [
                e for e in bus.envelopes(await bus.inbox(BUREAU, want=2)) if e.kind != "bus.nack"
            ]
            assert got.message_id == sent.message_id
            # What the bureau's adapter records when the delivery reaches it.
            assert await record_references(conn, got, BUREAU, delivery_role(got, BUREAU)) == 1
            await bus.submit(forward)
            to_market = await bus.inbox(MARKET, want=1, settle_s=1.0)
    finally:
        await conn.close()
    assert [e.message_id for e in bus.envelopes(to_market)] == [forward.message_id]
    assert bus.envelopes(to_market)[0].attachments[0].sha256 == sha(photo)


# -- the batch, planned on the real database -----------------------------------------------------


class Counting:
    """A real connection that notes each statement it is given (no answer is made up)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn
        self.statements: list[str] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._conn, name)
        if name not in {"fetch", "fetchrow", "fetchval", "execute", "executemany"}:
            return attr

        async def noted(sql: str, *args: Any, **kw: Any) -> Any:
            self.statements.append(sql)
            return await attr(sql, *args, **kw)

        return noted

    def as_conn(self) -> Conn:
        """This proxy, where a connection is wanted."""
        return cast(Conn, self)

    def ledger_reads(self) -> int:
        return sum("attachment_uploads" in s for s in self.statements)


def verdict(env: Envelope, offset: int, deliver_to: str) -> Accepted:
    """What the classifier answers for a valid, routable submission at ``offset``."""
    value = default_codec().encode_envelope(env)
    record: ConsumerRecord[bytes, bytes] = ConsumerRecord(
        "submit", 0, offset, 1_780_000_000_000, 0, b"k", value, None, 1, len(value), []
    )
    return Accepted(
        record=record,
        value=value,
        value_sha256=hashlib.sha256(value).digest(),
        envelope=env,
        deliver_to=(deliver_to,),
        reply_to=env.sender,
    )


async def plan_batch(conn: Counting, batch: list[Accepted], outputs: Outputs) -> BatchPlan:
    """The router's audit of ``batch``, on the counted connection."""
    return await audit_batch(
        PostgresRouterStore(conn.as_conn(), AuditLog()), batch, outputs=outputs
    )


async def test_a_batch_reads_the_ledger_once_or_not_at_all_and_replans_as_before(
    settings: Settings, tmp_path: Path
) -> None:
    police, bureau = make_party(POLICE, tmp_path), make_party(BUREAU, tmp_path)
    police_file, bureau_file, nobodys = b"police's", b"bureau's", b"nobody's"
    signer = load_signer(
        write_keypair("casebus", tmp_path / "bus", algorithm=ALGORITHM).private_key,
        agency_id="casebus",
    )
    outputs = Outputs(settings, signer=signer, codec=default_codec())
    owner = await asyncpg.connect(settings.database_url)
    try:
        await record_upload(owner, sha(police_file), POLICE)
        await record_upload(owner, sha(bureau_file), BUREAU)
        held_by_police = receipt(police, 10, stored("a.pdf", police_file))
        not_held = receipt(police, 11, stored("a.pdf", police_file), stored("b.pdf", nobodys))
        by_bureau = ack(bureau, POLICE, stored("c.pdf", bureau_file))
        plain = receipt(police, 12, elsewhere("d.pdf", nobodys))
        batch = [
            verdict(held_by_police, 0, BUREAU),
            verdict(not_held, 1, BUREAU),
            verdict(by_bureau, 2, POLICE),
            verdict(plain, 3, BUREAU),
        ]
        conn = Counting(owner)
        async with owner.transaction():
            plan = await plan_batch(conn, batch, outputs)
        assert conn.ledger_reads() == 1  # two senders, three messages with files: one query
        assert [v.envelope.message_id for v in plan.accepted if v.envelope] == [
            held_by_police.message_id,
            by_bureau.message_id,
            plain.message_id,
        ]
        [refused] = plan.refused
        assert refused.code == ATTACHMENT_NOT_HELD
        assert [p.path for p in refused.problems] == ["attachments[1].sha256"]

        # Without a stored file in the batch, the ledger is not asked.
        conn = Counting(owner)
        async with owner.transaction():
            plan = await plan_batch(conn, [verdict(receipt(police, 13), 4, BUREAU)], outputs)
        assert conn.ledger_reads() == 0 and len(plan.accepted) == 1

        # The batch planned again (a crash after the audit committed) once the police's upload
        # is gone: what the log accepted stays accepted, without asking the ledger again.
        await owner.execute(
            "DELETE FROM attachment_uploads WHERE sha256 = $1", bytes.fromhex(sha(police_file))
        )
        again = [verdict(held_by_police, 0, BUREAU), verdict(by_bureau, 2, POLICE)]
        conn = Counting(owner)
        async with owner.transaction():
            plan = await plan_batch(conn, again, outputs)
        assert conn.ledger_reads() == 0
        assert [v.envelope.message_id for v in plan.accepted if v.envelope] == [
            held_by_police.message_id,
            by_bureau.message_id,
        ]
        assert plan.refused == [] and plan.duplicates == []
    finally:
        await owner.close()
