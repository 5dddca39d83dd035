"""PostgreSQL roles of ``bus/migrations/0009_roles.sql``: least privilege, on the real database.

Each group role's table privileges are compared with exactly what its service needs, and a few
statements are run as each role (``SET ROLE`` from the superuser, as a LOGIN user would inherit
them): what is allowed works, what is not is refused by PostgreSQL's permission check.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from bus.db import MIGRATIONS_DIR, SERVICE_ROLES, migrate
from bus.errors import TransportError
from bus.settings import REPO_ROOT, Settings, load_settings

pytestmark = pytest.mark.integration

ROLES = (
    "casebus_router",
    "casebus_sla",
    "casebus_adapter",
    "casebus_procuratorate_adapter",
    "casebus_monitor",
    "casebus_procuratorate_ro",
)
AUDIT = ("audit_entries", "audit_nodes", "audit_checkpoints", "audit_cosignatures")
# Everyone verifies signatures against the registry and may see which migrations were applied
# (a service started on a current schema checks that, and creates nothing).
REGISTRY = {("agencies", "SELECT"), ("agency_keys", "SELECT"), ("schema_migrations", "SELECT")}
OUTBOX_INBOX = {
    ("outbox", "SELECT"),
    ("outbox", "INSERT"),
    ("outbox", "UPDATE"),
    ("inbox_handled", "SELECT"),
    ("inbox_handled", "INSERT"),
    ("inbox_handled", "DELETE"),
}
# Tables of migrations still in flux are expected only where they exist.
OPTIONAL: dict[str, set[tuple[str, str, str]]] = {
    "sla_deadlines": {
        ("casebus_sla", "sla_deadlines", "SELECT"),
        ("casebus_sla", "sla_deadlines", "INSERT"),
        ("casebus_sla", "sla_deadlines", "UPDATE"),
        ("casebus_procuratorate_ro", "sla_deadlines", "SELECT"),
    },
    "procuratorate_events": {
        ("casebus_adapter", "procuratorate_events", "SELECT"),
        ("casebus_adapter", "procuratorate_events", "INSERT"),
        ("casebus_procuratorate_ro", "procuratorate_events", "SELECT"),
    },
    "procuratorate_tree_heads": {
        ("casebus_adapter", "procuratorate_tree_heads", "SELECT"),
        ("casebus_adapter", "procuratorate_tree_heads", "INSERT"),
        ("casebus_procuratorate_ro", "procuratorate_tree_heads", "SELECT"),
    },
}
# Case files (0013): the adapters store, record and read; none may change or remove one.
ATTACHMENTS = {
    (t, p)
    for t in (
        "attachment_blobs",
        "attachment_chunks",
        "attachment_uploads",
        "attachment_refs",
        "attachment_fetches",
    )
    for p in ("SELECT", "INSERT")
} | {
    # Retention (0014): they record uploads and lock a file against the sweep (an UPDATE of two
    # columns only, which a table-level check does not show), and read deletions for a 410.
    ("attachment_files", "SELECT"),
    ("attachment_files", "INSERT"),
    ("attachment_deletions", "SELECT"),
}
ADAPTER = (
    REGISTRY
    | OUTBOX_INBOX
    | ATTACHMENTS
    | {
        ("adapter_tokens", "SELECT"),
        ("adapter_submissions", "SELECT"),
        ("adapter_submissions", "INSERT"),
        ("adapter_deliveries", "SELECT"),
        ("adapter_deliveries", "INSERT"),
        ("adapter_deliveries", "UPDATE"),
    }
)
EXPECTED: dict[str, set[tuple[str, str]]] = {
    "casebus_router": REGISTRY
    | {
        (t, p)
        for t in (*AUDIT, "router_accepted", "dead_letter_bodies")
        for p in ("SELECT", "INSERT")
    }
    # Who holds which stored file (0015): a submission straight to Kafka may refer only to one
    # its sender uploaded or holds a reference to.
    | {("attachment_uploads", "SELECT"), ("attachment_refs", "SELECT")},
    "casebus_sla": REGISTRY | OUTBOX_INBOX,
    # The audit log's hashes and signed checkpoints (no case content) for the proofs of a
    # department's own messages; their entries only through casebus_message_audit (0021).
    "casebus_adapter": ADAPTER | {("audit_nodes", "SELECT"), ("audit_checkpoints", "SELECT")},
    # The department adapters' grants, its own tables, and the audit log: it reads it all and
    # appends the queries it answers; checkpoints are the router's to sign.
    "casebus_procuratorate_adapter": ADAPTER
    | {
        (t, p)
        for t in (
            "procuratorate_events",
            "procuratorate_tree_heads",
            "audit_entries",
            "audit_nodes",
        )
        for p in ("SELECT", "INSERT")
    }
    | {("audit_checkpoints", "SELECT"), ("audit_cosignatures", "SELECT")},
    "casebus_monitor": REGISTRY
    | {("audit_cosignatures", "SELECT")}
    | {("inbox_handled", p) for p in ("SELECT", "INSERT", "DELETE")}
    | {(t, p) for t in ("monitor_checkpoints", "monitor_alarms") for p in ("SELECT", "INSERT")},
    "casebus_procuratorate_ro": REGISTRY
    | {
        (t, "SELECT")
        for t in (
            *AUDIT,
            "monitor_checkpoints",
            "monitor_alarms",
            "attachment_refs",
            "attachment_fetches",
            "attachment_files",
            "attachment_deletions",
        )
    },
}


@pytest.fixture
async def su(superuser_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(superuser_url)
    try:
        yield conn
    finally:
        await conn.close()


async def _granted(conn: asyncpg.Connection, role: str) -> set[tuple[str, str]]:
    rows = await conn.fetch(
        """SELECT c.relname, p.priv
             FROM pg_class c
             CROSS JOIN unnest(ARRAY['SELECT','INSERT','UPDATE','DELETE','TRUNCATE',
                                     'REFERENCES','TRIGGER']) AS p(priv)
            WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'v')
              AND has_table_privilege($1, c.oid, p.priv)""",
        role,
    )
    return {(r["relname"], r["priv"]) for r in rows}


@pytest.mark.parametrize("role", ROLES)
async def test_each_role_has_exactly_the_privileges_its_service_needs(
    su: asyncpg.Connection, role: str
) -> None:
    want = set(EXPECTED[role])
    for table, grants in OPTIONAL.items():
        if await su.fetchval("SELECT to_regclass($1)", table) is not None:
            want |= {(t, p) for r, t, p in grants if r == role}
    assert await _granted(su, role) == want


async def test_the_roles_are_nologin_and_powerless(su: asyncpg.Connection) -> None:
    rows = await su.fetch("SELECT * FROM pg_roles WHERE rolname = ANY($1::text[])", list(ROLES))
    assert {r["rolname"] for r in rows} == set(ROLES)
    for r in rows:
        assert not r["rolcanlogin"], r["rolname"]
        assert not (r["rolsuper"] or r["rolcreaterole"] or r["rolcreatedb"] or r["rolbypassrls"])
        assert r["rolpassword"] is None or r["rolpassword"] == "********"
    owned = await su.fetchval(
        "SELECT count(*) FROM pg_class WHERE relowner IN "
        "(SELECT oid FROM pg_roles WHERE rolname = ANY($1::text[]))",
        list(ROLES),
    )
    assert owned == 0


async def _as(conn: asyncpg.Connection, role: str, sql: str, *args: object) -> None:
    """Run one statement as ``role`` in a transaction that is rolled back."""
    tr = conn.transaction()
    await tr.start()
    try:
        await conn.execute(f"SET LOCAL ROLE {role}")
        await conn.execute(sql, *args)
    finally:
        await tr.rollback()


def _entry() -> tuple[object, ...]:
    leaf = b"leaf"
    return (10_000, leaf, hashlib.sha256(b"\0" + leaf).digest(), "accepted", uuid.uuid4())


INSERT_ENTRY = (
    "INSERT INTO audit_entries (idx, leaf, leaf_hash, event_kind, message_id) "
    "VALUES ($1, $2, $3, $4, $5)"
)
INSERT_OUTBOX = (
    "INSERT INTO outbox (owner, message_id, case_id, topic, key, value) "
    "VALUES ('x', $1, 'c', 't', '\\x00', '\\x00')"
)


async def test_the_router_appends_to_the_audit_log_and_can_change_nothing(
    su: asyncpg.Connection,
) -> None:
    await _as(su, "casebus_router", INSERT_ENTRY, *_entry())
    await _as(su, "casebus_router", "SELECT count(*) FROM agency_keys")
    for sql in (
        "UPDATE audit_entries SET event_kind = 'x'",
        "DELETE FROM audit_entries",
        "TRUNCATE audit_entries",
        "DELETE FROM audit_checkpoints",
        "UPDATE agency_keys SET revoked_at = now()",
        "SELECT * FROM outbox",
        "SELECT * FROM adapter_tokens",
        "CREATE TABLE sneaky (x int)",
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await _as(su, "casebus_router", sql)


async def test_the_procuratorate_reads_the_audit_log_and_writes_nothing(
    su: asyncpg.Connection,
) -> None:
    role = "casebus_procuratorate_ro"
    await _as(su, role, "SELECT count(*) FROM audit_entries")
    await _as(su, role, "SELECT count(*) FROM audit_checkpoints")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await _as(su, role, INSERT_ENTRY, *_entry())
    for sql in (
        "UPDATE audit_entries SET event_kind = 'x'",
        "DELETE FROM audit_nodes",
        "INSERT INTO monitor_alarms (origin, kind, detail) VALUES ('o', 'k', 'd')",
        "SELECT * FROM outbox",
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await _as(su, role, sql)


async def test_adapters_and_the_sla_engine_use_the_outbox_but_not_the_audit_log(
    su: asyncpg.Connection,
) -> None:
    for role in ("casebus_adapter", "casebus_sla"):
        await _as(su, role, INSERT_OUTBOX, uuid.uuid4())
        await _as(su, role, "UPDATE outbox SET attempts = attempts + 1")
        for sql in ("DELETE FROM outbox", "SELECT * FROM audit_entries"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await _as(su, role, sql)
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await _as(su, role, INSERT_ENTRY, *_entry())
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await _as(su, "casebus_adapter", "UPDATE adapter_tokens SET revoked_at = now()")


async def test_the_monitor_records_alarms_and_nothing_else(su: asyncpg.Connection) -> None:
    await _as(
        su,
        "casebus_monitor",
        "INSERT INTO monitor_alarms (origin, kind, detail) VALUES ('o', 'k', 'd')",
    )
    for sql in (
        "DELETE FROM monitor_alarms",
        "INSERT INTO audit_checkpoints VALUES (1, '\\x00', 1, 'n')",
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await _as(su, "casebus_monitor", sql)


async def test_no_role_may_update_delete_or_truncate_an_audit_table(su: asyncpg.Connection) -> None:
    for role in (*ROLES, "casebus_app"):
        for table in AUDIT:
            for priv in ("UPDATE", "DELETE", "TRUNCATE"):
                assert not await su.fetchval(
                    "SELECT has_table_privilege($1, $2, $3)", role, table, priv
                ), (role, table, priv)


async def test_a_login_user_made_as_the_migration_says_inherits_its_group(
    su: asyncpg.Connection, superuser_url: str
) -> None:
    """The deployment recipe: a LOGIN user IN ROLE one group, password from a secret."""
    user = f"casebus_t_{uuid.uuid4().hex[:8]}"
    password = uuid.uuid4().hex
    # The password is a bind-free literal here only because CREATE ROLE takes no parameters.
    await su.execute(
        f"CREATE ROLE {user} LOGIN PASSWORD '{password}' IN ROLE casebus_procuratorate_ro"
    )
    try:
        scheme, _, rest = superuser_url.partition("://")
        host_db = rest.rpartition("@")[2]
        conn = await asyncpg.connect(f"{scheme}://{user}:{password}@{host_db}")
        try:
            assert await conn.fetchval("SELECT count(*) FROM audit_entries") >= 0
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(INSERT_ENTRY, *_entry())
        finally:
            await conn.close()
    finally:
        await su.execute(f"DROP ROLE {user}")


def test_the_migration_holds_no_password() -> None:
    sql = (MIGRATIONS_DIR / "0009_roles.sql").read_text(encoding="utf-8")
    code = "\n".join(line.split("--", 1)[0] for line in sql.splitlines())
    assert not re.search(r"(?i)\bPASSWORD\b", code)
    assert not re.search(r"(?i)\bLOGIN\b", code.replace("NOLOGIN", ""))


# What an owner rewriting history does, statement by statement.
SERVICE_ROLE_REFUSED = (
    "TRUNCATE {t}",
    "UPDATE {t} SET {c} = {c}",
    "DELETE FROM {t}",
    "ALTER TABLE {t} DISABLE TRIGGER USER",
    "ALTER TABLE {t} DISABLE TRIGGER ALL",
    "DROP TABLE {t}",
    "CREATE TABLE {t}_copy (x int)",
    "CREATE INDEX {t}_sneaky ON {t} ({c})",
)
FIRST_COLUMN = {
    "audit_entries": "idx",
    "audit_nodes": "start_idx",
    "audit_checkpoints": "note",
    "audit_cosignatures": "line",
}


@pytest.mark.parametrize("role", ROLES)
async def test_no_service_role_may_truncate_change_alter_or_disable_triggers_of_the_audit_log(
    su: asyncpg.Connection, role: str
) -> None:
    for table in AUDIT:
        for sql in SERVICE_ROLE_REFUSED:
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await _as(su, role, sql.format(t=table, c=FIRST_COLUMN[table]))


async def test_a_trigger_refuses_truncate_of_every_audit_table_even_to_the_owner(
    database_url: str,
) -> None:
    """The owner is who migrates; PostgreSQL lets an owner truncate, so a trigger must refuse."""
    owner = await asyncpg.connect(database_url)
    try:
        for table in AUDIT:
            # CASCADE: what an owner would write to get past audit_cosignatures' foreign key.
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
                await owner.execute(f"TRUNCATE {table} CASCADE")
    finally:
        await owner.close()


def _lib(script: str, **env: str) -> str:
    """Run ``script`` in bash after sourcing deploy/local/_lib.sh, as deploy/local/up does."""
    lib = REPO_ROOT / "deploy" / "local" / "_lib.sh"
    done = subprocess.run(
        ["bash", "-c", f'source "{lib}"; {script}'],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout


def test_up_prints_the_owner_dsn_and_one_dsn_per_service() -> None:
    out = _lib("print_exports", CASEBUS_PG_PORT="25432", CASEBUS_PG_DB="db", CASEBUS_PG_USER="own")
    exports = dict(line.removeprefix("export ").split("=", 1) for line in out.splitlines() if line)
    assert exports["CASEBUS_DATABASE_URL"] == "postgresql://own@127.0.0.1:25432/db"
    for service, group in SERVICE_ROLES.items():
        dsn = exports[f"CASEBUS_{service.upper()}_DATABASE_URL"]
        assert dsn == f"postgresql://{group}_login@127.0.0.1:25432/db"
    # Every one of them is a setting, and each service picks its own.
    settings = load_settings(**{k.removeprefix("CASEBUS_").lower(): v for k, v in exports.items()})
    assert settings.for_service("router").database_url == exports["CASEBUS_ROUTER_DATABASE_URL"]
    assert settings.for_service("sla").database_url == exports["CASEBUS_SLA_DATABASE_URL"]
    assert settings.database_url == exports["CASEBUS_DATABASE_URL"]


async def test_up_makes_each_service_a_login_in_its_group_and_nothing_more(
    su: asyncpg.Connection, superuser_url: str
) -> None:
    group = f"casebus_t_{uuid.uuid4().hex[:8]}"
    try:
        for _ in range(2):  # up runs again over what it made
            _lib(
                f'SERVICE_LOGINS="router:{group}" ensure_pg_service_logins '
                f'psql -X -q -v ON_ERROR_STOP=1 "{superuser_url}"'
            )
        rows = {
            r["rolname"]: r
            for r in await su.fetch(
                "SELECT * FROM pg_roles WHERE rolname = ANY($1::text[])", [group, f"{group}_login"]
            )
        }
        assert not rows[group]["rolcanlogin"] and rows[f"{group}_login"]["rolcanlogin"]
        for r in rows.values():
            assert not (r["rolsuper"] or r["rolcreaterole"] or r["rolcreatedb"]), r["rolname"]
        assert await su.fetchval("SELECT pg_has_role($1, $2, 'USAGE')", f"{group}_login", group)
    finally:
        await su.execute(f'DROP ROLE IF EXISTS "{group}_login"')
        await su.execute(f'DROP ROLE IF EXISTS "{group}"')


async def test_each_service_login_cannot_rewrite_the_audit_log_and_starts_on_a_current_schema(
    settings: Settings,
) -> None:
    """The test's services connect as the logins deploy/local/up makes; the owner's attack above
    is refused to every one of them."""
    for service in SERVICE_ROLES:
        own = settings.for_service(service)
        assert own.database_url != settings.database_url, service
        assert await migrate(own.database_url) == [], service  # reads; creates nothing
        conn = await asyncpg.connect(own.database_url)
        try:
            for table in AUDIT:
                for sql in SERVICE_ROLE_REFUSED:
                    with pytest.raises(asyncpg.InsufficientPrivilegeError):
                        await conn.execute(sql.format(t=table, c=FIRST_COLUMN[table]))
        finally:
            await conn.close()


async def test_a_service_login_cannot_apply_a_pending_migration_and_is_told_who_can(
    settings: Settings, tmp_path: Path
) -> None:
    shutil.copytree(MIGRATIONS_DIR, tmp_path, dirs_exist_ok=True)
    (tmp_path / "9999_more.sql").write_text("CREATE TABLE t_more (x int);")
    with pytest.raises(TransportError, match="role that owns the tables"):
        await migrate(settings.for_service("router").database_url, tmp_path)
