"""Access ends when the registry says so, proved on a real secure stack.

The pure part (:func:`bus.kafka_acl.acl_changes`) is checked in milliseconds. The module's own
``up --secure`` stack (tests/securekit.py) then shows: ``casebus acl apply`` removes a dropped
agency's bindings (``--dry-run`` first lists them and changes nothing) and its principal is
refused, while others' bindings stay; ``casebus agency revoke`` shuts every door (registry
keys, adapter tokens, Kafka ACLs, SCRAM user); a half-configured client never connects in
plaintext; and local secure mode keeps data private and secrets off command lines, with
PostgreSQL on SCRAM passwords read from passfiles.
"""

from __future__ import annotations

import asyncio
import random
import stat
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAuthorizationFailedError
from securekit import SecureStack, secure_stack

from adapters._framework.auth import create_token, token_agency
from bus.acl import AclBinding, client_security, plan_acls
from bus.agencies import load_registry
from bus.agency_db import PgKeyStore, add_key, sync_agencies
from bus.db import migrate
from bus.errors import ConfigError, SignatureError
from bus.kafka_acl import _create, acl_changes, is_managed
from bus.party import Party, make_party
from bus.routing import DEFAULT_POLICY_PATH, load_policy
from bus.samples import sample_envelope
from bus.settings import REPO_ROOT, Settings, load_settings
from bus.signing import verify_envelope
from bus.topics import planned_topics

DROPPED = "kmg.police.eco"
KEPT = "ygh.police.bureau"
REGISTRY = load_registry(REPO_ROOT / "deploy" / "agencies.yaml")
POLICY = load_policy(DEFAULT_POLICY_PATH, REGISTRY)
CASEBUS = str(Path(sys.executable).parent / "casebus")


# --- pure -------------------------------------------------------------------------------------


def test_reconciling_adds_the_missing_and_removes_only_managed_bindings_the_plan_lost() -> None:
    plan = plan_acls(REGISTRY, POLICY, prefix="casebus")
    # Its own bindings, and the router's on its inbox.
    dropped = [b for b in plan.bindings() if DROPPED in (b.principal, b.resource_name[-14:])]
    assert {b.principal for b in dropped} == {DROPPED, "casebus.router"}
    foreign = [
        AclBinding("kafka-exporter", "topic", f"casebus.inbox.{KEPT}", "literal", "READ"),
        AclBinding("admin", "topic", "casebus.submit", "literal", "WRITE"),
        AclBinding(DROPPED, "topic", f"other.inbox.{DROPPED}", "literal", "READ"),
    ]
    without = plan_acls(
        REGISTRY.model_copy(update={"agencies": [a for a in REGISTRY.agencies if a.id != DROPPED]}),
        POLICY,
        prefix="casebus",
    )
    missing = without.bindings()[0]
    current = [b for b in plan.bindings() if b != missing] + foreign
    changes = acl_changes(without, current)
    assert changes.add == (missing,)
    assert set(changes.remove) == set(dropped)
    assert changes.kept == len(without.bindings()) - 1
    assert not any(is_managed(b, "casebus") for b in foreign)
    assert acl_changes(plan, plan.bindings()).remove == ()


def test_an_agency_whose_kind_changed_loses_what_its_old_kind_had() -> None:
    plan = plan_acls(REGISTRY, POLICY, prefix="casebus")
    # A police bureau re-registered as part of the bus itself is no Kafka client any more.
    moved = REGISTRY.model_copy(
        update={
            "agencies": [
                a.model_copy(update={"kind": "bus"}) if a.id == DROPPED else a
                for a in REGISTRY.agencies
            ]
        }
    )
    changes = acl_changes(plan_acls(moved, POLICY, prefix="casebus"), plan.bindings())
    assert changes.add == ()
    assert {b for b in changes.remove} == set(plan.principals[DROPPED])


# --- the secure stack -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stack() -> Iterator[SecureStack]:
    with secure_stack() as s:
        yield s


@pytest.fixture(scope="module")
def dropped_registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """deploy/agencies.yaml without DROPPED: the registry after the agency left."""
    raw = yaml.safe_load((REPO_ROOT / "deploy" / "agencies.yaml").read_text(encoding="utf-8"))
    raw["agencies"] = [a for a in raw["agencies"] if a["id"] != DROPPED]
    path = tmp_path_factory.mktemp("registry") / "agencies.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


def _casebus(stack: SecureStack, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CASEBUS, *args],
        env=stack.casebus_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def _security(stack: SecureStack, user: str) -> dict[str, object]:
    return client_security(
        protocol="SASL_SSL",
        username=user,
        password_file=stack.password_file(user),
        ca_file=stack.ca_file,
    )


async def _make_topics(stack: SecureStack, prefix: str) -> Settings:
    settings = Settings(
        kafka_bootstrap=stack.exports["CASEBUS_KAFKA_BOOTSTRAP"], topic_prefix=prefix
    )
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap, **_security(stack, "admin")
    )
    await admin.start()
    try:
        names = planned_topics(settings, REGISTRY)
        await admin.create_topics([NewTopic(n, 1, 1) for n in names])
    finally:
        await admin.close()
    return settings


async def _read_inbox(stack: SecureStack, settings: Settings, user: str) -> int:
    """Read ``user``'s own inbox in its own group; Kafka's refusal is raised."""
    consumer = AIOKafkaConsumer(
        settings.topic_inbox(user),
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=f"{settings.topic_prefix}.inbox.{user}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        request_timeout_ms=10_000,
        **_security(stack, user),
    )
    try:
        await asyncio.wait_for(consumer.start(), 30)
        got = 0
        for _ in range(10):
            batch = await consumer.getmany(timeout_ms=300)
            got += sum(len(v) for v in batch.values())
        return got
    finally:
        await consumer.stop()


async def test_acl_apply_removes_a_dropped_agencys_bindings_and_its_principal_is_refused(
    stack: SecureStack, dropped_registry: Path
) -> None:
    prefix = f"r{uuid.uuid4().hex[:8]}"
    settings = await _make_topics(stack, prefix)
    full = _casebus(stack, "acl", "apply", CASEBUS_TOPIC_PREFIX=prefix)
    assert full.returncode == 0, full.stderr
    assert await _read_inbox(stack, settings, DROPPED) == 0  # allowed, and empty
    # A binding casebus does not manage, on one of its topics: it must survive.
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap, **_security(stack, "admin")
    )
    await admin.start()
    foreign = AclBinding("kafka-exporter", "topic", settings.topic_inbox(KEPT), "literal", "READ")
    try:
        await _create(admin, foreign)
    finally:
        await admin.close()

    dry = _casebus(
        stack,
        "acl",
        "apply",
        "--dry-run",
        CASEBUS_TOPIC_PREFIX=prefix,
        CASEBUS_AGENCIES_FILE=str(dropped_registry),
    )
    assert dry.returncode == 0, dry.stderr
    removed = [ln for ln in dry.stdout.splitlines() if ln.startswith("- ")]
    # Its own bindings, and the router's WRITE on its inbox: nothing of anyone else's.
    assert any(ln.startswith(f"- User:{DROPPED} ") for ln in removed)
    assert all(DROPPED in ln for ln in removed)
    assert "dry run" in dry.stdout
    assert await _read_inbox(stack, settings, DROPPED) == 0  # a dry run changes nothing

    applied = _casebus(
        stack,
        "acl",
        "apply",
        CASEBUS_TOPIC_PREFIX=prefix,
        CASEBUS_AGENCIES_FILE=str(dropped_registry),
    )
    assert applied.returncode == 0, applied.stderr
    assert f"{len(removed)} removed" in applied.stdout
    with pytest.raises(TopicAuthorizationFailedError):
        await _read_inbox(stack, settings, DROPPED)
    assert await _read_inbox(stack, settings, KEPT) == 0  # the others keep theirs
    again = _casebus(
        stack,
        "acl",
        "apply",
        "--dry-run",
        CASEBUS_TOPIC_PREFIX=prefix,
        CASEBUS_AGENCIES_FILE=str(dropped_registry),
    )
    assert "0 added, 0 removed" in again.stdout  # the foreign binding was left alone
    assert "kafka-exporter" not in again.stdout


@pytest.fixture(scope="module")
async def revoked(
    stack: SecureStack, dropped_registry: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[dict[str, object]]:
    """DROPPED registered with a key and an adapter token, then `casebus agency revoke`."""
    dsn = stack.exports["CASEBUS_DATABASE_URL"]
    await migrate(dsn)
    party = make_party(DROPPED, tmp_path_factory.mktemp("keys"))
    conn = await asyncpg.connect(dsn)
    try:
        await sync_agencies(conn, REGISTRY)
        await add_key(conn, party.key_record())
        token = await create_token(conn, DROPPED, label="revocation test")
        assert await token_agency(conn, token) == DROPPED
    finally:
        await conn.close()
    prefix = f"v{uuid.uuid4().hex[:8]}"
    settings = await _make_topics(stack, prefix)
    assert _casebus(stack, "acl", "apply", CASEBUS_TOPIC_PREFIX=prefix).returncode == 0
    assert await _read_inbox(stack, settings, DROPPED) == 0
    still = _casebus(stack, "agency", "revoke", DROPPED, CASEBUS_TOPIC_PREFIX=prefix)
    run = _casebus(
        stack,
        "agency",
        "revoke",
        DROPPED,
        CASEBUS_TOPIC_PREFIX=prefix,
        CASEBUS_AGENCIES_FILE=str(dropped_registry),
    )
    yield {"party": party, "token": token, "settings": settings, "still": still, "run": run}


def test_revoke_refuses_an_agency_the_registry_still_lists(revoked: dict[str, object]) -> None:
    still = revoked["still"]
    assert isinstance(still, subprocess.CompletedProcess)
    assert still.returncode == 1 and "still in" in still.stderr


async def test_revoke_shuts_every_door_of_a_dropped_agency(
    stack: SecureStack, revoked: dict[str, object], dropped_registry: Path
) -> None:
    run = revoked["run"]
    assert isinstance(run, subprocess.CompletedProcess)
    assert run.returncode == 0, run.stderr
    assert "keys revoked: 1" in run.stdout and "adapter tokens revoked: 1" in run.stdout
    assert f"Kafka SCRAM user deleted: {DROPPED}" in run.stdout
    dsn = stack.exports["CASEBUS_DATABASE_URL"]
    # Registry keys: its signatures are refused.
    party = revoked["party"]
    assert isinstance(party, Party)
    envelope = sample_envelope(party, "criminal.case_update", random.Random(3))
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    try:
        with pytest.raises(SignatureError) as info:
            await verify_envelope(envelope, PgKeyStore(pool))
        assert info.value.reason == "revoked_key"
        # Adapter API tokens: the department's calls are no longer its agency's.
        async with pool.acquire() as conn:
            assert await token_agency(conn, str(revoked["token"])) is None
    finally:
        await pool.close()
    # Kafka: the principal can no longer log in, and holds no binding.
    settings = revoked["settings"]
    assert isinstance(settings, Settings)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        request_timeout_ms=5_000,
        **_security(stack, DROPPED),
    )
    with pytest.raises((KafkaConnectionError, asyncio.TimeoutError)):
        await asyncio.wait_for(producer.start(), 30)
    await producer.stop()
    # The cluster already says what the registry without it says: nothing left to remove.
    again = _casebus(
        stack,
        "acl",
        "apply",
        "--dry-run",
        CASEBUS_TOPIC_PREFIX=settings.topic_prefix,
        CASEBUS_AGENCIES_FILE=str(dropped_registry),
    )
    assert "0 added, 0 removed" in again.stdout, again.stdout + again.stderr


# --- a half-configured client -----------------------------------------------------------------


async def test_a_half_configured_client_never_reaches_the_broker_in_plaintext(
    stack: SecureStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(stack.exports):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CASEBUS_KAFKA_BOOTSTRAP", stack.exports["CASEBUS_KAFKA_BOOTSTRAP"])
    monkeypatch.setenv("CASEBUS_KAFKA_SASL_USERNAME", "admin")
    monkeypatch.setenv("CASEBUS_KAFKA_SASL_PASSWORD_FILE", str(stack.password_file("admin")))
    monkeypatch.setenv("CASEBUS_KAFKA_CA_FILE", str(stack.ca_file))
    monkeypatch.delenv("CASEBUS_KAFKA_SECURITY_PROTOCOL", raising=False)
    with pytest.raises(ConfigError, match="CASEBUS_KAFKA_SECURITY_PROTOCOL"):
        load_settings()
    monkeypatch.setenv("CASEBUS_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    admin = AIOKafkaAdminClient(**load_settings().kafka_client_options())
    await admin.start()  # the same variables, completed, do connect
    await admin.close()


# --- local secure mode ------------------------------------------------------------------------


def _secrets(stack: SecureStack) -> dict[str, str]:
    files = [*stack.users.glob("*.password"), *(stack.state / "secure" / "pg").glob("*.password")]
    return {f"{p.parent.name}/{p.stem}": p.read_text().strip() for p in files}


def test_local_secure_mode_passes_no_secret_on_a_command_line(stack: SecureStack) -> None:
    secrets = _secrets(stack)
    assert "users/admin" in secrets and "pg/postgres" in secrets and "pg/casebus" in secrets
    argv = stack.java_argv_log.read_text()
    assert "StorageTool format" in argv and "kafka.Kafka" in argv  # the wrapper saw them
    assert "--add-scram" not in argv
    leaked = [name for name, secret in secrets.items() if secret in argv + stack.output]
    assert leaked == []
    for name, value in stack.exports.items():
        assert not any(secret in value for secret in secrets.values()), name


async def test_local_secure_mode_keeps_the_brokers_data_private(stack: SecureStack) -> None:
    settings = await _make_topics(stack, f"d{uuid.uuid4().hex[:8]}")
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, **_security(stack, "admin")
    )
    await producer.start()
    try:
        await producer.send_and_wait(settings.topic_inbox(KEPT), b"a case", key=b"c")
    finally:
        await producer.stop()
    kafka = stack.state / "kafka"
    segments = list((kafka / "data").rglob("*.log"))
    assert segments
    for path in [kafka, kafka / "data", kafka / "logs"]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path
    assert [p for p in kafka.rglob("*") if _mode(p) & 0o077] == []


def _mode(path: Path) -> int:
    """The permission bits of ``path``, 0 if it went away since it was listed: the running
    broker writes its checkpoints to a .tmp file and renames it over, any moment."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return 0


async def test_local_secure_postgres_takes_scram_passwords_from_passfiles(
    stack: SecureStack,
) -> None:
    hba = (stack.state / "pg" / "data" / "pg_hba.conf").read_text()
    rules = [ln.split() for ln in hba.splitlines() if ln.strip() and not ln.startswith("#")]
    assert rules and all(r[-1] in ("scram-sha-256", "peer") for r in rules)
    assert all(r[-1] == "scram-sha-256" for r in rules if r[0] == "host")
    owner = stack.exports["CASEBUS_DATABASE_URL"]
    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(owner.split("?")[0], password="wrong")
    logins = {
        "CASEBUS_ROUTER_DATABASE_URL": "casebus_router_login",
        "CASEBUS_SLA_DATABASE_URL": "casebus_sla_login",
        "CASEBUS_ADAPTER_DATABASE_URL": "casebus_adapter_login",
        "CASEBUS_MONITOR_DATABASE_URL": "casebus_monitor_login",
    }
    for var, role in logins.items():
        dsn = stack.exports[var]
        assert "passfile=" in dsn and ":" not in dsn.split("//")[1].split("@")[0]
        passfile = Path(dsn.split("passfile=")[1])
        assert stat.S_IMODE(passfile.stat().st_mode) == 0o600
        conn = await asyncpg.connect(dsn)
        try:
            assert await conn.fetchval("SELECT current_user") == role
            assert not await conn.fetchval(
                "SELECT rolsuper OR rolcreaterole OR rolcreatedb FROM pg_roles "
                "WHERE rolname = current_user"
            )
        finally:
            await conn.close()
    port = stack.env["CASEBUS_PG_PORT"]
    pgpass = stack.state / "secure" / "pg" / "postgres.pgpass"
    superuser = f"postgresql://postgres@127.0.0.1:{port}/postgres?passfile={pgpass}"
    conn = await asyncpg.connect(superuser)
    try:
        assert await conn.fetchval("SHOW password_encryption") == "scram-sha-256"
        verifiers = await conn.fetch(
            "SELECT rolname, rolpassword FROM pg_authid WHERE rolname = ANY($1::text[])",
            ["postgres", "casebus", *logins.values()],
        )
    finally:
        await conn.close()
    assert len(verifiers) == 2 + len(logins)
    assert all(str(v["rolpassword"]).startswith("SCRAM-SHA-256$") for v in verifiers)
