"""What a service needs registered before it starts: the agencies and its own signing keys.

Why this module: the router verifies every signature against ``agency_keys``, so whoever may
write that table may sign as any agency. No service's role may (``0009_roles.sql``): the owner
of the tables registers the agencies (``casebus agency sync``) and each service's public keys
(``casebus agency key add``) before the service starts. A service calls
:func:`ensure_registered` at start: as its own role it only checks, and stops naming the
commands that register what is missing; as the owner (development without
``CASEBUS_<SERVICE>_DATABASE_URL``, and the demo's and tests' operator steps) the same call
registers what is missing. What a process may do is decided by PostgreSQL's grants, not here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import asyncpg

from bus.agencies import Registry
from bus.agency_db import add_key, sync_agencies
from bus.db import Conn
from bus.errors import ConfigError
from bus.signing import Ed25519Signer, PublicKeyRecord, Sm2Signer

__all__ = ["OwnKey", "ensure_registered"]


@dataclass(frozen=True, slots=True)
class OwnKey:
    """A service's signing key as the registry should hold it, and the file it came from."""

    record: PublicKeyRecord
    key_file: Path

    @classmethod
    def of(
        cls, signer: Ed25519Signer | Sm2Signer, key_file: Path, *, valid_from: datetime
    ) -> OwnKey:
        """The key of ``signer`` (read from ``key_file``), valid from ``valid_from``."""
        return cls(
            PublicKeyRecord(
                key_id=signer.key_id,
                agency_id=signer.agency_id,
                algorithm=signer.algorithm,
                public_key=signer.public_key,
                valid_from=valid_from,
            ),
            key_file,
        )

    def add_command(self) -> str:
        """The operator's command that registers this key."""
        name = self.key_file.name
        public = self.key_file.with_name(
            name.removesuffix(".key.pem") + ".pub.pem" if name.endswith(".key.pem") else name
        )
        shown = public if public != self.key_file else f"<the public half of {self.key_file}>"
        return f"casebus agency key add --agency {self.record.agency_id} --public-key {shown}"


async def ensure_registered(
    conn: Conn, *, registry: Registry | None, keys: Sequence[OwnKey]
) -> None:
    """Make sure the agencies table says what ``registry`` says (unless None) and every key of
    ``keys`` is registered to its agency; register what is missing only if this connection's
    role may.

    Raises ConfigError listing every missing key (with the command that adds it), naming a key
    id registered with another public key or agency, or when the agencies differ from the file
    and this role may not sync them.
    """
    try:
        if registry is not None:
            await sync_agencies(conn, registry)  # reads only, unless the file says something new
    except asyncpg.InsufficientPrivilegeError as e:
        raise ConfigError(
            "the agencies in the database differ from the registry file, and this service's "
            "role may not change them: the owner of the tables runs `casebus agency sync`"
        ) from e
    missing: list[OwnKey] = []
    for key in keys:
        row = await conn.fetchrow(
            "SELECT agency_id, algorithm, public_key FROM agency_keys WHERE key_id = $1",
            key.record.key_id,
        )
        if row is None:
            missing.append(key)
        elif (row["agency_id"], row["algorithm"], bytes(row["public_key"])) != (
            key.record.agency_id,
            key.record.algorithm,
            key.record.public_key,
        ):
            raise ConfigError(
                f"key id {key.record.key_id} is registered to {row['agency_id']} with another "
                f"public key than {key.key_file}"
            )
    unregistered = []
    for key in missing:
        try:
            await add_key(conn, key.record)
        except asyncpg.InsufficientPrivilegeError:
            unregistered.append(key)
    if unregistered:
        raise ConfigError(
            "signing keys not registered, and this service's role may not register keys (the "
            "router trusts them); the owner of the tables runs: "
            + "; ".join(k.add_command() for k in unregistered)
        )
