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
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
)

from bus.acl import ROUTER_PRINCIPAL, client_security
from bus.agencies import load_registry
from bus.settings import REPO_ROOT, Settings
from bus.topics import planned_topics

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
    up_output: str

    def password(self, user: str) -> str:
        return (self.users / f"{user}.password").read_text(encoding="utf-8").strip()

    def security(self, user: str) -> dict[str, object]:
        return client_security(
            protocol="SASL_SSL",
            username=user,
            password_file=self.users / f"{user}.password",
            ca_file=self.ca_file,
        )


def _free_port_block(n: int) -> int:
    """A port p with p .. p+n-1 all free now."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = int(s.getsockname()[1])
        if base + n >= 65535:
            continue
        ok = True
        for p in range(base, base + n):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise RuntimeError("no block of free ports")


@pytest.fixture(scope="module")
def secure() -> Iterator[Secure]:
    missing = [tool for tool in ("java", "mvn", "openssl") if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"the secure-broker tests need {', '.join(missing)} on PATH", pytrace=False)
    # `up` also starts a PostgreSQL, as user postgres when we are root: it must reach the folder.
    state = Path(tempfile.mkdtemp(prefix="casebus-secure-", dir="/tmp"))
    state.chmod(0o755)
    base = _free_port_block(3)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASEBUS_")}
    env.update(
        CASEBUS_STATE_DIR=str(state),
        CASEBUS_KAFKA_PORT=str(base),
        CASEBUS_KAFKA_CONTROLLER_PORT=str(base + 1),
        CASEBUS_KAFKA_INTERNAL_PORT=str(base + 2),
        CASEBUS_PG_PORT=str(_free_port_block(1)),
    )
    up = subprocess.run(
        [str(REPO_ROOT / "deploy" / "local" / "up"), "--secure"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    try:
        assert up.returncode == 0, up.stderr[-3000:]
        exports = dict(
            line.removeprefix("export ").split("=", 1)
            for line in up.stdout.splitlines()
            if line.startswith("export ")
        )
        prefix = f"s{uuid.uuid4().hex[:8]}"
        apply = subprocess.run(
            [str(Path(sys.executable).parent / "casebus"), "acl", "apply"],
            env={**env, **exports, "CASEBUS_TOPIC_PREFIX": prefix},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert apply.returncode == 0, apply.stderr
        assert "applied" in apply.stdout
        yield Secure(
            bootstrap=exports["CASEBUS_KAFKA_BOOTSTRAP"],
            state=state,
            ca_file=Path(exports["CASEBUS_KAFKA_CA_FILE"]),
            users=Path(exports["CASEBUS_KAFKA_USERS_DIR"]),
            prefix=prefix,
            up_output=up.stdout + up.stderr + apply.stdout + apply.stderr,
        )
    finally:
        subprocess.run(
            [str(REPO_ROOT / "deploy" / "local" / "down")],
            env=env,
            capture_output=True,
            timeout=120,
        )
        shutil.rmtree(state, ignore_errors=True)


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
