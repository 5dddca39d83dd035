"""Test doubles: a fake department (a real HTTP server on 127.0.0.1) and a department client.

:class:`FakeDepartment` receives webhooks the way a departmental system would: it checks the
HMAC signature and the timestamp, records each document, and can be told to fail (503), to be
slow, or to reject some documents with a reason. :class:`DepartmentClient` drives an adapter's
API the way a department would, in-process (ASGI) or over HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import socket
import time
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx
import uvicorn
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from adapters._framework.app import create_app
from adapters._framework.auth import create_token
from adapters._framework.config import AdapterConfig, AgencyEndpoint
from adapters._framework.outbound import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign_webhook
from adapters._framework.service import AdapterService
from adapters._framework.spec import AdapterSpec
from bus.db import connect
from bus.provision import ensure_registered
from bus.settings import Settings
from bus.signing import algorithm_of_profile, write_keypair

__all__ = [
    "DepartmentClient",
    "FakeDepartment",
    "RunningAdapter",
    "free_socket",
    "running_adapter",
    "serve_app",
]


def free_socket() -> socket.socket:
    """A listening-ready TCP socket bound to a free port on 127.0.0.1."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextlib.asynccontextmanager
async def serve_app(app: Any, *, lifespan: str = "on") -> Any:
    """Serve an ASGI app with uvicorn on a free port of 127.0.0.1; yields its base URL."""
    sock = free_socket()
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan=lifespan)  # type: ignore[arg-type]
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("the server stopped during start-up")
            await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


class FakeDepartment:
    """A departmental system taking webhooks: records, verifies, fails or lags on request."""

    def __init__(
        self,
        *,
        secret: bytes,
        name: str = "department",
        reject: Callable[[dict[str, Any]], str | None] | None = None,
        max_skew_s: int = 300,
    ) -> None:
        self.secret = secret
        self.name = name
        self.received: list[dict[str, Any]] = []
        """Documents accepted (2xx), in arrival order."""
        self.rejected: list[dict[str, Any]] = []
        """Documents rejected with a reason (4xx)."""
        self.attempts = 0
        """Every POST, including failed and refused ones."""
        self.bad_signatures = 0
        self.failing = False
        """While True every POST answers 503."""
        self.delay_s = 0.0
        """Seconds to wait before answering."""
        self.reject = reject
        """Returns a reason (拒收原因) to reject a document with 422, or None to accept it."""
        self._max_skew_s = max_skew_s
        self._arrived = asyncio.Condition()
        self.url = ""
        self._server: Any = None
        self.app = FastAPI(routes=[Route("/webhook", self._webhook, methods=["POST"])])

    async def _webhook(self, request: Request) -> Response:
        self.attempts += 1
        body = await request.body()
        stamp = request.headers.get(TIMESTAMP_HEADER, "")
        signature = request.headers.get(SIGNATURE_HEADER, "")
        expected = sign_webhook(self.secret, stamp, body)
        fresh = stamp.isdigit() and abs(time.time() - int(stamp)) <= self._max_skew_s
        if not fresh or not hmac.compare_digest(signature, expected):
            self.bad_signatures += 1
            return JSONResponse({"jjyy": "签名无效"}, status_code=401)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.failing:
            return JSONResponse({"error": "暂停服务"}, status_code=503)
        document = json.loads(body)
        reason = self.reject(document) if self.reject is not None else None
        async with self._arrived:
            if reason:
                self.rejected.append(document)
            else:
                self.received.append(document)
            self._arrived.notify_all()
        if reason:
            return JSONResponse({"jjyy": reason}, status_code=422)
        return JSONResponse({"jszt": "已接收"}, status_code=200)

    async def wait_for(
        self, count: int, *, timeout_s: float = 30.0, rejected: bool = False
    ) -> list[dict[str, Any]]:
        """The documents once at least ``count`` arrived (TimeoutError otherwise)."""
        target = self.rejected if rejected else self.received

        async def enough() -> None:
            async with self._arrived:
                await self._arrived.wait_for(lambda: len(target) >= count)

        await asyncio.wait_for(enough(), timeout_s)
        return list(target)

    async def __aenter__(self) -> Self:
        self._server = serve_app(self.app, lifespan="off")
        base = await self._server.__aenter__()
        self.url = f"{base}/webhook"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._server.__aexit__(exc_type, exc, tb)


class DepartmentClient:
    """A department's side of an adapter API, with its token."""

    def __init__(self, client: httpx.AsyncClient, token: str) -> None:
        self.client = client
        self.token = token

    @property
    def headers(self) -> dict[str, str]:
        """The Authorization header."""
        return {"Authorization": f"Bearer {self.token}"}

    async def submit(
        self, document: dict[str, Any], *, idempotency_key: str | None = None
    ) -> httpx.Response:
        """``POST /v1/submissions``."""
        headers = dict(self.headers)
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        return await self.client.post("/v1/submissions", json=document, headers=headers)

    async def pull(self, *, after: int = 0, limit: int = 100) -> dict[str, Any]:
        """``GET /v1/inbox``."""
        response = await self.client.get(
            "/v1/inbox", params={"after": after, "limit": limit}, headers=self.headers
        )
        response.raise_for_status()
        page: dict[str, Any] = response.json()
        return page

    async def ack(self, message_id: str) -> httpx.Response:
        """``POST /v1/inbox/{id}/ack``."""
        return await self.client.post(f"/v1/inbox/{message_id}/ack", headers=self.headers)

    async def reject(self, message_id: str, reason: str) -> httpx.Response:
        """``POST /v1/inbox/{id}/reject``."""
        return await self.client.post(
            f"/v1/inbox/{message_id}/reject", json={"jjyy": reason}, headers=self.headers
        )

    async def wait_pull(self, count: int, *, timeout_s: float = 30.0) -> list[dict[str, Any]]:
        """Pending items once at least ``count`` are there."""
        deadline = time.monotonic() + timeout_s
        while True:
            items: list[dict[str, Any]] = (await self.pull())["items"]
            if len(items) >= count or time.monotonic() > deadline:
                return items
            await asyncio.sleep(0.2)


class RunningAdapter:
    """An adapter service with its in-process API client and one token per agency."""

    def __init__(self, service: AdapterService, client: httpx.AsyncClient) -> None:
        self.service = service
        self.client = client
        self.tokens: dict[str, str] = {}

    def department(self, agency_id: str) -> DepartmentClient:
        """The API as ``agency_id``'s department uses it."""
        return DepartmentClient(self.client, self.tokens[agency_id])


@contextlib.asynccontextmanager
async def running_adapter(
    build_service: Callable[..., AdapterService],
    settings: Settings,
    *,
    key_dir: Path,
    webhooks: Mapping[str, FakeDepartment | None],
    relay_settings: Settings | None = None,
    own_role: bool = False,
    **config: Any,
) -> AsyncIterator[RunningAdapter]:
    """Start an adapter for the agencies of ``webhooks`` (None: that agency pulls).

    Each agency gets a fresh key pair under ``key_dir`` and an API token, both registered as
    an operator would: as the owner of the tables (``settings.database_url``). With
    ``own_role`` the adapter itself connects as deployed, as its role's login
    (``settings.for_service(config.service)``: casebus_adapter's, the procuratorate's own);
    else as the owner too.
    """
    endpoints = []
    algorithm = algorithm_of_profile(settings.crypto_profile)
    for agency_id, fake in webhooks.items():
        files = write_keypair(agency_id, key_dir / agency_id, overwrite=True, algorithm=algorithm)
        endpoints.append(
            AgencyEndpoint(
                agency_id=agency_id,
                key_file=files.private_key,
                webhook_url=fake.url if fake is not None else None,
                webhook_secret=fake.secret if fake is not None else b"",
            )
        )
    defaults: dict[str, Any] = {
        "retry_initial_s": 0.05,
        "retry_max_s": 0.5,
        "breaker_open_s": 0.5,
        "poll_interval_s": 0.1,
        "lateness_interval_s": 0.1,
    }
    defaults.update(config)
    spec = getattr(build_service, "__self__", None)  # an adapter's build_service is its spec's
    kind = spec.kind if isinstance(spec, AdapterSpec) else "test"
    cfg = AdapterConfig(adapter_kind=kind, agencies=tuple(endpoints), **defaults)
    service = build_service(
        settings.for_service(cfg.service) if own_role else settings,
        cfg,
        relay_settings=relay_settings,
    )
    tokens: dict[str, str] = {}
    operator = await connect(settings.database_url)
    try:
        await ensure_registered(operator, registry=None, keys=service.own_keys)
        for agency_id in webhooks:
            tokens[agency_id] = await create_token(operator, agency_id)
    finally:
        await operator.close()
    async with service:
        transport = httpx.ASGITransport(app=create_app(service, manage_service=False))
        async with httpx.AsyncClient(transport=transport, base_url="http://adapter") as client:
            running = RunningAdapter(service, client)
            running.tokens.update(tokens)
            yield running
