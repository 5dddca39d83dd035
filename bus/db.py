"""PostgreSQL plumbing: connection pools and the migration runner.

Migrations are plain numbered SQL files in ``bus/migrations`` (``0001_name.sql``), applied in
order, each in its own transaction, recorded in ``schema_migrations`` with a checksum so an
edited migration is caught. An advisory lock lets several replicas start at once safely.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias

import asyncpg
import structlog
from asyncpg.pool import PoolConnectionProxy

from bus.errors import ConfigError, TransportError
from bus.settings import Service

__all__ = [
    "MIGRATIONS_DIR",
    "SERVICE_ROLES",
    "Conn",
    "Executor",
    "Migration",
    "connect",
    "create_pool",
    "discover",
    "migrate",
]

Conn: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"
"""A connection, on its own or borrowed from a pool."""
Executor: TypeAlias = "Conn | asyncpg.Pool[asyncpg.Record]"
"""Anything that runs a query: a connection or a pool."""

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SERVICE_ROLES: dict[Service, str] = {
    "router": "casebus_router",
    "sla": "casebus_sla",
    "adapter": "casebus_adapter",
    "procuratorate_adapter": "casebus_procuratorate_adapter",
    "monitor": "casebus_monitor",
    "procuratorate": "casebus_procuratorate_ro",
}
"""The group role (migrations ``0009_roles``, ``0011_procuratorate_adapter_role``) holding each
service's grants; each service logs in as a member of it, ``<group>_login`` in the local
deployment (``deploy/local/up``)."""
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# Any fixed 64-bit number works; this one spells "casebus" so it is easy to spot in pg_locks.
_ADVISORY_LOCK = 0x63617365627573

log = structlog.get_logger("casebus.db")


@dataclass(frozen=True, slots=True)
class Migration:
    """One SQL file."""

    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        """SHA-256 of the file's text: an applied migration must never change."""
        return hashlib.sha256(self.sql.encode()).hexdigest()


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Every migration file in version order; a misnamed file or a repeated version is an error."""
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        m = _NAME.match(path.name)
        if not m:
            raise ConfigError(f"{path}: migration files are named NNNN_snake_name.sql")
        version = int(m.group(1))
        if version in found:
            raise ConfigError(f"{path}: migration version {version} appears twice")
        found[version] = Migration(version, m.group(2), path.read_text(encoding="utf-8"))
    return [found[v] for v in sorted(found)]


async def connect(dsn: str) -> asyncpg.Connection:
    """One connection; driver errors become TransportError."""
    try:
        return await asyncpg.connect(dsn)
    except (OSError, asyncpg.PostgresError) as e:
        raise TransportError(f"cannot connect to PostgreSQL: {e}", retriable=True) from e


async def _keep_session(conn: asyncpg.Connection) -> None:
    """What a connection needs on its way back to the pool beyond what asyncpg always does
    (roll back a transaction left open, drop its listener callbacks): nothing.

    asyncpg's default reset sends ``SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *;
    RESET ALL`` on every release, a round trip that doubled the cost of a one-statement
    ``pool.fetch`` here (deploy/CAPACITY.md §8.7). None of it has anything to undo in casebus:
    no pooled connection takes a session-level advisory lock (the migration runner's is on a
    connection of its own), opens a cursor WITH HOLD, or changes a setting with ``SET`` (only
    ``SET LOCAL``, which ends with its transaction); the SLA engine's LISTEN is undone by
    ``remove_listener`` before it gives its connection back. Code that needs a session-level
    change must undo it itself, or hold its own connection."""


async def create_pool(
    dsn: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    idle_in_transaction_ms: int | None = None,
    plan_every_call: bool = True,
) -> asyncpg.Pool:
    """A connection pool; driver errors become TransportError. ``idle_in_transaction_ms``:
    PostgreSQL ends a session that sits that long inside a transaction (its client frozen or
    cut off), so the locks it holds are not held for good.

    ``plan_every_call``: PostgreSQL plans each execution of a prepared statement anew rather
    than reusing a generic plan. A generic plan chosen while a table was tiny outlived the
    table's growth on a long-lived connection and made proofs several times slower
    (deploy/CAPACITY.md §8.5), so this is the default. A pool whose statements are all
    index lookups under any plan may pass False: the adapters' (their head-of-case query
    took 350 µs of the server's CPU planned anew each time, 155 µs reusing its plan, §8.7)."""
    server_settings = {"plan_cache_mode": "force_custom_plan" if plan_every_call else "auto"}
    if idle_in_transaction_ms is not None:
        server_settings["idle_in_transaction_session_timeout"] = str(idle_in_transaction_ms)
    try:
        pool = await asyncpg.create_pool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            server_settings=server_settings,
            reset=_keep_session,
        )
    except (OSError, asyncpg.PostgresError) as e:
        raise TransportError(f"cannot connect to PostgreSQL: {e}", retriable=True) from e
    assert pool is not None
    return pool


async def _current(conn: asyncpg.Connection, migrations: list[Migration]) -> bool:
    """Whether every migration was applied unchanged, checked by reading only."""
    if await conn.fetchval("SELECT to_regclass('schema_migrations')") is None:
        return False
    done = {
        r["version"]: r["checksum"]
        for r in await conn.fetch("SELECT version, checksum FROM schema_migrations")
    }
    return all(done.get(m.version) == m.checksum for m in migrations)


async def migrate(dsn: str, directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Apply every migration not yet applied; return those applied now. Safe to rerun, and
    on a current schema it only reads, so a service may call it as its own role."""
    migrations = discover(directory)
    conn = await connect(dsn)
    applied_now: list[Migration] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _ADVISORY_LOCK)
        if await _current(conn, migrations):
            return []  # nothing to create: a service's role, which may not, starts here too
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version    integer PRIMARY KEY,
                   name       text NOT NULL,
                   checksum   text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done = {
            r["version"]: r["checksum"]
            for r in await conn.fetch("SELECT version, checksum FROM schema_migrations")
        }
        for m in migrations:
            if m.version in done:
                if done[m.version] != m.checksum:
                    raise ConfigError(
                        f"migration {m.version:04d}_{m.name} was changed after it was applied"
                    )
                continue
            async with conn.transaction():
                await conn.execute(m.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    m.version,
                    m.name,
                    m.checksum,
                )
            log.info("db.migrated", version=m.version, name=m.name)
            applied_now.append(m)
    except asyncpg.InsufficientPrivilegeError as e:
        raise TransportError(
            f"migration failed: {e}; migrations run as the role that owns the tables "
            "(`casebus db migrate` with CASEBUS_DATABASE_URL), services as their own roles",
            retriable=False,
        ) from e
    except asyncpg.PostgresError as e:
        raise TransportError(f"migration failed: {e}", retriable=False) from e
    finally:
        try:
            await conn.execute("SELECT pg_advisory_unlock($1)", _ADVISORY_LOCK)
        finally:
            await conn.close()
    return applied_now
