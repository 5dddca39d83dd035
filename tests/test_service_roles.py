"""Each service process connects to PostgreSQL as its own least-privilege login, as deployed.

``casebus router``, ``casebus sla run`` and ``casebus adapter <kind>`` are started as processes
with the environment ``deploy/local/up`` prints (one DSN per service, here to this test's own
database); PostgreSQL itself (``pg_stat_activity``) says which user each one's connections are.
A service's role may not register its signing key, so one not registered by the operator stops
the service at start, naming the command that registers it.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
from faultkit import stop
from keykit import ALGORITHM

from adapters._framework.fake_department import free_socket
from bus.agencies import load_registry
from bus.db import SERVICE_ROLES
from bus.provision import OwnKey, ensure_registered
from bus.settings import Service, Settings
from bus.signing import ED25519, load_signer, write_keypair

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Proc:
    """How to start one service: its command line given its key folder, and its keys."""

    service: Service
    argv: Callable[[Path], list[str]]
    agencies: tuple[str, ...]


def _adapter(kind: str, agency: str) -> Callable[[Path], list[str]]:
    def argv(keys: Path) -> list[str]:
        with free_socket() as sock:
            port = sock.getsockname()[1]
        return ["adapter", kind, "--agency", agency, "--key-dir", str(keys), "--port", str(port)]

    return argv


PROCS = {
    "router": Proc("router", lambda keys: ["router"], ("casebus",)),
    "sla": Proc(
        "sla",
        lambda keys: ["sla", "run", "--key-file", str(keys / "casebus.sla.key.pem")],
        ("casebus.sla",),
    ),
    "court adapter": Proc("adapter", _adapter("court", "ygh.court"), ("ygh.court",)),
    "procuratorate adapter": Proc(
        "procuratorate_adapter",
        _adapter("procuratorate", "ygh.procuratorate"),
        ("ygh.procuratorate",),
    ),
}


@pytest.fixture
def logins(service_logins: dict[Service, str]) -> dict[Service, str]:
    # The local PostgreSQL of deploy/local (and CI) lets the tests' role make them: an empty
    # answer is a broken set-up, not a reason to prove nothing.
    assert service_logins, "this PostgreSQL role may not create the services' logins"
    return service_logins


def _start(
    exe: Path, proc: Proc, keys: Path, env: dict[str, str], log: Path
) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen([str(exe), *proc.argv(keys)], env=env, stdout=out, stderr=out)


_OTHER_CLIENTS = (
    "SELECT usename FROM pg_stat_activity WHERE datname = current_database()"
    " AND pid <> pg_backend_pid() AND usename IS NOT NULL"
)


async def _users_while_running(
    owner: asyncpg.Connection, child: subprocess.Popen[bytes], log: Path
) -> set[str]:
    """The users of every other client connection to this database once the child has connected.

    Only connections with a user count: an autovacuum worker on this database is listed there too,
    with none (and ``backend_type``, which would say so, is hidden from a non-superuser).
    """
    for _ in range(300):
        assert child.poll() is None, log.read_text()
        users = {r["usename"] for r in await owner.fetch(_OTHER_CLIENTS)}
        if users:
            await asyncio.sleep(1.0)  # let its other pools connect too, then look again
            return users | {r["usename"] for r in await owner.fetch(_OTHER_CLIENTS)}
        await asyncio.sleep(0.1)
    raise AssertionError(f"the process never connected: {log.read_text()}")


def _keys_of(proc: Proc, cli_env: dict[str, str], keys: Path) -> tuple[Path, dict[str, str]]:
    """Key pairs of ``proc``'s agencies written under ``keys``, and the CLI's environment
    naming the bus's key there."""
    for agency in proc.agencies:
        # The bus's own key stays Ed25519 here: an SM2 one needs an Ed25519 log key beside it
        # (CASEBUS_AUDIT_LOG_KEY_FILE), which this test does not make yet.
        write_keypair(agency, keys, algorithm=ED25519 if agency == "casebus" else ALGORITHM)
    return keys, {**cli_env, "CASEBUS_BUS_KEY_FILE": str(keys / "casebus.key.pem")}


@pytest.mark.parametrize("name", PROCS)
async def test_each_service_process_connects_as_its_own_login(
    provisioned: Settings,
    cli_env: dict[str, str],
    casebus_exe: Path,
    logins: dict[Service, str],
    tmp_path: Path,
    name: str,
) -> None:
    proc = PROCS[name]
    keys, env = _keys_of(proc, cli_env, tmp_path / "keys")
    owner = await asyncpg.connect(provisioned.database_url)
    try:
        # The operator registers the agencies and the service's keys, as the owner.
        await ensure_registered(
            owner,
            registry=load_registry(provisioned.agencies_file),
            keys=[
                OwnKey.of(
                    load_signer(keys / f"{a}.key.pem", agency_id=a),
                    keys / f"{a}.key.pem",
                    valid_from=datetime.now(UTC),
                )
                for a in proc.agencies
            ],
        )
        log = tmp_path / "service.log"
        child = _start(casebus_exe, proc, keys, env, log)
        try:
            users = await _users_while_running(owner, child, log)
        finally:
            stop(child)
    finally:
        await owner.close()
    assert users == {logins[proc.service]}, log.read_text()
    assert await _member_of(provisioned.database_url, logins[proc.service]) == {
        SERVICE_ROLES[proc.service]
    }


async def _member_of(dsn: str, login: str) -> set[str]:
    """The casebus group roles ``login`` inherits: only its service's."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT rolname FROM pg_roles WHERE rolname LIKE 'casebus\\_%' "
            "AND NOT rolcanlogin AND pg_has_role($1, oid, 'USAGE')",
            login,
        )
    finally:
        await conn.close()
    return {r["rolname"] for r in rows}


@pytest.mark.parametrize("name", ["router", "court adapter"])
async def test_a_service_whose_key_the_operator_did_not_register_stops_saying_how_to(
    provisioned: Settings,
    cli_env: dict[str, str],
    casebus_exe: Path,
    logins: dict[Service, str],
    tmp_path: Path,
    name: str,
) -> None:
    proc = PROCS[name]
    keys, env = _keys_of(proc, cli_env, tmp_path / "keys")
    owner = await asyncpg.connect(provisioned.database_url)
    try:  # the operator synced the agencies, but registered no key
        await ensure_registered(owner, registry=load_registry(provisioned.agencies_file), keys=[])
    finally:
        await owner.close()
    done = subprocess.run(
        [str(casebus_exe), *proc.argv(keys)], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0, (done.stdout, done.stderr)  # the adapter: uvicorn says 3
    agency = proc.agencies[0]
    assert (
        f"casebus agency key add --agency {agency} --public-key {keys / agency}.pub.pem"
        in done.stderr
    ), done.stderr
