"""The transactional outbox (design §6): adapters write messages with their own state; a relay
publishes them to the submit topic: ``<prefix>.submit``, or the sender's own
``<prefix>.submit.<sender>`` with ``CASEBUS_SUBMIT_TOPICS=per_agency``.

An adapter calls :meth:`OutboxWriter.add` inside the database transaction that changes its own
state, so a message exists if and only if the state change committed. :class:`OutboxRelay`
then claims unpublished rows in id order (``FOR UPDATE SKIP LOCKED``, so several relays can run
at once), publishes them with an idempotent ``acks=all`` producer, waits for the acks and marks
the rows published in the same transaction that claimed them.

Guarantees, and their limits:

- **At least once.** A crash (or a lost connection) after Kafka acked a row but before the
  marking transaction committed leaves the row unpublished, so it is published again on
  restart. That is by design: the router deduplicates by ``message_id``.
- **Per-case order.** Rows of one ``(owner, case_id)`` are published in id order: within a round
  each case's rows are sent one after another, each only after the previous one was acked, and
  a row that fails holds back every later row of its case until it is published. A row whose
  earlier case-mate is claimed by another relay is left for a later round. Cases run in
  parallel. Two transactions that write the same case *concurrently* have no defined order;
  an adapter serialises the writes of a case (it locks the case's own row).
- **Kafka down.** Rows stay pending, ``attempts`` and ``last_error`` record each failure, and
  the relay backs off exponentially with jitter (capped) until Kafka answers again.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Final
from uuid import UUID

import asyncpg
import structlog
from aiokafka import AIOKafkaProducer
from prometheus_client import Counter, Gauge

from bus.codec import Codec, default_codec
from bus.db import Conn
from bus.errors import CasebusError, OutboxConflictError, OutboxMisuseError, TransportError
from bus.lifecycle import EQUAL_JITTER, BackgroundService, Backoff, Every, pause
from bus.models import Envelope
from bus.settings import Settings

__all__ = [
    "OUTBOX_COLUMNS",
    "OUTBOX_PENDING",
    "OUTBOX_PUBLISHED",
    "OUTBOX_PUBLISH_ERRORS",
    "OutboxRelay",
    "OutboxRow",
    "OutboxWriter",
    "RelayRound",
]

log = structlog.get_logger("casebus.outbox")

# prometheus_client registers metrics in one process-wide registry: define each exactly once.
OUTBOX_PUBLISHED: Final = Counter(
    "casebus_outbox_published_total",
    "Outbox rows published to Kafka and marked published.",
    ["owner"],
)
"""Rows published and marked, by owner."""
OUTBOX_PUBLISH_ERRORS: Final = Counter(
    "casebus_outbox_publish_errors_total",
    "Failed attempts to publish an outbox row (the row stays pending).",
    ["owner"],
)
"""Failed publish attempts, by owner."""
OUTBOX_PENDING: Final = Gauge(
    "casebus_outbox_pending",
    "Outbox rows not yet published, as the relay last counted them.",
    ["owner"],
)
"""Rows waiting to be published, by owner."""


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """An outbox row's columns as written, in the order of :data:`OUTBOX_COLUMNS` (iterate it
    for a statement's arguments)."""

    owner: str
    message_id: UUID
    case_id: str
    topic: str
    key: bytes
    value: bytes
    headers: str
    """The CloudEvents headers as a JSON array of ``[name, value]`` (the ``jsonb`` column)."""

    def __iter__(self) -> Iterator[Any]:
        return iter(
            (
                self.owner,
                self.message_id,
                self.case_id,
                self.topic,
                self.key,
                self.value,
                self.headers,
            )
        )


OUTBOX_COLUMNS: Final = "owner, message_id, case_id, topic, key, value, headers"
"""The columns of :class:`OutboxRow`, in its order."""


_INSERT: Final = f"""
INSERT INTO outbox ({OUTBOX_COLUMNS})
VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)
ON CONFLICT (message_id) DO NOTHING
RETURNING id
"""

_EXISTING: Final = "SELECT owner, topic, key, value FROM outbox WHERE message_id = $1"


_NO_OWNER: Final = "owner must name the adapter or agency writing the row"


def _context(envelope: Envelope, owner: str) -> dict[str, str]:
    return {"message_id": str(envelope.message_id), "case_id": envelope.case_id, "agency": owner}


class OutboxWriter:
    """Adds signed envelopes to the outbox inside the caller's database transaction."""

    def __init__(self, settings: Settings, *, codec: Codec | None = None) -> None:
        self._settings = settings
        self._codec = codec if codec is not None else default_codec()

    def topic_for(self, sender: str) -> str:
        """The topic a row of ``sender`` is published to (the row keeps it)."""
        return self._settings.topic_submit(sender)

    def row(self, envelope: Envelope, *, owner: str, value: bytes | None = None) -> OutboxRow:
        """The outbox row of ``envelope`` (already signed) as :meth:`add` writes it, for a
        caller that writes it in a statement of its own together with its own state (the
        adapter's submissions); OutboxMisuseError for an unsigned envelope or no owner.

        ``value`` is the envelope's Kafka value when the caller has it already
        (:func:`~bus.signing.sign_and_encode` gives both): it is not encoded again."""
        context = _context(envelope, owner)
        if not owner:
            raise OutboxMisuseError(_NO_OWNER, **context)
        if not envelope.signature.value:
            raise OutboxMisuseError(
                "the envelope must be signed before it enters the outbox", **context
            )
        headers = json.dumps(
            [[name, raw.decode()] for name, raw in self._codec.cloudevents_headers(envelope)],
            ensure_ascii=False,
        )
        return OutboxRow(
            owner=owner,
            message_id=envelope.message_id,
            case_id=envelope.case_id,
            topic=self.topic_for(envelope.sender),
            key=self._codec.kafka_key(envelope),
            value=self._codec.encode_envelope(envelope) if value is None else value,
            headers=headers,
        )

    async def add(self, conn: Conn, envelope: Envelope, *, owner: str) -> bool:
        """Queue ``envelope`` (already signed) for publishing; True if added, False if a no-op.

        Runs on ``conn`` inside the caller's open transaction, so the message commits or rolls
        back with the caller's own writes. Adding a ``message_id`` again with the same bytes
        changes nothing; with other bytes it raises :class:`OutboxConflictError`.
        """
        context = _context(envelope, owner)
        if not owner:
            raise OutboxMisuseError(_NO_OWNER, **context)
        if not conn.is_in_transaction():
            raise OutboxMisuseError(
                "OutboxWriter.add must run inside the caller's transaction, with its own writes",
                **context,
            )
        row = self.row(envelope, owner=owner)
        topic, key, value = row.topic, row.key, row.value
        bound = log.bind(
            message_id=context["message_id"],
            case_id=envelope.case_id,
            owner=owner,
            topic=topic,
        )
        row_id = await conn.fetchval(_INSERT, *row)
        if row_id is not None:
            bound.debug("outbox.added", outbox_id=row_id)
            return True
        existing = await conn.fetchrow(_EXISTING, envelope.message_id)
        if existing is None:
            # The conflicting row vanished between the two statements (a cleanup job).
            raise TransportError(
                "outbox row changed under us; try again", retriable=True, **context
            )
        stored = (
            existing["owner"],
            existing["topic"],
            bytes(existing["key"]),
            bytes(existing["value"]),
        )
        if stored != (owner, topic, key, value):
            raise OutboxConflictError(
                f"message_id {envelope.message_id} is already in the outbox with other content",
                **context,
            )
        bound.debug("outbox.duplicate")
        return False


@dataclass(frozen=True, slots=True)
class RelayRound:
    """What one relay round did with the rows it claimed."""

    claimed: int
    published: int
    failed: int
    deferred: int
    """Claimed but held back behind an earlier row of their case (failed, or another relay's)."""


@dataclass(frozen=True, slots=True)
class _Row:
    id: int
    owner: str
    message_id: UUID
    case_id: str
    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]
    blocked: bool

    def context(self) -> dict[str, str]:
        """What every event about this row says: which message, case, owner and topic."""
        return {
            "message_id": str(self.message_id),
            "case_id": self.case_id,
            "owner": self.owner,
            "topic": self.topic,
        }


# A row is "blocked" when an earlier pending row of its case is not in this claim: another relay
# holds it (SKIP LOCKED skipped it), so sending this one now could overtake it.
_CLAIM: Final = """
WITH claimed AS (
    SELECT id, owner, message_id, case_id, topic, key, value, headers
    FROM outbox
    WHERE published_at IS NULL AND ($2::text IS NULL OR owner = $2::text)
    ORDER BY id
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
SELECT c.*,
       EXISTS (SELECT 1 FROM outbox o
               WHERE o.published_at IS NULL AND o.owner = c.owner AND o.case_id = c.case_id
                 AND o.id < c.id AND o.id NOT IN (SELECT id FROM claimed)) AS blocked
FROM claimed c
ORDER BY c.id
"""

_MARK_PUBLISHED: Final = """
UPDATE outbox SET published_at = now(), attempts = attempts + 1, last_error = NULL
WHERE id = ANY($1::bigint[])
"""

# How often, at most, a relay refreshes the pending gauge; and once more as it stops.
_COUNT_EVERY_S: Final = 1.0

_MARK_FAILED: Final = "UPDATE outbox SET attempts = attempts + 1, last_error = $2 WHERE id = $1"

_PENDING: Final = """
SELECT owner, count(*) AS n FROM outbox
WHERE published_at IS NULL AND ($1::text IS NULL OR owner = $1::text)
GROUP BY owner
"""


class OutboxRelay(BackgroundService):
    """Publishes the outbox to Kafka until stopped; safe to run as several replicas at once.

    Use as ``async with OutboxRelay(...):`` or ``start()`` / ``stop()``. ``owner`` limits the
    relay to one owner's rows (None: every owner's). Stopping finishes the round in flight and
    closes the producer.
    """

    _misuse: ClassVar[type[CasebusError]] = OutboxMisuseError

    def __init__(
        self,
        settings: Settings,
        *,
        pool: asyncpg.Pool,
        owner: str | None = None,
        batch_size: int = 100,
        poll_interval_s: float = 0.5,
        backoff_initial_s: float = 0.1,
        backoff_max_s: float = 5.0,
        request_timeout_ms: int = 10_000,
    ) -> None:
        if batch_size < 1:
            raise OutboxMisuseError(f"batch_size must be at least 1, not {batch_size}")
        if poll_interval_s <= 0 or backoff_initial_s <= 0 or backoff_max_s < backoff_initial_s:
            raise OutboxMisuseError("poll and backoff intervals must be positive, initial <= max")
        super().__init__(task_name="casebus-outbox-relay")
        self._settings = settings
        self._pool = pool
        self._owner = owner
        self._batch_size = batch_size
        self._poll_interval_s = poll_interval_s
        self._backoff = Backoff(
            initial_s=backoff_initial_s, max_s=backoff_max_s, jitter=EQUAL_JITTER
        )
        self._request_timeout_ms = request_timeout_ms
        # aiokafka gives up on a send after about two request timeouts (metadata wait, then the
        # batch's own expiry); this outer limit only guards the claimed rows' locks against a hang.
        self._send_timeout_s = 2 * request_timeout_ms / 1000 + 5
        self._producer: Any = None
        self._owners_seen: set[str] = set() if owner is None else {owner}
        self._wake = asyncio.Event()
        self._count_pending = Every(_COUNT_EVERY_S)
        self._log = log.bind(relay_owner=owner or "*")

    # -- lifecycle ------------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Ask the relay to finish the round in flight and return; a poll wait ends at once."""
        super().request_stop()
        self._wake.set()

    def wake(self) -> None:
        """Start the next round now rather than after the poll interval (e.g. after a commit)."""
        self._wake.set()

    async def run(self) -> None:
        """Publish rounds until :meth:`stop`; never raises for Kafka or database failures."""
        failures = 0
        self._log.info("outbox.relay_started", bootstrap=self._settings.kafka_bootstrap)
        try:
            while not self.stopping:
                try:
                    result: RelayRound | None = await self.publish_pending()
                except Exception as e:  # a service loop: log, back off, try again
                    self._log.warning("outbox.relay_failed", error=f"{type(e).__name__}: {e}")
                    result = None
                if result is None or result.failed:
                    failures += 1
                    delay = self._backoff.delay(failures)
                    self._log.debug("outbox.backoff", failures=failures, retry_in_s=delay)
                    await self.pause(delay)  # a wake-up does not cut a backoff short
                elif result.claimed < self._batch_size:
                    # Everything committed before the round began was claimed in it; what was
                    # committed since woke us, so the pause ends at once. Going on regardless
                    # cost an empty round (four round trips) after every burst.
                    failures = 0
                    await self._poll_pause()
                else:
                    failures = 0  # a full batch: more rows may be waiting, go on at once
        finally:
            await self._count_pending_at_stop()
            await self._close_producer()
            self._log.info("outbox.relay_stopped")

    async def _poll_pause(self) -> None:
        """Until the poll interval passed, :meth:`wake` or a stop request."""
        await pause(self._poll_interval_s, self._wake)
        if not self.stopping:
            self._wake.clear()

    # -- one round ------------------------------------------------------------------------------

    async def publish_pending(self) -> RelayRound:
        """One round: claim up to ``batch_size`` pending rows, publish them, mark them; commit."""
        async with self._pool.acquire() as conn:
            async with conn.transaction():
                records = await conn.fetch(_CLAIM, self._batch_size, self._owner)
                rows = [_row(r) for r in records]
                outcome = await self._publish(rows) if rows else {}
                published = [row for row in rows if row.id in outcome and outcome[row.id] is None]
                failed = [(row, outcome[row.id]) for row in rows if outcome.get(row.id)]
                if published:
                    await conn.execute(_MARK_PUBLISHED, [row.id for row in published])
                if failed:
                    await conn.executemany(
                        _MARK_FAILED, [(row.id, (error or "")[:2000]) for row, error in failed]
                    )
            # Count only once the transaction committed: the rows are really marked now.
            for row in published:
                OUTBOX_PUBLISHED.labels(owner=row.owner).inc()
            for row, _ in failed:
                OUTBOX_PUBLISH_ERRORS.labels(owner=row.owner).inc()
            self._owners_seen.update(row.owner for row in rows)
            # The gauge is read by a scraper every few seconds: count the pending rows at most
            # once a second (a statement each time), not every round or poll.
            if self._count_pending.due():
                await self._refresh_pending(conn)
        if failed:
            await self._close_producer()  # a fresh producer next round clears any fatal state
        return RelayRound(
            claimed=len(rows),
            published=len(published),
            failed=len(failed),
            deferred=len(rows) - len(published) - len(failed),
        )

    async def _publish(self, rows: list[_Row]) -> dict[int, str | None]:
        """Send each case's rows in order, one ack at a time; return row id → error (None: ok)."""
        chains: dict[tuple[str, str], list[_Row]] = {}
        for row in rows:
            if not row.blocked:
                chains.setdefault((row.owner, row.case_id), []).append(row)
        outcome: dict[int, str | None] = {}
        if not chains:
            return outcome
        try:
            producer = await self._ensure_producer()
        except Exception as e:
            error = f"Kafka unavailable: {type(e).__name__}: {e}"
            for chain in chains.values():
                outcome[chain[0].id] = error
                self._failed(chain[0], error)
            return outcome

        async def send_chain(chain: list[_Row]) -> None:
            for row in chain:
                try:
                    await asyncio.wait_for(
                        producer.send_and_wait(
                            row.topic, row.value, key=row.key, headers=row.headers
                        ),
                        self._send_timeout_s,
                    )
                except Exception as e:  # any failure holds the rest of the case back
                    outcome[row.id] = f"{type(e).__name__}: {e}"
                    self._failed(row, outcome[row.id] or "")
                    return
                outcome[row.id] = None
                log.info("outbox.published", **row.context())

        await asyncio.gather(*(send_chain(chain) for chain in chains.values()))
        return outcome

    def _failed(self, row: _Row, error: str) -> None:
        log.warning("outbox.publish_failed", **row.context(), error=error)

    async def _ensure_producer(self) -> Any:
        if self._producer is None:
            producer = AIOKafkaProducer(
                **self._settings.kafka_client_options(),
                acks="all",
                enable_idempotence=True,
                request_timeout_ms=self._request_timeout_ms,
                client_id="casebus-outbox-relay",
            )
            try:
                await producer.start()
            except BaseException:
                await producer.stop()  # close what start() opened; nothing is pending
                raise
            self._producer = producer
        return self._producer

    async def _close_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                await producer.stop()
            except Exception as e:
                self._log.warning("outbox.producer_close_failed", error=str(e))

    async def _count_pending_at_stop(self) -> None:
        """The gauge as the relay leaves it; best effort (the database may be what stopped)."""
        try:
            async with self._pool.acquire(timeout=2.0) as conn:
                await asyncio.wait_for(self._refresh_pending(conn), 2.0)
        except Exception as e:
            self._log.debug("outbox.pending_uncounted", error=f"{type(e).__name__}: {e}")

    async def _refresh_pending(self, conn: Conn) -> None:
        counts = {r["owner"]: r["n"] for r in await conn.fetch(_PENDING, self._owner)}
        self._owners_seen.update(counts)
        for owner in self._owners_seen:
            OUTBOX_PENDING.labels(owner=owner).set(counts.get(owner, 0))


def _row(record: asyncpg.Record) -> _Row:
    return _Row(
        id=record["id"],
        owner=record["owner"],
        message_id=record["message_id"],
        case_id=record["case_id"],
        topic=record["topic"],
        key=bytes(record["key"]),
        value=bytes(record["value"]),
        headers=[(name, text.encode()) for name, text in json.loads(record["headers"])],
        blocked=record["blocked"],
    )
