"""Who may read each HTTP route: every route of every adapter app and of the ops console,
walked from the app itself.

A route that nobody decided about fails the walk below, so a new route ships with its access
decision. The decisions (README "Who may read what"):

- ``public``: health, metrics, the API description, checkpoints and consistency proofs (no case
  content); anyone, no token.
- ``served``: the department API; a token of an agency the adapter serves.
- ``procuratorate``: the supervision views; the procuratorate's token only (its adapter serves no
  one else).
- ``attachment``: a case file; the sender, recipients and automatic copies of a message
  referring to it, each at its own adapter (a token of an agency the adapter serves). Anyone
  else gets 403 whether or not the file exists.
- ``own``: a message's audit trail on a department adapter; a token of an agency the adapter
  serves, about a message that agency is a party to (per the audit log). Any other id, someone
  else's or none, is 404 ``not_found``: the answer never says whether it exists.
- ``party``: an evidence bundle (it carries the whole signed envelope); the message's sender and
  recipients, and the procuratorate. Anyone else gets 403 whether or not the message exists.
  The console's case page likewise: the case's parties and the procuratorate.

One error contract: 401 ``missing_token`` / ``invalid_token`` with ``WWW-Authenticate: Bearer``,
403 for a valid token that may not read the route.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import asyncpg
import httpx
import pytest
from buskit import signed_ack
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI
from fastapi.routing import APIRoute
from keykit import ALGORITHM
from starlette.routing import Route

from adapters import court, enforcement, police, procuratorate, regulators
from adapters._framework.auth import create_token
from adapters._framework.config import AdapterConfig, AgencyEndpoint
from bus.agencies import load_registry
from bus.agency_db import sync_agencies
from bus.attachments import PostgresAttachmentStore, delivery_role, record_references
from bus.audit.checkpointer import Checkpointer
from bus.audit.events import message_leaf, recipients_detail
from bus.audit.log import AuditLog, AuditRecord
from bus.console import create_app as create_console
from bus.models import Attachment
from bus.party import Party, make_party
from bus.settings import Settings
from bus.signing import write_keypair

pytestmark = pytest.mark.integration

POLICE = "ygh.police.bureau"
BUREAU = "ygh.enforcement.bureau"
PROCURATORATE = "ygh.procuratorate"
COURT = "ygh.court"
PLANNING = "ygh.regulator.planning"
MARKET = "ygh.regulator.market"
"""Neither served by any adapter below nor a party to the message: the outsider."""
CASE = "阳城执〔2026〕路由0001号"

Access = Literal["public", "served", "procuratorate", "party", "attachment", "own"]

COMMON: dict[tuple[str, str], Access] = {
    ("POST", "/v1/submissions"): "served",
    ("GET", "/v1/inbox"): "served",
    ("POST", "/v1/inbox/{message_id}/ack"): "served",
    ("POST", "/v1/inbox/{message_id}/reject"): "served",
    ("POST", "/v1/attachments"): "served",
    ("GET", "/v1/attachments/{sha256}"): "attachment",
    ("GET", "/v1/messages/{message_id}/audit"): "own",
    ("GET", "/healthz"): "public",
    ("GET", "/readyz"): "public",
    ("GET", "/metrics"): "public",
    ("GET", "/openapi.json"): "public",
    ("GET", "/docs"): "public",
    ("GET", "/docs/oauth2-redirect"): "public",
    ("GET", "/redoc"): "public",
}
PROCURATORATE_ONLY: dict[tuple[str, str], Access] = {
    ("GET", "/v1/cases/{case_id}/timeline"): "procuratorate",
    ("GET", "/v1/screening/penalty-instead-of-transfer"): "procuratorate",
    ("GET", "/v1/statistics"): "procuratorate",
    ("GET", "/v1/audit/proofs/{message_id}"): "party",
    ("GET", "/v1/audit/consistency"): "public",
    ("GET", "/v1/audit/checkpoints/latest"): "public",
    ("GET", "/v1/tlog/checkpoint"): "public",
    ("GET", "/v1/tlog/tile/{level}/{index}"): "public",
    ("GET", "/v1/tlog/tile/entries/{index}"): "procuratorate",
}
CONSOLE: dict[tuple[str, str], Access] = {
    ("GET", "/"): "procuratorate",
    ("GET", "/cases/{case_id}"): "party",
    ("GET", "/healthz"): "public",
    ("GET", "/openapi.json"): "public",
}
ADAPTERS: dict[str, tuple[ModuleType, str, dict[tuple[str, str], Access]]] = {
    "regulators": (regulators, PLANNING, COMMON),
    "enforcement": (enforcement, BUREAU, COMMON),
    "police": (police, POLICE, COMMON),
    "court": (court, COURT, COMMON),
    "procuratorate": (procuratorate, PROCURATORATE, COMMON | PROCURATORATE_ONLY),
}


@dataclass
class World:
    """One audited message (POLICE to BUREAU, checkpointed), a stored case file that a
    message from POLICE to every agency an adapter below serves refers to, and a token per
    agency."""

    pool: asyncpg.Pool
    message_id: uuid.UUID
    tokens: dict[str, str]
    sha256: str


@pytest.fixture
async def world(settings: Settings, tmp_path: Path) -> AsyncIterator[World]:
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=4)
    try:
        async with pool.acquire() as conn:
            await sync_agencies(conn, load_registry(settings.agencies_file))
        sender = make_party(POLICE, tmp_path / "parties")
        env = signed_ack(sender, recipients=[BUREAU], case_id=CASE)
        now = datetime.now(UTC)
        accepted = message_leaf(
            "accepted",
            message_id=env.message_id,
            case_id=CASE,
            at=now,
            value=sender.value(env),
            key=sender.key_record(),
        )
        delivered = message_leaf(
            "delivered",
            message_id=env.message_id,
            case_id=CASE,
            at=now,
            details=recipients_detail([BUREAU]),
        )
        checkpointer = Checkpointer(
            pool, origin="test.casebus/access", private_key=Ed25519PrivateKey.generate()
        )
        for kind, leaf in (("accepted", accepted), ("delivered", delivered)):
            async with pool.acquire() as conn, conn.transaction():
                await AuditLog().append(conn, [AuditRecord(kind, env.message_id, CASE, leaf)])
            await checkpointer.checkpoint()
        tokens = {a: await create_token(pool, a) for a in (POLICE, BUREAU, PROCURATORATE, COURT)}
        tokens |= {a: await create_token(pool, a) for a in (PLANNING, MARKET)}
        sha256 = await _case_file(pool, sender)
        yield World(pool, env.message_id, tokens, sha256)
    finally:
        await pool.close()


async def _case_file(pool: asyncpg.Pool, sender: Party) -> str:
    """A stored file that POLICE sent to BUREAU, PLANNING and COURT, PROCURATORATE getting a
    copy: the references each agency's adapter records."""

    async def body() -> AsyncIterator[bytes]:
        yield b"%PDF-1.7 route access"

    stored = await PostgresAttachmentStore(lambda: pool).put(
        body(), media_type="application/pdf", max_bytes=1024
    )
    a = stored.attachment
    sent = signed_ack(sender, recipients=[BUREAU, PLANNING, COURT], case_id=CASE)
    attachment = Attachment(
        name="a.pdf", media_type=a.media_type, size_bytes=a.size_bytes, sha256=a.sha256, uri=a.uri
    )
    sent = sent.model_copy(update={"attachments": [attachment]})
    for agency in (POLICE, BUREAU, PLANNING, COURT, PROCURATORATE):
        await record_references(pool, sent, agency, delivery_role(sent, agency))
    return a.sha256


TABLES = {kind: (agency, table) for kind, (_, agency, table) in ADAPTERS.items()}
TABLES["console"] = (PROCURATORATE, CONSOLE)


@pytest.fixture
async def apps(
    settings: Settings, world: World, tmp_path: Path
) -> AsyncIterator[dict[str, FastAPI]]:
    """Each adapter's real app over its real service (no Kafka readers or relays needed), and
    the ops console."""
    services = []
    out: dict[str, FastAPI] = {"console": create_console(settings, pool=world.pool)}
    try:
        for kind, (module, agency, _) in ADAPTERS.items():
            files = write_keypair(agency, tmp_path / "keys" / kind, algorithm=ALGORITHM)
            config = AdapterConfig(
                adapter_kind=kind,
                agencies=(AgencyEndpoint(agency_id=agency, key_file=files.private_key),),
            )
            service = module.build_service(settings, config, run_relay=False, run_readers=False)
            await service.start()
            services.append(service)
            out[kind] = module.create_app(service, manage_service=False)
        yield out
    finally:
        for service in services:
            await service.stop()


def routes(app: FastAPI) -> list[tuple[str, str]]:
    """Every (method, path) the app answers: its OpenAPI paths (included routers too, which
    ``app.routes`` keeps behind a private wrapper) and its own plain routes (the docs pages)."""
    out = {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        for method in operations
    }
    for route in app.routes:
        if isinstance(route, APIRoute | Route):
            out |= {(m, route.path) for m in route.methods or () if m != "HEAD"}
    return sorted(out)


def request_of(method: str, path: str, world: World) -> dict[str, Any]:
    """A well-formed request to the route: path parameters and required inputs filled in."""
    url = path.replace("{message_id}", str(world.message_id)).replace("{case_id}", CASE)
    url = url.replace("{sha256}", world.sha256)
    url = url.replace("{level}", "0").replace("{index}", "000.p/2")  # the tile of the 2 leaves
    params: dict[str, str] = {}
    body: Any = None
    if path == "/v1/statistics":
        params = {"from": "2026-01-01", "to": date.today().isoformat()}
    elif path == "/v1/audit/consistency":
        params = {"from": "1", "to": "2"}
    elif path.endswith("/reject"):
        body = {"jjyy": "不属于本单位管辖"}
    elif path == "/v1/submissions":
        body = {"ywlx": "?", "ajbh": CASE, "jsdw": [BUREAU]}
    return {"method": method, "url": url, "params": params, "json": body}


def bearer(token: str | None) -> dict[str, str]:
    return {} if token is None else {"Authorization": f"Bearer {token}"}


def rules(response: httpx.Response) -> list[str]:
    return [p["rule"] for p in response.json()["problems"]]


async def test_every_route_of_every_adapter_decides_who_may_read_it(
    world: World, apps: dict[str, FastAPI]
) -> None:
    failures: list[str] = []
    for kind, app in apps.items():
        served, table = TABLES[kind]
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://adapter") as client:
            for method, path in routes(app):
                access = table.get((method, path))
                if access is None:
                    failures.append(f"{kind}: {method} {path} has no access decision")
                    continue
                request = request_of(method, path, world)

                async def call(token: str | None, req: dict[str, Any] = request) -> httpx.Response:
                    return await client.request(**req, headers=bearer(token))

                where = f"{kind}: {method} {path}"
                if access == "public":
                    for token in (None, "cbt_nonsense", world.tokens[MARKET]):
                        r = await call(token)
                        if r.status_code != 200:
                            failures.append(f"{where} public, got {r.status_code}: {r.text[:200]}")
                    continue
                # No token, a bad token: 401 with the one contract.
                for token, rule in ((None, "missing_token"), ("cbt_nonsense", "invalid_token")):
                    r = await call(token)
                    if (
                        r.status_code != 401
                        or rules(r) != [rule]
                        # An API asks for a bearer token; a page for a browser for Basic alone
                        # (Chromium sends no credentials after a challenge naming both).
                        or r.headers.get("www-authenticate", "").split(" ")[0]
                        != ("Basic" if kind == "console" else "Bearer")
                    ):
                        failures.append(f"{where} with {token!r}: {r.status_code} {r.text[:200]}")
                # A valid token of an agency that may not read it: 403. A case file's party
                # reads it at its own adapter only.
                outsiders = [MARKET] + ([POLICE] if access == "procuratorate" else [])
                if access == "attachment":
                    outsiders.append(BUREAU if served == POLICE else POLICE)
                for outsider in outsiders:
                    r = await call(world.tokens[outsider])
                    if r.status_code != 403:
                        failures.append(f"{where} as {outsider}: {r.status_code} {r.text[:200]}")
                # Those who may read it get past the door.
                readers = [served] + ([POLICE, BUREAU] if access == "party" else [])
                for reader in readers:
                    r = await call(world.tokens[reader])
                    if access == "own" and reader not in (POLICE, BUREAU):  # not its message
                        if r.status_code != 404 or rules(r) != ["not_found"]:
                            failures.append(f"{where} as {reader}: {r.status_code} {r.text[:200]}")
                        continue
                    if r.status_code in (401, 403) or (method == "GET" and r.status_code != 200):
                        failures.append(f"{where} as {reader}: {r.status_code} {r.text[:200]}")
    assert not failures, "\n".join(failures)


async def test_a_proof_does_not_say_whether_a_message_exists_to_a_non_party(
    world: World, apps: dict[str, FastAPI]
) -> None:
    transport = httpx.ASGITransport(app=apps["procuratorate"])
    async with httpx.AsyncClient(transport=transport, base_url="http://adapter") as client:
        unknown = f"/v1/audit/proofs/{uuid.uuid4()}"
        known = f"/v1/audit/proofs/{world.message_id}"
        outsider = bearer(world.tokens[MARKET])
        r_unknown = await client.get(unknown, headers=outsider)
        r_known = await client.get(known, headers=outsider)
        assert r_unknown.status_code == r_known.status_code == 403
        assert r_unknown.json() == r_known.json()
        assert rules(r_known) == ["not_a_party"]
        # The sender asking about a message it did not send is an outsider too.
        assert (await client.get(unknown, headers=bearer(world.tokens[POLICE]))).status_code == 403
        # The procuratorate, which may read every proof, is told the truth.
        r = await client.get(unknown, headers=bearer(world.tokens[PROCURATORATE]))
        assert r.status_code == 404
        bundle = (await client.get(known, headers=bearer(world.tokens[BUREAU]))).json()
        assert bundle["message_id"] == str(world.message_id) and bundle["envelope"]


async def test_the_console_does_not_say_whether_a_case_exists_to_a_non_party(
    world: World, apps: dict[str, FastAPI]
) -> None:
    transport = httpx.ASGITransport(app=apps["console"])
    async with httpx.AsyncClient(transport=transport, base_url="http://console") as client:
        outsider = bearer(world.tokens[MARKET])
        r_unknown = await client.get("/cases/no-such-case", headers=outsider)
        r_known = await client.get(f"/cases/{CASE}", headers=outsider)
        assert r_unknown.status_code == r_known.status_code == 403
        assert r_unknown.json() == r_known.json()
        supervisor = bearer(world.tokens[PROCURATORATE])
        assert (await client.get("/cases/no-such-case", headers=supervisor)).status_code == 404
        # A browser signs in with HTTP Basic, the token as the password.
        r = await client.get(f"/cases/{CASE}", auth=("ops", world.tokens[BUREAU]))
        assert r.status_code == 200 and CASE in r.text
        challenge = (await client.get("/")).headers["www-authenticate"]
        assert challenge == 'Basic realm="casebus console"', challenge
