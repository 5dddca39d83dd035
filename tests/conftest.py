"""Shared fixtures: a real Kafka broker and a real PostgreSQL for the whole session,
with per-test isolation (a topic prefix and a database of its own for each test).

Where the infrastructure comes from, in order:
1. ``CASEBUS_KAFKA_BOOTSTRAP`` and ``CASEBUS_DATABASE_URL`` already set: use them.
2. a Docker engine answers: testcontainers starts Kafka and PostgreSQL.
3. otherwise ``deploy/local/up`` (no Docker: Kafka from Maven Central, Debian's PostgreSQL).
Steps 1 and 3 are ``bus.local_infra``'s, shared with the benchmarks.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from buskit import Bus
from keykit import ALGORITHM

from bus.agencies import load_registry
from bus.db import SERVICE_ROLES, migrate
from bus.local_infra import LocalInfra as Infra
from bus.local_infra import infra_from_env, start_local
from bus.settings import Service, Settings, load_settings
from bus.signing import write_keypair
from bus.topics import ensure_topics

TEST_PARTITIONS = 3


def _docker_answers() -> bool:
    """Whether a Docker engine answers on its socket (a client binary alone is not enough)."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not host.startswith("unix://"):
        return bool(host)
    path = host.removeprefix("unix://")
    if not Path(path).exists():
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(3)
        try:
            s.connect(path)
            s.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
            return s.recv(64).split(b"\r\n", 1)[0].endswith(b" 200 OK")
        except OSError:
            return False


@pytest.fixture(scope="session")
def infra() -> Iterator[Infra]:
    """The session's real Kafka broker and PostgreSQL."""
    found = infra_from_env()
    if found is not None:
        yield found
    elif not os.environ.get("CASEBUS_KAFKA_BOOTSTRAP") and _docker_answers():
        from testcontainers.kafka import KafkaContainer
        from testcontainers.postgres import PostgresContainer

        with (
            KafkaContainer("apache/kafka:4.4.0").with_kraft() as kafka,
            PostgresContainer("postgres:16", driver=None) as pg,
        ):
            yield Infra(kafka.get_bootstrap_server(), pg.get_connection_url())
    else:
        yield start_local()


def _with_db(dsn: str, dbname: str) -> str:
    base, _, _ = dsn.rpartition("/")
    return f"{base}/{dbname}"


async def _admin(infra: Infra, sql: str) -> None:
    conn = await asyncpg.connect(infra.database_url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _drop_database(infra: Infra, name: str) -> None:
    """DROP ... WITH (FORCE), which a non-superuser cannot do while an autovacuum worker is in
    the database (PostgreSQL reports "must be a member of the role whose process is being
    terminated"): the worker is done or cancelled within moments, so try again."""
    for attempt in range(40):
        try:
            await _admin(infra, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            return
        except asyncpg.InsufficientPrivilegeError:
            if attempt == 39:
                raise
            await asyncio.sleep(0.25)


@pytest.fixture(scope="session")
async def template_db(infra: Infra) -> AsyncIterator[str]:
    """A database migrated once per session; each test gets a copy of it."""
    name = f"casebus_tpl_{uuid.uuid4().hex[:10]}"
    await _admin(infra, f'CREATE DATABASE "{name}"')
    await migrate(_with_db(infra.database_url, name))
    yield name
    await _drop_database(infra, name)


@pytest.fixture(scope="session")
async def service_logins(infra: Infra, template_db: str) -> dict[Service, str]:
    """The LOGIN user each service connects as, one per group role of migration 0009, made as
    ``deploy/local/up`` makes them (the template's migration made the groups). Empty when the
    session's role may not create roles: then services connect as the owner."""
    return await make_service_logins(infra)


async def make_service_logins(infra: Infra) -> dict[Service, str]:
    """What :func:`service_logins` does, for a module with infrastructure of its own."""
    logins: dict[Service, str] = {s: f"{group}_login" for s, group in SERVICE_ROLES.items()}
    conn = await asyncpg.connect(infra.database_url)
    try:
        for service, login in logins.items():
            if await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", login):
                continue
            try:
                await conn.execute(
                    f'CREATE ROLE "{login}" LOGIN IN ROLE "{SERVICE_ROLES[service]}"'
                )
            except (asyncpg.DuplicateObjectError, asyncpg.UniqueViolationError):
                pass  # another session made it a moment ago
            except asyncpg.InsufficientPrivilegeError:
                return {}
    finally:
        await conn.close()
    return logins


def _as_user(dsn: str, user: str) -> str:
    scheme, _, rest = dsn.partition("://")
    return f"{scheme}://{user}@{rest.rpartition('@')[2]}"


@pytest.fixture
async def database_url(infra: Infra, template_db: str) -> AsyncIterator[str]:
    """A fresh, migrated database of this test's own."""
    name = f"casebus_t_{uuid.uuid4().hex[:12]}"
    await _admin(infra, f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    yield _with_db(infra.database_url, name)
    # A fresh connection: fault tests restart PostgreSQL under the test's feet.
    await _drop_database(infra, name)


@pytest.fixture
async def settings(
    infra: Infra, database_url: str, service_logins: dict[Service, str]
) -> AsyncIterator[Settings]:
    """Settings that point at the real infrastructure, with a topic prefix of this test's own;
    each service connects to the test's database as its own login (``Settings.for_service``),
    the test itself as the owner.

    The test's topics are deleted afterwards: a broker keeps files open per partition, and a
    suite that left thousands behind ran the local broker out of file descriptors.
    """
    s = load_settings(
        kafka_bootstrap=infra.kafka_bootstrap,
        database_url=database_url,
        topic_prefix=f"t{uuid.uuid4().hex[:10]}",
        topic_partitions=TEST_PARTITIONS,
        topic_replication=infra.topic_replication,
        # Always set: an environment from `make infra` names the services' logins on the
        # shared database, never this test's.
        **{
            f"{service}_database_url": (
                _as_user(database_url, service_logins[service]) if service_logins else None
            )
            for service in SERVICE_ROLES
        },
    )
    yield s
    await _delete_topics(s)


async def _delete_topics(s: Settings) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=s.kafka_bootstrap)
    try:
        await admin.start()
        mine = [t for t in await admin.list_topics() if t.startswith(f"{s.topic_prefix}.")]
        if mine:
            await admin.delete_topics(mine)
    except KafkaError:
        pass  # a test that broke the broker on purpose; the next run's prefix differs anyway
    finally:
        await admin.close()


@pytest.fixture
async def provisioned(settings: Settings) -> Settings:
    """``settings`` with every topic of the agency registry created."""
    await ensure_topics(settings, load_registry(settings.agencies_file))
    return settings


@pytest.fixture
def cli_env(settings: Settings) -> dict[str, str]:
    """Environment for running the ``casebus`` CLI as a subprocess against this test's infra."""
    return settings.to_env(os.environ)


@pytest.fixture(scope="session")
def casebus_exe() -> Path:
    """The installed ``casebus`` console script of this environment."""
    import shutil
    import sys

    exe = Path(sys.executable).parent / "casebus"
    if not exe.exists():
        found = shutil.which("casebus")
        assert found, "the casebus console script is not installed (pip install -e .)"
        exe = Path(found)
    return exe


@pytest.fixture
def superuser_url(database_url: str) -> str:
    """This test's database as the cluster's superuser (tamper tests play the attacker)."""
    scheme, _, rest = database_url.partition("://")
    _, _, hostpart = rest.rpartition("@")
    return f"{scheme}://postgres@{hostpart}"


@pytest.fixture
async def bus(provisioned: Settings, tmp_path: Path) -> AsyncIterator[Bus]:
    """The test's view of the real bus (see ``buskit.Bus``): provisioned topics, parties with
    registered keys, submitting and reading inboxes."""
    b = Bus(provisioned, tmp_path)
    await b.setup()
    yield b
    await b.close()


@pytest.fixture
async def pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    """A connection pool on this test's database."""
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=6)
    yield pool
    await pool.close()


@pytest.fixture
def sla_key(tmp_path: Path) -> Path:
    """A signing key for the SLA engine (agency ``casebus.sla``)."""
    return write_keypair("casebus.sla", tmp_path / "sla-key", algorithm=ALGORITHM).private_key


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--repeat-each",
        type=int,
        default=1,
        help="Run every selected test N times (bench/faults_loop.py counts faults this way).",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    runs = int(metafunc.config.getoption("repeat_each"))
    if runs > 1:
        metafunc.fixturenames.append("repeat_run")
        metafunc.parametrize("repeat_run", range(1, runs + 1), ids=lambda n: f"run{n}")


# -- the two lanes ---------------------------------------------------------------------------------
# A test that needs Kafka or PostgreSQL is marked ``integration`` by the fixtures it uses, never by
# hand. Every fixture here that reaches the broker or the database does so through ``infra``
# (template_db, service_logins, database_url, settings, provisioned, cli_env, superuser_url, bus,
# pool, and the test modules' own fixtures built on them); ``item.fixturenames`` is the transitive
# closure of what a test requests, so one name catches them all. A fixture that starts
# infrastructure of its own is named here too; a module whose tests start it in their bodies
# (deploy/local, a cluster) says so with ``pytestmark``.
_INFRA_FIXTURES: dict[str, str] = {
    "infra": "the session's Kafka broker and PostgreSQL",
    "stack": "tests/test_kafka_acl.py's own `deploy/local/up --secure`",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if not _INFRA_FIXTURES.keys().isdisjoint(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


class _FastLaneGuard:
    """The fast lane cannot reach the infrastructure, even through ``request.getfixturevalue``:
    a test that gets there without being marked ``integration`` fails before anything connects.
    A plugin, not conftest hooks: pytest asks a session-scoped fixture's hooks of the session,
    which does not see this directory's conftest."""

    def __init__(self) -> None:
        self.current: pytest.Item | None = None

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> Iterator[object]:
        self.current = item
        try:
            return (yield)
        finally:
            self.current = None

    @pytest.hookimpl(tryfirst=True)
    def pytest_fixture_setup(self, fixturedef: pytest.FixtureDef[object]) -> None:
        item = self.current
        if fixturedef.argname not in _INFRA_FIXTURES or item is None:
            return
        if item.get_closest_marker("integration") is None:
            pytest.fail(
                f"{item.nodeid} reaches {fixturedef.argname!r} "
                f"({_INFRA_FIXTURES[fixturedef.argname]}) without being marked integration: "
                "request it as an argument (its own or a fixture's) so the lane marking sees it",
                pytrace=False,
            )


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(_FastLaneGuard(), "casebus-fast-lane-guard")
