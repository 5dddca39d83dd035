"""The agencies and their keys in PostgreSQL: the :class:`~bus.signing.KeyStore` the router
verifies signatures against, and the operations behind ``casebus agency``.

Keys are never deleted: a revoked or expired key must still be known, so that an old signature
is refused for the right reason and the audit log can always say which key signed what.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from bus.agencies import Registry
from bus.db import Conn, Executor
from bus.errors import ConfigError
from bus.signing import PublicKeyRecord

__all__ = [
    "AgencyRevocation",
    "AgencyRow",
    "PgKeyStore",
    "SyncResult",
    "add_key",
    "agency_keys",
    "expire_agency_keys",
    "list_agencies",
    "revoke_agency",
    "revoke_key",
    "sync_agencies",
]


@dataclass(frozen=True, slots=True)
class SyncResult:
    """What ``sync_agencies`` changed."""

    inserted: list[str]
    updated: list[str]
    unchanged: list[str]
    not_in_file: list[str]
    """In the database but no longer in the file: kept, since messages and keys refer to them."""


@dataclass(frozen=True, slots=True)
class AgencyRow:
    """One agency as the database holds it, with its number of usable keys."""

    agency_id: str
    kind: str
    name: str
    parent_id: str | None
    active_keys: int


async def sync_agencies(conn: Conn, registry: Registry) -> SyncResult:
    """Make the agencies table say what the registry file says (parents before children)."""
    inserted, updated, unchanged = [], [], []
    async with conn.transaction():
        existing = {
            r["agency_id"]: (r["kind"], r["name"], r["name_en"], r["uscc"], r["parent_id"])
            for r in await conn.fetch(
                "SELECT agency_id, kind, name, name_en, uscc, parent_id FROM agencies"
            )
        }
        pending = list(registry.agencies)
        done: set[str] = set(existing)
        while pending:
            ready = [a for a in pending if a.parent is None or a.parent in done]
            if not ready:
                raise ConfigError(
                    "agency registry has a parent cycle among " + ", ".join(a.id for a in pending)
                )
            for a in ready:
                row = (a.kind, a.name, a.name_en, a.uscc, a.parent)
                if a.id not in existing:
                    inserted.append(a.id)
                elif existing[a.id] != row:
                    updated.append(a.id)
                else:
                    unchanged.append(a.id)
                    continue
                await conn.execute(
                    """INSERT INTO agencies (agency_id, kind, name, name_en, uscc, parent_id)
                       VALUES ($1, $2, $3, $4, $5, $6)
                       ON CONFLICT (agency_id) DO UPDATE SET kind = $2, name = $3, name_en = $4,
                           uscc = $5, parent_id = $6, updated_at = now()""",
                    a.id,
                    *row,
                )
                done.add(a.id)
            pending = [a for a in pending if a not in ready]
    in_file = set(registry.ids())
    return SyncResult(inserted, updated, unchanged, sorted(set(existing) - in_file))


async def list_agencies(db: Executor, *, at: datetime) -> list[AgencyRow]:
    """Every agency with the number of keys usable at ``at``."""
    rows = await db.fetch(
        """SELECT a.agency_id, a.kind, a.name, a.parent_id,
                  count(k.key_id) FILTER (
                      WHERE k.valid_from <= $1 AND (k.valid_to IS NULL OR k.valid_to > $1)
                        AND (k.revoked_at IS NULL OR k.revoked_at > $1)) AS active_keys
           FROM agencies a LEFT JOIN agency_keys k USING (agency_id)
           GROUP BY a.agency_id ORDER BY a.agency_id""",
        at,
    )
    return [AgencyRow(**dict(r)) for r in rows]


def _record(row: asyncpg.Record) -> PublicKeyRecord:
    return PublicKeyRecord(
        key_id=row["key_id"],
        agency_id=row["agency_id"],
        algorithm=row["algorithm"],
        public_key=bytes(row["public_key"]),
        valid_from=row["valid_from"],
        valid_to=row["valid_to"],
        revoked_at=row["revoked_at"],
        sm2_id=bytes(row["sm2_id"]) if row["sm2_id"] is not None else None,
    )


_KEY_COLUMNS = "key_id, agency_id, algorithm, public_key, valid_from, valid_to, revoked_at, sm2_id"


async def add_key(db: Executor, record: PublicKeyRecord) -> None:
    """Register a public key; the same key twice is a no-op, another key under its id an error."""
    try:
        status = await db.execute(
            f"""INSERT INTO agency_keys ({_KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                ON CONFLICT (key_id) DO NOTHING""",
            record.key_id,
            record.agency_id,
            record.algorithm,
            record.public_key,
            record.valid_from,
            record.valid_to,
            record.revoked_at,
            record.sm2_id,
        )
    except asyncpg.ForeignKeyViolationError as e:
        raise ConfigError(f"agency {record.agency_id!r} is not registered; sync first") from e
    if status == "INSERT 0 0":
        stored = await db.fetchval(
            "SELECT public_key FROM agency_keys WHERE key_id = $1", record.key_id
        )
        if bytes(stored) != record.public_key:
            raise ConfigError(f"key id {record.key_id} is already taken by another key")


async def agency_keys(db: Executor, agency_id: str) -> list[PublicKeyRecord]:
    """Every key of one agency, oldest first."""
    rows = await db.fetch(
        f"SELECT {_KEY_COLUMNS} FROM agency_keys WHERE agency_id = $1 ORDER BY valid_from, key_id",
        agency_id,
    )
    return [_record(r) for r in rows]


async def revoke_key(db: Executor, key_id: str, *, at: datetime) -> PublicKeyRecord:
    """Revoke a key from ``at`` on (an earlier revocation stands)."""
    row = await db.fetchrow(
        f"""UPDATE agency_keys SET revoked_at = least(coalesce(revoked_at, $2), $2)
            WHERE key_id = $1 RETURNING {_KEY_COLUMNS}""",
        key_id,
        at,
    )
    if row is None:
        raise ConfigError(f"no key {key_id!r}")
    return _record(row)


@dataclass(frozen=True, slots=True)
class AgencyRevocation:
    """What ``revoke_agency`` shut in PostgreSQL."""

    keys: list[str]
    """Its keys revoked now (a key revoked earlier keeps its earlier time)."""
    tokens: int
    """Its adapter API tokens revoked now."""


async def revoke_agency(conn: Conn, agency_id: str, *, at: datetime) -> AgencyRevocation:
    """Revoke every key and every adapter API token of ``agency_id`` from ``at`` on, in one
    transaction: its signatures are refused (``revoked_key``) and its department's API calls
    answered 401. Keys stay known, so its past signatures keep their audit meaning."""
    async with conn.transaction():
        if not await conn.fetchval("SELECT 1 FROM agencies WHERE agency_id = $1", agency_id):
            raise ConfigError(f"no agency {agency_id!r} in the registry database")
        keys = await conn.fetch(
            """UPDATE agency_keys SET revoked_at = $2
               WHERE agency_id = $1 AND (revoked_at IS NULL OR revoked_at > $2)
               RETURNING key_id""",
            agency_id,
            at,
        )
        tokens = await conn.execute(
            """UPDATE adapter_tokens SET revoked_at = $2
               WHERE agency_id = $1 AND (revoked_at IS NULL OR revoked_at > $2)""",
            agency_id,
            at,
        )
    return AgencyRevocation(sorted(r["key_id"] for r in keys), int(tokens.split()[-1]))


async def expire_agency_keys(
    db: Executor, agency_id: str, *, valid_to: datetime, keep: str
) -> list[str]:
    """End every open-ended or later-ending key of an agency at ``valid_to``, but ``keep``.

    Key rotation: the old keys go on verifying until ``valid_to``, so messages signed just
    before the switch are still accepted; nothing is down in between.
    """
    rows = await db.fetch(
        """UPDATE agency_keys SET valid_to = $2
           WHERE agency_id = $1 AND key_id <> $3 AND revoked_at IS NULL
             AND (valid_to IS NULL OR valid_to > $2) AND valid_from < $2
           RETURNING key_id""",
        agency_id,
        valid_to,
        keep,
    )
    return sorted(r["key_id"] for r in rows)


class PgKeyStore:
    """A :class:`~bus.signing.KeyStore` over the ``agency_keys`` table.

    Lookups are cached for ``ttl_s`` seconds (the router checks every message); a revocation
    takes effect everywhere within that time.
    """

    def __init__(self, pool: asyncpg.Pool, *, ttl_s: float = 5.0) -> None:
        self._pool = pool
        self._ttl_s = ttl_s
        self._cache: dict[str, tuple[float, PublicKeyRecord | None]] = {}

    async def get_key(self, key_id: str) -> PublicKeyRecord | None:
        """The key with this id, or None when there is no such key."""
        now = time.monotonic()
        hit = self._cache.get(key_id)
        if hit is not None and now - hit[0] < self._ttl_s:
            return hit[1]
        row = await self._pool.fetchrow(
            f"SELECT {_KEY_COLUMNS} FROM agency_keys WHERE key_id = $1", key_id
        )
        record = _record(row) if row is not None else None
        self._cache[key_id] = (now, record)
        return record

    def forget(self) -> None:
        """Drop the cache (tests, and after a local revocation)."""
        self._cache.clear()
