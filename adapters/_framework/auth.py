"""Department API tokens: random, shown once, stored as SHA-256, scoped to one agency.

Also the one answer every adapter route gives when it refuses a caller: 401 with rule
``missing_token`` (no bearer token) or ``invalid_token`` (unknown or revoked), with
``WWW-Authenticate: Bearer``; 403 when a valid token's agency may not read the route
(:func:`forbidden`). :func:`token_reader`, :func:`served_reader` and :func:`message_reader` are
the FastAPI dependencies that carry it out, so no route re-implements it; :func:`caller` names a
request's caller the same way for a record kept before any route runs (the procuratorate's
query audit).

No ``from __future__ import annotations`` here: FastAPI reads the dependencies' annotations,
which name dependencies local to their factories.
"""

import base64
import binascii
import hashlib
import secrets
import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Final

import asyncpg
from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from adapters._framework.inbound import department_problem
from bus.audit.access import message_parties
from bus.db import Executor

__all__ = [
    "ANONYMOUS",
    "BEARER",
    "INVALID_TOKEN",
    "AgencyReader",
    "bearer_token",
    "caller",
    "create_token",
    "forbidden",
    "hash_token",
    "invalid_token",
    "message_reader",
    "missing_token",
    "not_served",
    "revoke_token",
    "served_reader",
    "stored_token",
    "token_agency",
    "token_reader",
]

AgencyReader = Callable[..., Awaitable[str]]
"""A FastAPI dependency: the agency the request's token belongs to, or an HTTPException."""

_bearer = HTTPBearer(auto_error=False, description="The department's API token.")
BEARER: Final = _bearer
"""The security scheme every route with a token declares (a dependency that checks nothing)."""

_PREFIX = "cbt_"

ANONYMOUS = "anonymous"
"""What :func:`caller` names a request without a token."""
INVALID_TOKEN = "invalid_token"
"""What :func:`caller` names a request with an unknown or revoked token (the 401's rule)."""


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
    stored = stored_token(token)
    if stored is None:
        return None
    agency = await db.fetchval(
        "SELECT agency_id FROM adapter_tokens WHERE token_sha256 = $1 AND revoked_at IS NULL",
        stored,
    )
    return None if agency is None else str(agency)


def _unauthorized(rule: str, message: str, message_zh: str, challenge: str) -> HTTPException:
    return HTTPException(
        401,
        [department_problem("Authorization", rule, message, message_zh)],
        headers={"WWW-Authenticate": challenge},
    )


def forbidden(
    field: str, rule: str, message: str, message_zh: str, value: Any = None
) -> HTTPException:
    """The 403 of a valid token whose agency may not read what it asked for."""
    return HTTPException(403, [department_problem(field, rule, message, message_zh, value)])


def _presented(header: str, *, basic: bool) -> str | None:
    """The token in an ``Authorization`` header: a bearer token, or with ``basic`` the password
    of HTTP Basic (what a browser can send)."""
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() == "bearer" and rest.strip():
        return rest.strip()
    if basic and scheme.lower() == "basic":
        try:
            _, sep, password = base64.b64decode(rest.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return password if sep and password else None
    return None


async def caller(db: Executor, authorization: str) -> str:
    """The agency an ``Authorization`` header's bearer token belongs to, for the record:
    :data:`ANONYMOUS` without a token, :data:`INVALID_TOKEN` for one the dependencies refuse."""
    token = _presented(authorization, basic=False)
    if token is None:
        return ANONYMOUS
    return await token_agency(db, token) or INVALID_TOKEN


def token_reader(
    pool: Callable[[], asyncpg.Pool], *, basic_realm: str | None = None
) -> AgencyReader:
    """The dependency naming the agency of any active token (401 otherwise); ``pool()`` gives
    the database pool at request time. With ``basic_realm`` (HTML pages for a browser) the token
    may also come as the password of HTTP Basic, and a 401 asks the browser for it."""
    # A page for a browser challenges with Basic alone: Chromium ignores a header that also
    # names Bearer and then never sends the credentials typed in or written in the URL. A
    # bearer token is still accepted there.
    challenge = "Bearer" if basic_realm is None else f'Basic realm="{basic_realm}"'

    async def agency_of(
        request: Request,
        # Read for the OpenAPI description's security scheme; the header is parsed below.
        _: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> str:
        token = _presented(request.headers.get("authorization", ""), basic=basic_realm is not None)
        if token is None:
            raise missing_token(challenge)
        agency = await token_agency(pool(), token)
        if agency is None:
            raise invalid_token(challenge)
        return agency

    return agency_of


def bearer_token(request: Request) -> str:
    """The request's bearer token; the 401 ``missing_token`` of :func:`token_reader` without
    one. For a route that looks the token up itself (:func:`stored_token`, then
    :func:`invalid_token` or :func:`not_served`), declaring :data:`BEARER` for the description."""
    token = _presented(request.headers.get("authorization", ""), basic=False)
    if token is None:
        raise missing_token("Bearer")
    return token


def stored_token(token: str) -> bytes | None:
    """What ``adapter_tokens.token_sha256`` holds for ``token``; None for one that cannot be
    valid (so :func:`token_agency` would not look)."""
    return hash_token(token) if token and len(token) <= 256 else None


def missing_token(challenge: str = "Bearer") -> HTTPException:
    """The 401 of a request without a token."""
    return _unauthorized(
        "missing_token",
        "an API token is required: Authorization: Bearer <token>",
        "缺少访问令牌",
        challenge,
    )


def invalid_token(challenge: str = "Bearer") -> HTTPException:
    """The 401 of an unknown or revoked token."""
    return _unauthorized(
        INVALID_TOKEN, "the API token is unknown or revoked", "访问令牌无效或已注销", challenge
    )


def not_served(agency: str) -> HTTPException:
    """The 403 of :func:`served_reader`: a valid token of an agency the adapter does not serve."""
    return forbidden(
        "Authorization",
        "agency_not_served",
        "the token's agency is not served by this adapter",
        "本适配器不为该令牌所属单位提供服务",
        agency,
    )


def served_reader(pool: Callable[[], asyncpg.Pool], serves: Callable[[str], bool]) -> AgencyReader:
    """As :func:`token_reader`, and 403 ``agency_not_served`` unless ``serves(agency)``."""
    any_token = token_reader(pool)

    async def agency_of(agency: Annotated[str, Depends(any_token)]) -> str:
        if not serves(agency):
            raise not_served(agency)
        return agency

    return agency_of


def message_reader(
    pool: Callable[[], asyncpg.Pool], supervises: Callable[[str], bool]
) -> AgencyReader:
    """The dependency of a route about one message (path parameter ``message_id``): its sender,
    its recipients, or an agency that ``supervises`` every message may read it. Any other valid
    token gets 403 ``not_a_party`` whether or not the message exists, so the answer never tells
    a non-party that a message id is real."""
    any_token = token_reader(pool)

    async def agency_of(message_id: uuid.UUID, agency: Annotated[str, Depends(any_token)]) -> str:
        if supervises(agency) or agency in await message_parties(pool(), message_id):
            return agency
        raise forbidden(
            "message_id",
            "not_a_party",
            "only the message's sender and recipients and the procuratorate may read it",
            "仅该消息的发送单位、接收单位和检察机关可以查看",
        )

    return agency_of
