"""Department API tokens: random, shown once, stored as SHA-256, scoped to one agency."""

from __future__ import annotations

import hashlib
import secrets

from bus.db import Executor

__all__ = ["create_token", "hash_token", "revoke_token", "token_agency"]

_PREFIX = "cbt_"


def hash_token(token: str) -> bytes:
    """The stored form of a token."""
    return hashlib.sha256(token.encode()).digest()


async def create_token(db: Executor, agency_id: str, *, label: str = "") -> str:
    """A new token for ``agency_id``; only its hash is kept, so show it to the department now."""
    token = _PREFIX + secrets.token_urlsafe(32)
    await db.execute(
        "INSERT INTO adapter_tokens (token_sha256, agency_id, label) VALUES ($1, $2, $3)",
        hash_token(token),
        agency_id,
        label,
    )
    return token


async def revoke_token(db: Executor, token: str) -> bool:
    """Revoke a token; True if it was active."""
    status = await db.execute(
        "UPDATE adapter_tokens SET revoked_at = now()"
        " WHERE token_sha256 = $1 AND revoked_at IS NULL",
        hash_token(token),
    )
    return status != "UPDATE 0"


async def token_agency(db: Executor, token: str) -> str | None:
    """The agency an active token belongs to, or None."""
    if not token or len(token) > 256:
        return None
    agency = await db.fetchval(
        "SELECT agency_id FROM adapter_tokens WHERE token_sha256 = $1 AND revoked_at IS NULL",
        hash_token(token),
    )
    return None if agency is None else str(agency)
