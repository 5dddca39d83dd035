"""The webhook deliverer's HTTP client, against a real department server on 127.0.0.1.

What a department sees of a POST (headers, body bytes, signature), and what each kind of answer
does to the delivery in the real database: 2xx accepts it and queues a ``bus.ack``, a 4xx with
a reason rejects it and queues a ``bus.nack``, while a redirect (never followed), a 503, a
timeout or a refused connection leave it pending for a retry. And the proxy the environment
names, decided once per deliverer.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from adapterkit import BUREAU, case_no
from buskit import Bus
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from adapters import regulators
from adapters._framework.fake_department import FakeDepartment, free_socket, running_adapter
from adapters._framework.outbound import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    answer_id,
    sign_webhook,
)
from adapters._framework.webhooks import webhook_proxy

PLANNING = "ygh.regulator.planning"
SECRET = b"planning-secret"
GBK_TEXT = "text/plain; charset=gbk"
_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


# -- the proxy, decided once ----------------------------------------------------------------------


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """An environment naming no proxy (whatever the machine's names), to set up per test."""
    for name in _PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    return monkeypatch


def test_no_proxy_in_the_environment_means_a_direct_post(no_proxy_env: Any) -> None:
    assert webhook_proxy("https://dept.example/hook") is None
    assert webhook_proxy("http://dept.example/hook") is None


def test_the_proxy_of_the_webhooks_scheme_is_used(no_proxy_env: pytest.MonkeyPatch) -> None:
    no_proxy_env.setenv("HTTP_PROXY", "http://plain.proxy:3128")
    no_proxy_env.setenv("HTTPS_PROXY", "proxy.example:8080")  # no scheme: http://, as httpx did
    assert webhook_proxy("http://dept.example/hook") == "http://plain.proxy:3128"
    assert webhook_proxy("https://dept.example:8443/hook") == "http://proxy.example:8080"


def test_all_proxy_serves_a_scheme_without_its_own(no_proxy_env: pytest.MonkeyPatch) -> None:
    no_proxy_env.setenv("ALL_PROXY", "http://every.proxy:1080")
    no_proxy_env.setenv("HTTP_PROXY", "http://plain.proxy:3128")
    assert webhook_proxy("https://dept.example/hook") == "http://every.proxy:1080"
    assert webhook_proxy("http://dept.example/hook") == "http://plain.proxy:3128"


def test_no_proxy_hosts_and_their_subdomains_go_direct(no_proxy_env: pytest.MonkeyPatch) -> None:
    no_proxy_env.setenv("HTTPS_PROXY", "http://proxy.example:8080")
    no_proxy_env.setenv("NO_PROXY", "gov.internal, 10.1.2.3")
    assert webhook_proxy("https://gov.internal/hook") is None
    assert webhook_proxy("https://planning.gov.internal:8443/hook") is None
    assert webhook_proxy("https://10.1.2.3/hook") is None
    assert webhook_proxy("https://notgov.internal/hook") == "http://proxy.example:8080"
    no_proxy_env.setenv("NO_PROXY", "*")
    assert webhook_proxy("https://dept.example/hook") is None


# -- a department's server ------------------------------------------------------------------------


class Department(FakeDepartment):
    """A :class:`FakeDepartment` that keeps every request as it arrived and answers a message
    as ``answers`` says (by ``X-Casebus-Message-Id``; otherwise as a FakeDepartment does)."""

    def __init__(self) -> None:
        super().__init__(secret=SECRET, name="planning")
        self.requests: list[tuple[Request, bytes]] = []
        self.answers: dict[str, Callable[[], Response]] = {}
        self.elsewhere = 0
        """Requests to ``/elsewhere``, where redirects point."""
        self.app.router.routes.append(Route("/elsewhere", self._elsewhere, methods=["GET", "POST"]))

    async def _webhook(self, request: Request) -> Response:
        body = await request.body()
        self.requests.append((request, body))
        answer = self.answers.get(request.headers.get("X-Casebus-Message-Id", ""))
        if answer is not None:
            self.attempts += 1
            return answer()
        return await super()._webhook(request)

    async def _elsewhere(self, request: Request) -> Response:
        self.elsewhere += 1
        return JSONResponse({"jszt": "已接收"})

    def bodies(self, message_id: uuid.UUID) -> list[bytes]:
        """The bodies POSTed for one message, in arrival order."""
        wanted = str(message_id)
        return [b for r, b in self.requests if r.headers["X-Casebus-Message-Id"] == wanted]


@contextlib.asynccontextmanager
async def delivering(
    bus: Bus, tmp_path: Path, department: FakeDepartment, **config: Any
) -> AsyncIterator[asyncpg.Pool]:
    """The regulators' adapter delivering PLANNING's messages to ``department``; its pool."""
    async with running_adapter(
        regulators.build_service,
        bus.settings,
        key_dir=tmp_path / "keys",
        webhooks={PLANNING: department},
        **config,
    ) as regs:
        yield regs.service.pool


async def store(pool: asyncpg.Pool, document: dict[str, Any]) -> uuid.UUID:
    """A message for PLANNING from the bureau, stored pending as the inbox reader stores one."""
    message_id = uuid.uuid4()
    await pool.execute(
        """INSERT INTO adapter_deliveries
           (agency_id, message_id, case_id, kind, sender, correlation_id, document, needs_ack)
           VALUES ($1, $2, $3, 'opinion.request', $4, $5, $6::jsonb, true)""",
        PLANNING,
        message_id,
        case_no(),
        BUREAU,
        str(uuid.uuid4()),
        json.dumps(document | {"xxbh": str(message_id)}, ensure_ascii=False),
    )
    return message_id


async def delivery(
    pool: asyncpg.Pool,
    message_id: uuid.UUID,
    until: Callable[[asyncpg.Record], bool],
    timeout_s: float = 20.0,
) -> asyncpg.Record:
    """The delivery's row once ``until`` holds of it (AssertionError after ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    while True:
        row = await pool.fetchrow(
            "SELECT * FROM adapter_deliveries WHERE agency_id = $1 AND message_id = $2",
            PLANNING,
            message_id,
        )
        assert row is not None
        if until(row):
            return row
        assert time.monotonic() < deadline, dict(row)
        await asyncio.sleep(0.05)


async def queued(pool: asyncpg.Pool, message_id: uuid.UUID) -> bool:
    """Whether the outbox holds a message of this id."""
    return bool(
        await pool.fetchval("SELECT count(*) FROM outbox WHERE message_id = $1", message_id)
    )


def settled(row: asyncpg.Record) -> bool:
    return bool(row["state"] != "pending")


def failed(times: int) -> Callable[[asyncpg.Record], bool]:
    return lambda row: row["attempts"] >= times


# -- what each answer does -------------------------------------------------------------------------


@pytest.mark.integration
async def test_the_department_gets_the_signed_body_and_headers_and_a_2xx_acks(
    bus: Bus, tmp_path: Path
) -> None:
    document = {
        "ywlx": "意见征询",
        "ajbh": "阳城执〔2026〕1号",
        "nr": {"bt": "关于\u2028", "n": [1]},
    }
    async with Department() as planning, delivering(bus, tmp_path, planning) as pool:
        before = int(time.time())
        message_id = await store(pool, document)
        row = await delivery(pool, message_id, settled)
        assert (row["state"], row["reason"], row["attempts"]) == ("accepted", None, 1)
        assert await queued(pool, answer_id(PLANNING, "bus.ack", message_id))
        stored = await pool.fetchval(
            "SELECT document::text FROM adapter_deliveries WHERE message_id = $1", message_id
        )

    [(request, body)] = planning.requests
    # The stored document as UTF-8 JSON, not \u-escaped: exactly the bytes that were signed.
    assert body == json.dumps(json.loads(stored), ensure_ascii=False).encode()
    assert json.loads(body) == document | {"xxbh": str(message_id)}
    assert "意见征询".encode() in body
    headers = request.headers
    stamp = headers[TIMESTAMP_HEADER]
    assert before <= int(stamp) <= time.time()
    assert headers[SIGNATURE_HEADER] == sign_webhook(SECRET, stamp, body)
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    assert headers["X-Casebus-Message-Id"] == str(message_id)
    assert headers["Content-Length"] == str(len(body))
    assert request.method == "POST" and request.url.path == "/webhook"
    # Nothing else of ours, and no chunked body: a department sees what it saw before.
    assert {k.lower() for k in headers} == {
        "host",
        "content-type",
        "content-length",
        TIMESTAMP_HEADER.lower(),
        SIGNATURE_HEADER.lower(),
        "x-casebus-message-id",
        "accept",
        "accept-encoding",
        "user-agent",
    }


@pytest.mark.integration
async def test_a_4xx_with_a_reason_rejects_and_answers_a_nack_with_it(
    bus: Bus, tmp_path: Path
) -> None:
    async with Department() as planning, delivering(bus, tmp_path, planning) as pool:
        reasons = {"jjyy": "材料不全", "yy": "unused", "reason": ""}
        answers: list[tuple[Callable[[], Response], str]] = [
            (lambda: JSONResponse(reasons, status_code=400), "材料不全"),
            (lambda: JSONResponse({"reason": "wrong kind"}, status_code=422), "wrong kind"),
            (
                lambda: Response(" 格式错误 \n", status_code=400, media_type="text/plain"),
                "格式错误",
            ),
            (lambda: Response(b"", status_code=410), "HTTP 410"),
            (lambda: Response("拒收".encode("gbk"), 400, media_type=GBK_TEXT), "拒收"),
        ]
        ids = []
        for answer, _ in answers:
            message_id = await store(pool, {"ywlx": "意见征询"})
            planning.answers[str(message_id)] = answer
            ids.append(message_id)
        for message_id, (_, reason) in zip(ids, answers, strict=True):
            row = await delivery(pool, message_id, settled)
            assert (row["state"], row["reason"], row["attempts"]) == ("rejected", reason, 1)
            assert await queued(pool, answer_id(PLANNING, "bus.nack", message_id))
            assert not await queued(pool, answer_id(PLANNING, "bus.ack", message_id))


@pytest.mark.integration
async def test_a_redirect_is_not_followed_but_retried(bus: Bus, tmp_path: Path) -> None:
    async with Department() as planning, delivering(bus, tmp_path, planning) as pool:
        elsewhere = planning.url.replace("/webhook", "/elsewhere")
        message_id = await store(pool, {"ywlx": "意见征询"})
        planning.answers[str(message_id)] = lambda: RedirectResponse(elsewhere, status_code=302)
        row = await delivery(pool, message_id, failed(2))
        assert row["state"] == "pending" and row["last_error"] == "HTTP 302"
        assert planning.elsewhere == 0
        assert not await queued(pool, answer_id(PLANNING, "bus.ack", message_id))
        del planning.answers[str(message_id)]  # the department fixed its URL
        row = await delivery(pool, message_id, settled)
        assert row["state"] == "accepted" and planning.elsewhere == 0


@pytest.mark.integration
async def test_a_503_and_a_retried_4xx_leave_the_delivery_pending(bus: Bus, tmp_path: Path) -> None:
    async with Department() as planning, delivering(bus, tmp_path, planning) as pool:
        unavailable = await store(pool, {"ywlx": "意见征询"})
        throttled = await store(pool, {"ywlx": "意见征询"})
        planning.answers[str(unavailable)] = lambda: JSONResponse({"jjyy": "维护"}, 503)
        planning.answers[str(throttled)] = lambda: JSONResponse({"jjyy": "太快"}, 429)
        for message_id, error in ((unavailable, "HTTP 503"), (throttled, "HTTP 429")):
            row = await delivery(pool, message_id, failed(2))
            assert (row["state"], row["reason"], row["last_error"]) == ("pending", None, error)
            assert len(planning.bodies(message_id)) >= 2
        planning.answers.clear()
        for message_id in (unavailable, throttled):
            assert (await delivery(pool, message_id, settled))["state"] == "accepted"


@pytest.mark.integration
async def test_a_department_slower_than_the_timeout_is_retried(bus: Bus, tmp_path: Path) -> None:
    async with (
        Department() as planning,
        delivering(bus, tmp_path, planning, webhook_timeout_s=0.3) as pool,
    ):
        planning.delay_s = 1.0
        message_id = await store(pool, {"ywlx": "意见征询"})
        row = await delivery(pool, message_id, failed(1))
        assert row["state"] == "pending"
        assert row["last_error"] == ("TimeoutError: no answer within webhook_timeout_s = 0.3 s"), (
            row["last_error"]
        )
        planning.delay_s = 0.0
        assert (await delivery(pool, message_id, settled))["state"] == "accepted"


@pytest.mark.integration
async def test_a_refused_connection_is_retried(bus: Bus, tmp_path: Path) -> None:
    closed = free_socket()  # bound, never listening: connections to it are refused
    port = closed.getsockname()[1]
    nobody = FakeDepartment(secret=SECRET)
    nobody.url = f"http://127.0.0.1:{port}/webhook"
    try:
        async with delivering(bus, tmp_path, nobody) as pool:
            message_id = await store(pool, {"ywlx": "意见征询"})
            row = await delivery(pool, message_id, failed(2))
    finally:
        closed.close()
    assert row["state"] == "pending"
    assert row["last_error"].startswith("ClientConnectorError: "), row["last_error"]
    assert f"127.0.0.1:{port}" in row["last_error"]


@pytest.mark.integration
async def test_the_environments_proxy_carries_the_post(
    bus: Bus, tmp_path: Path, no_proxy_env: pytest.MonkeyPatch
) -> None:
    async with Department() as proxy:
        # The department's host resolves nowhere: only a proxy can carry the POST. Ours is the
        # fake itself, which serves an absolute-form request line by its path.
        no_proxy_env.setenv("HTTP_PROXY", proxy.url.removesuffix("/webhook"))
        behind = FakeDepartment(secret=SECRET)
        behind.url = "http://planning.invalid/webhook"
        async with delivering(bus, tmp_path, behind) as pool:
            message_id = await store(pool, {"ywlx": "意见征询"})
            assert (await delivery(pool, message_id, settled))["state"] == "accepted"
        [(request, _)] = proxy.requests
        assert request.headers["Host"] == "planning.invalid"


def self_signed(folder: Path) -> ssl.SSLContext:
    """A server TLS context for 127.0.0.1 with a certificate no trust store holds."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    return context


@pytest.mark.integration
async def test_a_certificate_no_trust_store_holds_is_refused_and_retried(
    bus: Bus, tmp_path: Path
) -> None:
    handshakes = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal handshakes
        handshakes += 1
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=self_signed(tmp_path))
    impostor = FakeDepartment(secret=SECRET)
    impostor.url = f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}/webhook"
    async with server, delivering(bus, tmp_path, impostor) as pool:
        message_id = await store(pool, {"ywlx": "意见征询"})
        row = await delivery(pool, message_id, failed(2))
    assert row["state"] == "pending"
    assert row["last_error"].startswith("ClientConnectorCertificateError: "), row["last_error"]
    assert "CERTIFICATE_VERIFY_FAILED" in row["last_error"]
    assert handshakes == 0  # no request ever got through the handshake


@pytest.mark.integration
async def test_a_case_s_next_message_goes_at_once_not_at_the_next_poll(
    bus: Bus, tmp_path: Path
) -> None:
    # A round goes on at once only when a settled head's case has a next message; the poll is
    # 30 s here, so a chain that waited for it would not arrive within the test's 15 s.
    conn = await asyncpg.connect(bus.settings.database_url)
    try:
        case = case_no()
        chain = []
        for i in range(3):
            message_id = uuid.uuid4()
            await conn.execute(
                """INSERT INTO adapter_deliveries (agency_id, message_id, case_id, kind, sender,
                       correlation_id, document, needs_ack)
                   VALUES ($1, $2, $3, 'opinion.request', $4, $5, $6::jsonb, true)""",
                PLANNING,
                message_id,
                case,
                BUREAU,
                str(uuid.uuid4()),
                json.dumps({"ywlx": "意见征询", "ajbh": case, "xxbh": str(message_id), "i": i}),
            )
            chain.append(message_id)
    finally:
        await conn.close()
    async with (
        Department() as planning,
        delivering(bus, tmp_path, planning, poll_interval_s=30.0) as pool,
    ):
        for message_id in chain:
            await delivery(pool, message_id, settled, timeout_s=15.0)
    assert [uuid.UUID(r.headers["X-Casebus-Message-Id"]) for r, _ in planning.requests] == chain
