"""Bus → department: store inbox messages as pending deliveries, deliver them, answer the bus.

Each message read from an agency's inbox becomes one row of ``adapter_deliveries`` (in the
reader's own transaction, so a message is stored exactly once). From there a department gets it
either by webhook (:class:`WebhookDeliverer`: HMAC-signed POSTs, retries with exponential
backoff and jitter, a circuit breaker) or by pull (``GET /v1/inbox``). A case's messages are
offered one at a time in arrival order: a later one waits until the earlier one is settled.

Settling a delivery — the department accepted it (2xx, or a pull ack) or rejected it (a 4xx
with a reason, or a pull reject) — writes ``bus.ack`` or ``bus.nack`` (code
``rejected_by_department``) to the outbox in the same transaction, signed as the agency.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

import aiohttp
import asyncpg
import structlog
from aiokafka import ConsumerRecord
from prometheus_client import Counter, Gauge

from adapters._framework.config import AdapterConfig, AgencyEndpoint
from adapters._framework.vocabulary import Vocabulary
from bus.codec import Codec, default_codec
from bus.db import Conn
from bus.errors import (
    CasebusError,
    DecodeError,
    DeliveryConflictError,
    DeliveryNotFoundError,
    ValidationFailedError,
)
from bus.inbox import InboxHandler
from bus.lifecycle import EQUAL_JITTER, Backoff, Stoppable, pause
from bus.models import BusAck, BusNack, Envelope, NackReason, Signature
from bus.models.bus_kinds import BusDelivered
from bus.outbox import OUTBOX_COLUMNS, OutboxWriter
from bus.settings import Settings
from bus.signing import Signer, sign_envelope
from bus.sla.clock import Clock, RealClock

__all__ = [
    "DELIVERIES",
    "DELIVERY_LATE",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "CircuitBreaker",
    "Settler",
    "WebhookDeliverer",
    "answer_id",
    "inbox_handler",
    "pending_deliveries",
    "sign_webhook",
    "webhook_proxy",
]

log = structlog.get_logger("casebus.adapter.outbound")

SIGNATURE_HEADER: Final = "X-Casebus-Signature"
"""``sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>``."""
TIMESTAMP_HEADER: Final = "X-Casebus-Timestamp"
"""Unix seconds when the request was signed; departments refuse stale ones."""

DELIVERIES: Final = Counter(
    "casebus_adapter_deliveries_total",
    "Delivery attempts to departments, by agency and outcome.",
    ["agency", "outcome"],
)
"""Webhook attempts and pull settlements, by outcome (accepted, rejected, failed)."""
DELIVERY_LATE: Final = Gauge(
    "casebus_adapter_deliveries_late",
    "Messages waiting for their department longer than the adapter's max wait.",
    ["agency"],
)
"""Pending deliveries older than ``max_wait_s``: alert when above zero."""
OLDEST_PENDING: Final = Gauge(
    "casebus_adapter_oldest_pending_seconds",
    "Age of the oldest message waiting for its department.",
    ["agency"],
)
"""Age of the oldest pending delivery, seconds."""
BREAKER_OPEN: Final = Gauge(
    "casebus_adapter_circuit_open",
    "1 while an agency's webhook circuit breaker is open.",
    ["agency"],
)
"""Whether the webhook circuit of an agency is open."""

# 4xx answers that say nothing about the message: a wrong secret or URL (an operator must fix
# it), a timeout, a conflict or throttling. They are retried; any other 4xx is a rejection.
_RETRIED_4XX: Final = frozenset({401, 403, 404, 405, 408, 409, 425, 429})

_NAMESPACE: Final = uuid.UUID("5d1d7a3c-7a49-4c39-9d3e-0b7c1f2d6a11")
_SILENT_RECEIPTS: Final = frozenset({"bus.ack", "bus.nack"})


def answer_id(agency_id: str, kind: str, original: uuid.UUID) -> uuid.UUID:
    """The message id of ``agency_id``'s ``bus.ack`` / ``bus.nack`` of ``original``: fixed, so
    settling twice never sends two answers."""
    return uuid.uuid5(_NAMESPACE, f"{agency_id}/{kind}/{original}")


def sign_webhook(secret: bytes, timestamp: str, body: bytes) -> str:
    """The signature header's value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={mac}"


# -- bus → table --------------------------------------------------------------------------------


def inbox_handler(
    agency_id: str,
    *,
    vocabulary: Vocabulary,
    codec: Codec | None = None,
    on_stored: Callable[[str], None] | None = None,
) -> InboxHandler:
    """The :class:`~bus.inbox.InboxReader` handler storing each message as a pending delivery."""
    the_codec = codec or default_codec()

    async def handle(conn: Conn, envelope: Envelope, record: ConsumerRecord[bytes, bytes]) -> None:
        try:
            _, _, model = the_codec.decode_payload_model(envelope.payload, kind=envelope.kind)
        except (DecodeError, ValidationFailedError) as e:
            log.warning("adapter.undecodable_payload", error=str(e), agency=agency_id)
            return
        if isinstance(model, BusDelivered) and model.original_kind in _SILENT_RECEIPTS:
            return  # receipts of our own acks and nacks: nothing for the department
        head = envelope.model_dump(mode="json", exclude={"payload", "signature"})
        document = vocabulary.document(head, model.model_dump(mode="json"))
        needs_ack = not envelope.kind.startswith(("bus.", "audit."))
        await conn.execute(
            """INSERT INTO adapter_deliveries
               (agency_id, message_id, case_id, kind, sender, correlation_id, document, needs_ack)
               VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8)
               ON CONFLICT (agency_id, message_id) DO NOTHING""",
            agency_id,
            envelope.message_id,
            envelope.case_id,
            envelope.kind,
            envelope.sender,
            envelope.correlation_id,
            json.dumps(_storable(document), ensure_ascii=False),
            needs_ack,
        )
        if on_stored is not None:
            on_stored(agency_id)

    return handle


def _storable(value: Any) -> Any:
    """``value`` with NUL characters (which ``jsonb`` cannot hold) replaced by U+FFFD."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_storable(k): _storable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_storable(v) for v in value]
    return value


async def pending_deliveries(
    db: Conn | asyncpg.Pool, agency_id: str, *, after: int, limit: int
) -> list[dict[str, Any]]:
    """Pending deliveries of ``agency_id`` after cursor ``after``, oldest first."""
    rows = await db.fetch(
        """SELECT id, message_id, document FROM adapter_deliveries
           WHERE agency_id = $1 AND state = 'pending' AND id > $2 ORDER BY id LIMIT $3""",
        agency_id,
        after,
        limit,
    )
    return [
        {
            "cursor": r["id"],
            "message_id": str(r["message_id"]),
            "document": json.loads(r["document"]),
        }
        for r in rows
    ]


# -- settling: bus.ack / bus.nack -----------------------------------------------------------------

Outcome = Literal["accepted", "rejected"]


_DELIVERY: Final = """
SELECT id, case_id, kind, sender, correlation_id, state, needs_ack
FROM adapter_deliveries WHERE agency_id = $1 AND message_id = $2
"""

# Settles a delivery still pending with no earlier pending message of its case, and queues its
# answer ($4 NULL: none) with it; the UPDATE's row lock makes the state check and the change one.
_SETTLE: Final = f"""
WITH settled AS (
    UPDATE adapter_deliveries d
    SET state = $2, reason = $3, done_at = now(), attempts = attempts + 1
    WHERE d.id = $1 AND d.state = 'pending'
      AND NOT EXISTS (SELECT FROM adapter_deliveries e
                      WHERE e.agency_id = d.agency_id AND e.case_id = d.case_id
                        AND e.state = 'pending' AND e.id < d.id)
    RETURNING true
), answered AS (
    INSERT INTO outbox ({OUTBOX_COLUMNS})
    SELECT $4::text, $5::uuid, $6::text, $7::text, $8::bytea, $9::bytea, $10::jsonb
    WHERE $4::text IS NOT NULL AND EXISTS (SELECT FROM settled)
    RETURNING true
)
SELECT EXISTS (SELECT FROM settled)
"""


class Settler:
    """Marks deliveries accepted or rejected and answers the sender with a signed ack or nack.
    ``on_commit(agency)`` is called after a settlement that queued an answer (to wake the
    agency's outbox relay); one that queued none calls nothing."""

    def __init__(
        self,
        settings: Settings,
        *,
        signers: Mapping[str, Signer],
        codec: Codec | None = None,
        on_commit: Callable[[str], None] | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._signers = dict(signers)
        self._clock = clock or RealClock()
        self._codec = codec or default_codec()
        self._writer = OutboxWriter(settings, codec=self._codec)
        self._on_commit = on_commit

    async def settle(
        self,
        pool: asyncpg.Pool,
        agency_id: str,
        message_id: uuid.UUID,
        outcome: Outcome,
        *,
        reason: str | None = None,
    ) -> bool:
        """Settle one delivery; True if it changed now, False if it was settled so before."""
        async with pool.acquire() as conn:
            row = await conn.fetchrow(_DELIVERY, agency_id, message_id)
            row = await self._settle_row(conn, agency_id, message_id, row, outcome, reason)
        return self._settled(agency_id, message_id, row, outcome)

    async def settle_read(
        self,
        pool: asyncpg.Pool,
        agency_id: str,
        row: asyncpg.Record,
        outcome: Outcome,
        *,
        reason: str | None = None,
    ) -> bool:
        """:meth:`settle` a delivery whose row the caller has just read (with the columns of
        ``_DELIVERY`` and ``message_id``), one statement fewer: the webhook deliverer's
        heads. A row gone stale meanwhile is no risk: the settling statement checks the state
        itself, and the locked path decides what it did not settle."""
        message_id = row["message_id"]
        async with pool.acquire() as conn:
            settled = await self._settle_row(conn, agency_id, message_id, row, outcome, reason)
        return self._settled(agency_id, message_id, settled, outcome)

    async def _settle_row(
        self,
        conn: Conn,
        agency_id: str,
        message_id: uuid.UUID,
        row: asyncpg.Record | None,
        outcome: Outcome,
        reason: str | None,
    ) -> asyncpg.Record | None:
        """Settle the delivery read as ``row``: at once if it still heads its case, else under
        a lock. Its row if changed now, None if it was settled so before."""
        settled = await self._settle_at_once(conn, agency_id, message_id, row, outcome, reason)
        if settled is None:  # not a pending head of its case as found: decide under a lock
            settled = await self._settle_locked(conn, agency_id, message_id, outcome, reason)
        return settled

    def _settled(
        self, agency_id: str, message_id: uuid.UUID, row: asyncpg.Record | None, outcome: Outcome
    ) -> bool:
        """Count, log and announce a settlement (``row``; None: nothing changed now)."""
        if row is None:
            return False
        DELIVERIES.labels(agency=agency_id, outcome=outcome).inc()
        log.info(
            "adapter.settled",
            agency=agency_id,
            message_id=str(message_id),
            case_id=row["case_id"],
            kind=row["kind"],
            outcome=outcome,
        )
        if self._on_commit is not None and row["needs_ack"]:  # an answer is in the outbox
            self._on_commit(agency_id)
        return True

    async def _settle_at_once(
        self,
        conn: Conn,
        agency_id: str,
        message_id: uuid.UUID,
        row: asyncpg.Record | None,
        outcome: Outcome,
        reason: str | None,
    ) -> asyncpg.Record | None:
        """The common case in one statement and no transaction of its own: sign the answer,
        then one statement settles the delivery read as ``row`` only if it is still pending
        and heads its case, and queues the answer with it. The row if settled so; None for
        :meth:`_settle_locked` to decide (and to raise what it raises)."""
        if row is None or row["state"] != "pending":
            return None
        answer: tuple[Any, ...] = (None,) * 7
        if row["needs_ack"]:
            envelope = self._answer(agency_id, message_id, row, outcome, reason)
            answer = tuple(self._writer.row(envelope, owner=agency_id))
        try:
            settled = await conn.fetchval(_SETTLE, row["id"], outcome, reason, *answer)
        except asyncpg.UniqueViolationError:  # the answer is in the outbox already
            return None
        return row if settled else None

    async def _settle_locked(
        self,
        conn: Conn,
        agency_id: str,
        message_id: uuid.UUID,
        outcome: Outcome,
        reason: str | None,
    ) -> asyncpg.Record | None:
        """Settle under the delivery's row lock; its row if changed now, None if it was settled
        so before; DeliveryNotFoundError, DeliveryConflictError otherwise."""
        async with conn.transaction():
            row = await conn.fetchrow(
                """SELECT id, case_id, kind, sender, correlation_id, state, needs_ack
                   FROM adapter_deliveries WHERE agency_id = $1 AND message_id = $2
                   FOR UPDATE""",
                agency_id,
                message_id,
            )
            if row is None:
                raise DeliveryNotFoundError(
                    f"no message {message_id} for {agency_id}", agency=agency_id
                )
            if row["state"] != "pending":
                if row["state"] == outcome:
                    return None
                raise DeliveryConflictError(
                    f"message {message_id} is already {row['state']}", agency=agency_id
                )
            earlier = await conn.fetchval(
                """SELECT message_id FROM adapter_deliveries
                   WHERE agency_id = $1 AND case_id = $2 AND state = 'pending' AND id < $3
                   ORDER BY id LIMIT 1""",
                agency_id,
                row["case_id"],
                row["id"],
            )
            if earlier is not None:
                raise DeliveryConflictError(
                    f"settle the case's earlier message {earlier} first",
                    agency=agency_id,
                    case_id=row["case_id"],
                )
            await conn.execute(
                """UPDATE adapter_deliveries
                   SET state = $2, reason = $3, done_at = now(), attempts = attempts + 1
                   WHERE id = $1""",
                row["id"],
                outcome,
                reason,
            )
            if row["needs_ack"]:
                envelope = self._answer(agency_id, message_id, row, outcome, reason)
                await self._writer.add(conn, envelope, owner=agency_id)
        return row

    def _answer(
        self,
        agency_id: str,
        message_id: uuid.UUID,
        row: asyncpg.Record,
        outcome: Outcome,
        reason: str | None,
    ) -> Envelope:
        signer = self._signers[agency_id]
        now = self._clock.now()
        payload: BusAck | BusNack
        if outcome == "accepted":
            payload = BusAck(
                original_message_id=message_id, acknowledged_by=agency_id, acknowledged_at=now
            )
        else:
            text = reason or "rejected by the department"
            payload = BusNack(
                original_message_id=message_id,
                code="rejected_by_department",
                reasons=[
                    NackReason(
                        path="$", rule="rejected_by_department", message=text, message_zh=text
                    )
                ],
                rejected_by=agency_id,
                rejected_at=now,
            )
        unsigned = Envelope(
            message_id=answer_id(agency_id, payload.KIND, message_id),
            kind=payload.KIND,
            schema_version=payload.SCHEMA_VERSION,
            sender=agency_id,
            recipients=[row["sender"]],
            case_id=row["case_id"],
            correlation_id=row["correlation_id"],
            causation_id=str(message_id),
            sent_at=now,
            payload=self._codec.encode_payload(payload.KIND, payload),
            signature=Signature(algorithm=signer.algorithm, key_id=signer.key_id, value=b""),
        )
        return sign_envelope(unsigned, signer, codec=self._codec)


# -- webhooks -------------------------------------------------------------------------------------


@dataclass
class CircuitBreaker:
    """Opens after ``failures`` consecutive failures; after ``open_s`` lets one trial through."""

    failures: int
    open_s: float
    _consecutive: int = 0
    _open_until: float = 0.0

    def allows(self, now: float) -> bool:
        """Whether a request may be tried at ``now`` (monotonic seconds)."""
        return now >= self._open_until

    @property
    def is_open(self) -> bool:
        """Whether the last failures opened the circuit."""
        return self._consecutive >= self.failures

    def success(self) -> None:
        """A request went through: close the circuit."""
        self._consecutive = 0
        self._open_until = 0.0

    def failure(self, now: float) -> None:
        """A request failed; open (again) once the threshold is reached."""
        self._consecutive += 1
        if self._consecutive >= self.failures:
            self._open_until = now + self.open_s


# The columns Settler.settle_read needs come with each head: settling an accepted or rejected
# delivery then takes one statement, not a read and a statement.
_HEADS: Final = """
SELECT d.id, d.message_id, d.case_id, d.kind, d.document, d.attempts,
       d.sender, d.correlation_id, d.needs_ack, d.state,
       EXISTS (SELECT 1 FROM adapter_deliveries f
               WHERE f.agency_id = d.agency_id AND f.case_id = d.case_id
                 AND f.state = 'pending' AND f.id > d.id) AS has_next
FROM adapter_deliveries d
WHERE d.agency_id = $1 AND d.state = 'pending' AND d.next_attempt_at <= now()
  AND NOT EXISTS (SELECT 1 FROM adapter_deliveries e
                  WHERE e.agency_id = d.agency_id AND e.case_id = d.case_id
                    AND e.state = 'pending' AND e.id < d.id)
ORDER BY d.id
LIMIT $2
"""

_ROUND: Final = 50  # heads offered per round

_FAILED: Final = """
UPDATE adapter_deliveries
SET attempts = attempts + 1, last_error = $2,
    next_attempt_at = now() + make_interval(secs => $3)
WHERE id = $1 AND state = 'pending'
"""

_LATENESS: Final = """
SELECT coalesce(extract(epoch FROM now() - min(received_at)), 0)::float8 AS oldest,
       count(*) FILTER (WHERE received_at < now() - make_interval(secs => $2)) AS late
FROM adapter_deliveries WHERE agency_id = $1 AND state = 'pending'
"""


def _reason(status: int, body: bytes, charset: str | None) -> str:
    """A rejection's reason as the department gave it: the JSON body's ``jjyy``, ``reason`` or
    ``yy``, else the body's text (up to 500 characters), else ``HTTP <status>``."""
    try:
        data = json.loads(body)
    except ValueError:  # UnicodeDecodeError included
        data = None
    if isinstance(data, dict):
        for key in ("jjyy", "reason", "yy"):
            if isinstance(data.get(key), str) and data[key]:
                return str(data[key])
    try:
        text = body.decode(charset or "utf-8", errors="replace")
    except LookupError:  # a charset Python does not know
        text = body.decode("utf-8", errors="replace")
    return text.strip()[:500] or f"HTTP {status}"


def webhook_proxy(url: str) -> str | None:
    """The proxy a POST to ``url`` goes through, or None: as ``HTTP_PROXY``, ``HTTPS_PROXY``,
    ``ALL_PROXY`` and ``NO_PROXY`` in the environment say (what httpx, which delivered webhooks
    before, honoured by default). Decided once per deliverer, since its URL never changes;
    aiohttp's ``trust_env`` would read the environment again on every request."""
    parts = urllib.parse.urlsplit(url)
    proxies = urllib.request.getproxies()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass(parts.netloc.rpartition("@")[2]):
        return None
    return proxy if "://" in proxy else f"http://{proxy}"


class WebhookDeliverer(Stoppable):
    """POSTs one agency's pending deliveries to its webhook until stopped."""

    def __init__(
        self,
        endpoint: AgencyEndpoint,
        *,
        config: AdapterConfig,
        pool: asyncpg.Pool,
        settler: Settler,
    ) -> None:
        if endpoint.webhook_url is None:
            raise CasebusError(f"{endpoint.agency_id} has no webhook", agency=endpoint.agency_id)
        super().__init__()
        self._endpoint = endpoint
        self._url = endpoint.webhook_url
        self._proxy = webhook_proxy(self._url)
        self._config = config
        self._pool = pool
        self._settler = settler
        self._breaker = CircuitBreaker(config.breaker_failures, config.breaker_open_s)
        self._retry = Backoff(
            initial_s=config.retry_initial_s, max_s=config.retry_max_s, jitter=EQUAL_JITTER
        )
        self._wake = asyncio.Event()
        self._log = log.bind(agency=endpoint.agency_id, url=self._url)

    def wake(self) -> None:
        """Look for work now (a message was stored)."""
        self._wake.set()

    def stop(self) -> None:
        """Finish the request in flight, then return from :meth:`run`."""
        self.request_stop()

    def request_stop(self) -> None:
        """Ask :meth:`run` to finish the request in flight; a poll wait ends at once."""
        super().request_stop()
        self._wake.set()

    def session(self) -> aiohttp.ClientSession:
        """The HTTP client :meth:`run` delivers with (the caller closes it): a whole request
        within ``webhook_timeout_s``, the environment's proxy decided once
        (:func:`webhook_proxy`), certificates verified. An idle connection is kept 2 s only:
        aiohttp does not retry a POST on a kept-alive connection the server has just closed,
        and common servers close idle ones after 5 s (uvicorn) or more (Tomcat 20 s, nginx
        75 s), so a connection is let go well before any of them would drop it."""
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=100, keepalive_timeout=2.0),
            timeout=aiohttp.ClientTimeout(total=self._config.webhook_timeout_s),
        )

    async def run(self) -> None:
        """Deliver until :meth:`stop`; never raises for HTTP or database failures."""
        agency = self._endpoint.agency_id
        counted = -float("inf")
        try:
            async with self.session() as session:
                while not self.stopping:
                    busy = False
                    try:
                        busy = await self.deliver_round(session)
                        # A gauge and an alert: every lateness_interval_s, not after each
                        # round of a busy one (a query and a connection each).
                        if time.monotonic() - counted >= self._config.lateness_interval_s:
                            counted = time.monotonic()
                            await self._lateness()
                    except Exception as e:  # a service loop: log, pause, go on
                        self._log.warning("adapter.delivery_round_failed", error=f"{e!r}")
                    if not busy:
                        await self._pause(self._config.poll_interval_s)
        finally:
            BREAKER_OPEN.labels(agency=agency).set(0)

    async def _pause(self, delay_s: float) -> None:
        await pause(delay_s, self._wake)
        self._wake.clear()

    async def deliver_round(self, session: aiohttp.ClientSession) -> bool:
        """Offer each due head of a case once; True if another round may find one due now."""
        agency = self._endpoint.agency_id
        if not self._breaker.allows(time.monotonic()):
            return False
        rows = await self._pool.fetch(_HEADS, agency, _ROUND)
        # Each row heads a different case: cases go in parallel, each case one at a time.
        gate = asyncio.Semaphore(self._config.webhook_concurrency)

        async def one(row: asyncpg.Record) -> bool:
            async with gate:
                if self.stopping or not self._breaker.allows(time.monotonic()):
                    return False
                return await self._deliver(session, row)

        settled = await asyncio.gather(*(one(row) for row in rows))
        # Another round at once only if one can find something due now: a settled head whose
        # case has a next message, or a full round. What is stored meanwhile wakes us; going
        # on regardless cost an empty query after every delivery.
        if len(rows) == _ROUND:
            return any(settled)
        return any(done and row["has_next"] for done, row in zip(settled, rows, strict=True))

    async def _deliver(self, session: aiohttp.ClientSession, row: asyncpg.Record) -> bool:
        agency = self._endpoint.agency_id
        body = json.dumps(json.loads(row["document"]), ensure_ascii=False).encode()
        stamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            TIMESTAMP_HEADER: stamp,
            SIGNATURE_HEADER: sign_webhook(self._endpoint.webhook_secret, stamp, body),
            "X-Casebus-Message-Id": str(row["message_id"]),
        }
        bound = self._log.bind(message_id=str(row["message_id"]), case_id=row["case_id"])
        error: str
        try:
            # Bytes, so the body goes as it was signed, with a Content-Length; a redirect is
            # not followed (it is a failure, retried), as httpx did not follow one either.
            async with session.post(
                self._url, data=body, headers=headers, allow_redirects=False, proxy=self._proxy
            ) as response:
                status = response.status
                answer = await response.read()  # all of it: the connection goes back reusable
                charset = response.charset
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            error = f"{type(e).__name__}: {e}"
            if isinstance(e, TimeoutError) and not str(e):
                limit = self._config.webhook_timeout_s
                error += f"no answer within webhook_timeout_s = {limit} s"
        else:
            if 200 <= status < 300:
                self._closed()
                await self._settle(row, "accepted", None)
                return True
            if 400 <= status < 500 and status not in _RETRIED_4XX:
                self._closed()
                await self._settle(row, "rejected", _reason(status, answer, charset))
                return True
            error = f"HTTP {status}"
        self._breaker.failure(time.monotonic())
        BREAKER_OPEN.labels(agency=agency).set(1 if self._breaker.is_open else 0)
        DELIVERIES.labels(agency=agency, outcome="failed").inc()
        delay = self._retry.delay(row["attempts"] + 1)  # the attempt that just failed counts
        await self._pool.execute(_FAILED, row["id"], error[:2000], delay)
        bound.warning("adapter.webhook_failed", error=error, retry_in_s=round(delay, 3))
        return False

    def _closed(self) -> None:
        self._breaker.success()
        BREAKER_OPEN.labels(agency=self._endpoint.agency_id).set(0)

    async def _settle(self, row: asyncpg.Record, outcome: Outcome, reason: str | None) -> None:
        try:
            await self._settler.settle_read(
                self._pool, self._endpoint.agency_id, row, outcome, reason=reason
            )
        except DeliveryConflictError as e:  # settled by a pull meanwhile: nothing left to do
            self._log.info("adapter.settle_conflict", error=str(e))

    async def _lateness(self) -> None:
        await record_lateness(self._pool, self._endpoint.agency_id, self._config.max_wait_s)


async def record_lateness(pool: asyncpg.Pool, agency_id: str, max_wait_s: float) -> None:
    """Update the lateness gauges of one agency; log an alert when messages wait too long."""
    row = await pool.fetchrow(_LATENESS, agency_id, max_wait_s)
    if row is None:
        return
    OLDEST_PENDING.labels(agency=agency_id).set(row["oldest"])
    DELIVERY_LATE.labels(agency=agency_id).set(row["late"])
    if row["late"]:
        log.warning(
            "adapter.delivery_late",
            agency=agency_id,
            late=row["late"],
            oldest_s=round(row["oldest"], 1),
            max_wait_s=max_wait_s,
        )
