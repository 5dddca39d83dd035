"""Kafka security on a real secure broker: TLS + SASL/SCRAM-SHA-512, ACLs from ``acl plan``.

The module starts its own broker with ``deploy/local/up --secure`` in a state folder and on
ports of its own (never the shared local broker), applies the plan with ``casebus acl apply``,
and stops it at the end. Java, Maven and openssl are required: without them the tests fail
and say so, they are not skipped.

It proves: an agency writes submit and reads its own inbox in its own group; it cannot read
another agency's inbox, write to it, join its group, read submit or take a router transactional
id; the router reads submit in its group and delivers in transactions; a plaintext client and a
wrong password are refused; no password of the run appears in any log of it; the secret files
are readable by their owner only.

With per-agency submit topics (a second topic prefix, its ACLs applied by
``casebus acl apply`` with ``CASEBUS_SUBMIT_TOPICS=per_agency``), the real ``casebus router``
runs as a process with the router's own credentials from ``CASEBUS_KAFKA_*``, and the services'
clients (topics, outbox relay, inbox reader) use each agency's: an honest message is delivered
end to end; an agency cannot write another's submit topic; a message written with A's
credentials that claims sender B, though signed with B's key, is refused, audited and nacked to
A, and reaches no recipient, while the same bytes written with B's credentials are delivered.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
)
from buskit import receipt_payload
from securekit import secure_stack

from bus.acl import ROUTER_PRINCIPAL, client_security
from bus.agencies import load_registry
from bus.agency_db import add_key, sync_agencies
from bus.codec import default_codec
from bus.db import Conn, migrate
from bus.inbox import InboxReader
from bus.models import Envelope
from bus.outbox import OutboxRelay, OutboxWriter
from bus.party import Party, make_party
from bus.router.principal import PRINCIPAL_MISMATCH
from bus.samples import sample_envelope
from bus.settings import Settings, load_settings
from bus.signing import write_keypair
from bus.topics import ensure_topics, planned_topics

pytestmark = [pytest.mark.integration, pytest.mark.slow]

A = "ygh.enforcement.bureau"
B = "ygh.police.bureau"


@dataclass(frozen=True)
class Secure:
    """The module's secure broker."""

    bootstrap: str
    state: Path
    ca_file: Path
    users: Path
    prefix: str
    per_agency_prefix: str
    """Topics and ACLs of per-agency submit mode live under this prefix."""
    database_url: str
    up_output: str

    def password(self, user: str) -> str:
        return (self.users / f"{user}.password").read_text(encoding="utf-8").strip()

    def settings(self, user: str) -> Settings:
        """``user``'s service settings in per-agency submit mode, as its environment says."""
        return load_settings(
            kafka_bootstrap=self.bootstrap,
            kafka_security_protocol="SASL_SSL",
            kafka_sasl_username=user,
            kafka_sasl_password_file=self.users / f"{user}.password",
            kafka_ca_file=self.ca_file,
            topic_prefix=self.per_agency_prefix,
            submit_topics="per_agency",
            topic_partitions=1,
            topic_replication=1,
            database_url=self.database_url,
        )

    def security(self, user: str) -> dict[str, object]:
        return client_security(
            protocol="SASL_SSL",
            username=user,
            password_file=self.users / f"{user}.password",
            ca_file=self.ca_file,
        )


@pytest.fixture(scope="module")
def secure() -> Iterator[Secure]:
    with secure_stack() as stack:
        exports = stack.exports
        prefix = f"s{uuid.uuid4().hex[:8]}"
        per_agency_prefix = f"p{uuid.uuid4().hex[:8]}"
        output = stack.output
        for topic_prefix, mode in ((prefix, "shared"), (per_agency_prefix, "per_agency")):
            apply = subprocess.run(
                [str(Path(sys.executable).parent / "casebus"), "acl", "apply"],
                env=stack.casebus_env(
                    CASEBUS_TOPIC_PREFIX=topic_prefix, CASEBUS_SUBMIT_TOPICS=mode
                ),
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert apply.returncode == 0, apply.stderr
            assert "applied" in apply.stdout
            output += apply.stdout + apply.stderr
        yield Secure(
            bootstrap=exports["CASEBUS_KAFKA_BOOTSTRAP"],
            state=stack.state,
            ca_file=Path(exports["CASEBUS_KAFKA_CA_FILE"]),
            users=Path(exports["CASEBUS_KAFKA_USERS_DIR"]),
            prefix=prefix,
            per_agency_prefix=per_agency_prefix,
            database_url=exports["CASEBUS_DATABASE_URL"],
            up_output=output,
        )


@pytest.fixture(scope="module")
async def topics(secure: Secure) -> AsyncIterator[Settings]:
    settings = Settings(kafka_bootstrap=secure.bootstrap, topic_prefix=secure.prefix)
    admin = AIOKafkaAdminClient(bootstrap_servers=secure.bootstrap, **secure.security("admin"))
    await admin.start()
    try:
        names = planned_topics(settings, load_registry(settings.agencies_file))
        await admin.create_topics(
            [NewTopic(n, num_partitions=1, replication_factor=1) for n in names]
        )
    finally:
        await admin.close()
    yield settings


async def _produce(secure: Secure, user: str, topic: str) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=secure.bootstrap,
        enable_idempotence=True,
        acks="all",
        request_timeout_ms=10_000,
        **secure.security(user),
    )
    try:
        await producer.start()
        await producer.send_and_wait(topic, b"v", key=b"case-1")
    finally:
        await producer.stop()


async def _consume(secure: Secure, user: str, topic: str, group: str) -> int:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=secure.bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **secure.security(user),
    )
    try:
        await consumer.start()
        got = 0
        for _ in range(20):
            batch = await consumer.getmany(timeout_ms=500)
            got += sum(len(v) for v in batch.values())
            if got:
                break
        return got
    finally:
        await consumer.stop()


async def test_an_agency_writes_submit_and_reads_its_own_inbox(
    secure: Secure, topics: Settings
) -> None:
    await _produce(secure, A, topics.topic_submit())
    await _produce(secure, ROUTER_PRINCIPAL, topics.topic_inbox(A))
    got = await _consume(secure, A, topics.topic_inbox(A), f"{topics.topic_prefix}.inbox.{A}")
    assert got >= 1


async def test_an_agency_cannot_read_another_agencys_inbox(
    secure: Secure, topics: Settings
) -> None:
    await _produce(secure, ROUTER_PRINCIPAL, topics.topic_inbox(B))
    with pytest.raises(TopicAuthorizationFailedError):
        await _consume(secure, A, topics.topic_inbox(B), f"{topics.topic_prefix}.inbox.{A}")


async def test_an_agency_cannot_write_another_agencys_inbox(
    secure: Secure, topics: Settings
) -> None:
    with pytest.raises(TopicAuthorizationFailedError):
        await _produce(secure, A, topics.topic_inbox(B))
    with pytest.raises(TopicAuthorizationFailedError):
        await _produce(secure, A, topics.topic_inbox(A))  # only the router writes inboxes


async def test_an_agency_cannot_join_another_agencys_group(
    secure: Secure, topics: Settings
) -> None:
    with pytest.raises(GroupAuthorizationFailedError):
        await _consume(secure, A, topics.topic_inbox(A), f"{topics.topic_prefix}.inbox.{B}")


async def test_an_agency_cannot_read_submit(secure: Secure, topics: Settings) -> None:
    with pytest.raises((TopicAuthorizationFailedError, GroupAuthorizationFailedError)):
        await _consume(secure, A, topics.topic_submit(), f"{topics.topic_prefix}.router")


async def test_a_plaintext_client_is_refused(secure: Secure, topics: Settings) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=secure.bootstrap, request_timeout_ms=5_000)
    with pytest.raises((KafkaConnectionError, asyncio.TimeoutError)):
        await asyncio.wait_for(admin.start(), 20)
    await admin.close()


async def test_a_wrong_password_is_refused(
    secure: Secure, topics: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    security = {**secure.security(A), "sasl_plain_password": "not-the-password"}
    producer = AIOKafkaProducer(
        bootstrap_servers=secure.bootstrap, request_timeout_ms=5_000, **security
    )
    with caplog.at_level(logging.ERROR, logger="aiokafka"), pytest.raises(KafkaConnectionError):
        await asyncio.wait_for(producer.start(), 30)
    await producer.stop()
    # aiokafka reports "unable to bootstrap" and logs why: the broker refused the credentials.
    assert "SaslAuthenticationFailed" in caplog.text


def test_no_password_of_the_run_appears_in_its_logs(secure: Secure, topics: Settings) -> None:
    passwords = {p.stem: p.read_text().strip() for p in secure.users.glob("*.password")}
    keystore = (secure.state / "secure" / "tls" / "keystore.password").read_text().strip()
    secrets = {**passwords, "keystore": keystore}
    assert A in secrets and ROUTER_PRINCIPAL in secrets and "admin" in secrets
    logs = [secure.up_output]
    for path in (secure.state / "kafka" / "logs").rglob("*"):
        if path.is_file():
            logs.append(path.read_text(encoding="utf-8", errors="replace"))
    for path in (secure.state / "pg").glob("*.log"):
        logs.append(path.read_text(encoding="utf-8", errors="replace"))
    text = "\n".join(logs)
    assert "Kafka Server started" in text  # the logs really are the broker's
    leaked = [name for name, secret in secrets.items() if secret in text]
    assert leaked == []


def test_secret_files_are_readable_by_their_owner_only(secure: Secure) -> None:
    for path in [*secure.users.glob("*.password"), *(secure.state / "secure" / "tls").iterdir()]:
        assert path.stat().st_mode & 0o077 == 0, path
    assert (secure.state / "kafka" / "server.properties").stat().st_mode & 0o077 == 0


async def _transaction(secure: Secure, user: str, txn_id: str, topic: str) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=secure.bootstrap,
        transactional_id=txn_id,
        enable_idempotence=True,
        acks="all",
        request_timeout_ms=10_000,
        **secure.security(user),
    )
    try:
        await producer.start()
        await producer.begin_transaction()
        await producer.send(topic, b"v", key=b"case-1")
        await producer.commit_transaction()
    finally:
        await producer.stop()


async def test_the_router_reads_submit_in_its_group_and_delivers_in_transactions(
    secure: Secure, topics: Settings
) -> None:
    await _produce(secure, A, topics.topic_submit())
    group = f"{topics.topic_prefix}.router"
    assert await _consume(secure, ROUTER_PRINCIPAL, topics.topic_submit(), group) >= 1
    txn = f"{topics.topic_prefix}.router.router-0"
    await _transaction(secure, ROUTER_PRINCIPAL, txn, topics.topic_inbox(B))
    await _transaction(secure, ROUTER_PRINCIPAL, txn, topics.topic_dead())


async def test_an_agency_cannot_take_a_router_transactional_id(
    secure: Secure, topics: Settings
) -> None:
    txn = f"{topics.topic_prefix}.router.router-0"
    with pytest.raises(TransactionalIdAuthorizationFailed):
        await _transaction(secure, A, txn, topics.topic_submit())


# --- per-agency submit topics: the principal is the sender ----------------------------------

C = "ygh.enforcement.tangchi"  # a recipient B may legitimately write to
PROC = "ygh.procuratorate"
SLA = "casebus.sla"


@dataclass
class Prepared:
    """What an operator sets up before the router starts: topics, database, keys."""

    parties: dict[str, Party]
    pool: asyncpg.Pool
    bus_key: Path


@dataclass
class Wired:
    """The per-agency bus: the router process, the parties' keys, and the database."""

    parties: dict[str, Party]
    pool: asyncpg.Pool
    router: subprocess.Popen[bytes]
    router_log: Path


@pytest.fixture(scope="module")
async def prepared(secure: Secure) -> AsyncIterator[Prepared]:
    # Each step with the admin's credentials, from the CASEBUS_KAFKA_* settings.
    admin = secure.settings("admin")
    registry = load_registry(admin.agencies_file)
    plan = await ensure_topics(admin, registry)
    assert admin.topic_submit(A) in plan.created and admin.topic_submit(B) in plan.created
    await migrate(secure.database_url)
    parties = {a: make_party(a, secure.state / "agency-keys") for a in (A, B)}
    pool = await asyncpg.create_pool(secure.database_url, min_size=1, max_size=4)
    try:
        async with pool.acquire() as conn:
            await sync_agencies(conn, registry)
            for party in parties.values():
                await add_key(conn, party.key_record())
        bus_key = write_keypair("casebus", secure.state / "bus-key").private_key
        yield Prepared(parties=parties, pool=pool, bus_key=bus_key)
    finally:
        await pool.close()


@pytest.fixture(scope="module")
def wired(secure: Secure, prepared: Prepared) -> Iterator[Wired]:
    """``casebus router`` as a process, as the router's Kafka user (``CASEBUS_KAFKA_*``)."""
    router_log = secure.state / "router.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASEBUS_")}
    env.update(
        CASEBUS_KAFKA_BOOTSTRAP=secure.bootstrap,
        CASEBUS_KAFKA_SECURITY_PROTOCOL="SASL_SSL",
        CASEBUS_KAFKA_SASL_USERNAME=ROUTER_PRINCIPAL,
        CASEBUS_KAFKA_SASL_PASSWORD_FILE=str(secure.users / f"{ROUTER_PRINCIPAL}.password"),
        CASEBUS_KAFKA_CA_FILE=str(secure.ca_file),
        CASEBUS_SUBMIT_TOPICS="per_agency",
        CASEBUS_TOPIC_PREFIX=secure.per_agency_prefix,
        CASEBUS_DATABASE_URL=secure.database_url,
        CASEBUS_BUS_KEY_FILE=str(prepared.bus_key),
        CASEBUS_CHECKPOINT_INTERVAL_S="1",
        CASEBUS_LOG_LEVEL="debug",
    )
    with open(router_log, "ab") as out:  # the child keeps its own copy of the descriptor
        router = subprocess.Popen(
            [str(Path(sys.executable).parent / "casebus"), "router"],
            env=env,
            stdout=out,
            stderr=out,
        )
    try:
        yield Wired(
            parties=prepared.parties, pool=prepared.pool, router=router, router_log=router_log
        )
    finally:
        router.send_signal(signal.SIGTERM)
        try:
            router.wait(60)
        except subprocess.TimeoutExpired:
            router.kill()
            router.wait(10)


async def _first(
    settings: Settings, topic: str, match: Callable[[Envelope], bool], timeout_s: float = 60
) -> Envelope:
    """The first committed envelope on ``topic`` that ``match``es, read as ``settings``' user."""
    codec = default_codec()
    consumer = AIOKafkaConsumer(
        topic,
        **settings.kafka_client_options(),
        group_id=None,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    await consumer.start()
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                batch = await consumer.getmany(timeout_ms=500)
                for record in (r for rs in batch.values() for r in rs):
                    env = codec.decode_envelope(record.value or b"")
                    if match(env):
                        return env
    finally:
        await consumer.stop()


async def _everything(settings: Settings, topic: str) -> list[Envelope]:
    """Every committed envelope on ``topic`` now: read up to the end offsets, not for a while."""
    codec = default_codec()
    consumer = AIOKafkaConsumer(
        **settings.kafka_client_options(), group_id=None, isolation_level="read_committed"
    )
    await consumer.start()
    try:
        # ensure_topics made them with the settings' partition count
        partitions = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        out: list[Envelope] = []
        async with asyncio.timeout(30):
            while [tp for tp in partitions if await consumer.position(tp) < end[tp]]:
                batch = await consumer.getmany(timeout_ms=500)
                out += [codec.decode_envelope(r.value or b"") for rs in batch.values() for r in rs]
        return out
    finally:
        await consumer.stop()


async def _produce_envelope(secure: Secure, user: str, topic: str, env: Envelope) -> None:
    """``env`` written to ``topic`` with ``user``'s credentials, as a relay would write it."""
    codec = default_codec()
    producer = AIOKafkaProducer(
        **secure.settings(user).kafka_client_options(), acks="all", enable_idempotence=True
    )
    await producer.start()
    try:
        await producer.send_and_wait(
            topic,
            codec.encode_envelope(env),
            key=env.case_id.encode(),
            headers=codec.cloudevents_headers(env),
        )
    finally:
        await producer.stop()


def _nack_of(env: Envelope) -> Callable[[Envelope], bool]:
    return lambda e: e.kind == "bus.nack" and e.causation_id == str(env.message_id)


def _delivery_of(env: Envelope) -> Callable[[Envelope], bool]:
    return lambda e: e.message_id == env.message_id and e.kind == env.kind


async def test_an_honest_message_goes_end_to_end_through_the_secure_per_agency_bus(
    secure: Secure, wired: Wired
) -> None:
    a, b = secure.settings(A), secure.settings(B)
    env = sample_envelope(wired.parties[A], "criminal.transfer", random.Random(10), recipients=[B])
    got: asyncio.Queue[Envelope] = asyncio.Queue()

    async def handle(conn: Conn, envelope: Envelope, record: object) -> None:
        await got.put(envelope)

    writer = OutboxWriter(a)
    assert writer.topic_for(A) == f"{secure.per_agency_prefix}.submit.{A}"
    reader = InboxReader(b, agency_id=B, consumer_name=B, handler=handle, pool=wired.pool)
    async with (
        OutboxRelay(a, pool=wired.pool, owner=A, poll_interval_s=0.1),
        reader,
    ):
        async with wired.pool.acquire() as conn, conn.transaction():
            assert await writer.add(conn, env, owner=A)
        delivered = await asyncio.wait_for(got.get(), 60)
    assert delivered.message_id == env.message_id and delivered.sender == A
    receipt = await _first(a, a.topic_inbox(A), lambda e: e.kind == "bus.delivered")
    assert receipt.causation_id == str(env.message_id)
    copy = await _first(secure.settings("admin"), a.topic_inbox(PROC), _delivery_of(env))
    assert copy.sender == A


async def test_an_agency_cannot_write_another_agencys_submit_topic(
    secure: Secure, wired: Wired
) -> None:
    a = secure.settings(A)
    with pytest.raises(TopicAuthorizationFailedError):
        await _produce(secure, A, a.topic_submit(B))
    with pytest.raises((TopicAuthorizationFailedError, GroupAuthorizationFailedError)):
        await _consume(secure, A, a.topic_submit(A), f"{a.topic_prefix}.router")  # nor read it


async def test_a_message_claiming_another_sender_is_refused_audited_and_nacked_to_its_writer(
    secure: Secure, wired: Wired
) -> None:
    """A's credentials, B's name and B's valid signature: the principal decides."""
    a, admin = secure.settings(A), secure.settings("admin")
    forged = wired.parties[B].envelope(
        receipt_payload(), recipients=[C], case_id=f"YGH-2026-{uuid.uuid4().hex[:6]}"
    )
    await _produce_envelope(secure, A, a.topic_submit(A), forged)

    nack = await _first(a, a.topic_inbox(A), _nack_of(forged))  # A reads it with A's user
    payload = default_codec().decode_payload_model(nack.payload, kind=nack.kind)[2]
    assert payload.code == PRINCIPAL_MISMATCH  # type: ignore[attr-defined]
    assert payload.original_message_id == forged.message_id  # type: ignore[attr-defined]
    assert nack.recipients == [A]
    # The nack committed in the router's transaction: any delivery of that batch would show now.
    for agency in (C, PROC, SLA):
        assert not [
            e for e in await _everything(admin, a.topic_inbox(agency)) if _delivery_of(forged)(e)
        ], agency
    assert not [e for e in await _everything(admin, a.topic_inbox(B)) if _nack_of(forged)(e)]

    rows = await wired.pool.fetch(
        "SELECT event_kind, leaf FROM audit_entries WHERE case_id = $1 ORDER BY idx",
        forged.case_id,
    )
    assert [r["event_kind"] for r in rows] == ["rejected"]
    details = json.loads(rows[0]["leaf"])["details"]
    assert details["code"] == PRINCIPAL_MISMATCH
    assert (details["sender"], details["nack_to"]) == (B, A)
    assert details["source"]["topic"] == a.topic_submit(A)

    # The same bytes written with B's own credentials are B's message, and go through.
    await _produce_envelope(secure, B, a.topic_submit(B), forged)
    delivered = await _first(admin, a.topic_inbox(C), _delivery_of(forged))
    assert delivered.signature == forged.signature


def test_the_router_ran_as_its_own_user_and_logged_no_password(
    secure: Secure, wired: Wired
) -> None:
    log = wired.router_log.read_text(encoding="utf-8", errors="replace")
    assert wired.router.poll() is None, log[-3000:]  # still running: never refused by Kafka
    events = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    names = {e.get("event") for e in events}
    assert "router.started" in names
    mismatches = [e for e in events if e.get("event_type") == PRINCIPAL_MISMATCH]
    assert mismatches and all(e["principal_agency"] == A for e in mismatches)
    passwords = {p.stem: p.read_text().strip() for p in secure.users.glob("*.password")}
    assert ROUTER_PRINCIPAL in passwords
    assert [name for name, pw in passwords.items() if pw in log] == []
