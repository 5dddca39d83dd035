"""Bus → department by webhook: POST each agency's due deliveries to its department.

:class:`WebhookDeliverer` offers each pending head of a case (``adapter_deliveries``, stored by
the inbox reader of :mod:`adapters._framework.outbound`) as an HMAC-signed POST, settles it by
the answer (:class:`~adapters._framework.outbound.Settler`), and retries the rest with
exponential backoff and jitter behind a per-agency circuit breaker.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Final

import aiohttp
import asyncpg
import structlog
from prometheus_client import Gauge

from adapters._framework.config import AdapterConfig, AgencyEndpoint
from adapters._framework.outbound import (
    DELIVERIES,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Outcome,
    Settler,
    sign_webhook,
)
from bus.errors import CasebusError, DeliveryConflictError
from bus.lifecycle import EQUAL_JITTER, Backoff, Every, Stoppable, pause

__all__ = [
    "BREAKER_OPEN",
    "DELIVERY_LATE",
    "OLDEST_PENDING",
    "CircuitBreaker",
    "WebhookDeliverer",
    "record_lateness",
    "webhook_proxy",
]

log = structlog.get_logger("casebus.adapter.outbound")  # as before the split: same log lines

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
        lateness = Every(self._config.lateness_interval_s)
        try:
            async with self.session() as session:
                while not self.stopping:
                    busy = False
                    try:
                        busy = await self.deliver_round(session)
                        # A gauge and an alert: every lateness_interval_s, not after each
                        # round of a busy one (a query and a connection each).
                        if lateness.due():
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
