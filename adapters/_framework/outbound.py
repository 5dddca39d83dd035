"""Bus → department: store inbox messages as pending deliveries, deliver them, answer the bus.

Each message read from an agency's inbox becomes one row of ``adapter_deliveries`` (in the
reader's own transaction, so a message is stored exactly once). From there a department gets it
either by webhook (:mod:`adapters._framework.webhooks`: HMAC-signed POSTs, retries with
exponential backoff and jitter, a circuit breaker) or by pull (``GET /v1/inbox``). A case's
messages are offered one at a time in arrival order: a later one waits until the earlier one
is settled.

Settling a delivery — the department accepted it (2xx, or a pull ack) or rejected it (a 4xx
with a reason, or a pull reject) — writes ``bus.ack`` or ``bus.nack`` (code
``rejected_by_department``) to the outbox in the same transaction, signed as the agency.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Final, Literal

import asyncpg
import structlog
from aiokafka import ConsumerRecord
from prometheus_client import Counter

from adapters._framework.vocabulary import Vocabulary
from bus.codec import Codec, default_codec
from bus.db import Conn
from bus.errors import (
    DecodeError,
    DeliveryConflictError,
    DeliveryNotFoundError,
    ValidationFailedError,
)
from bus.inbox import InboxHandler
from bus.models import SIGNAL_KINDS, BusAck, BusNack, Envelope, NackReason, Signature
from bus.models.bus_kinds import BusDelivered
from bus.outbox import OUTBOX_COLUMNS, OutboxWriter
from bus.settings import Settings
from bus.signing import Signer, sign_envelope
from bus.sla.clock import Clock, RealClock

__all__ = [
    "DELIVERIES",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "Settler",
    "answer_id",
    "inbox_handler",
    "pending_deliveries",
    "sign_webhook",
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


_NAMESPACE: Final = uuid.UUID("5d1d7a3c-7a49-4c39-9d3e-0b7c1f2d6a11")


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
    """The :class:`~bus.inbox.InboxReader` handler storing each message as a pending delivery.

    ``on_stored(agency_id)`` is called after a delivery's row is written, inside the reader's
    transaction: the row is visible to others only once the reader commits (its
    ``on_committed``)."""
    the_codec = codec or default_codec()

    async def handle(conn: Conn, envelope: Envelope, record: ConsumerRecord[bytes, bytes]) -> None:
        try:
            _, _, model = the_codec.decode_payload_model(envelope.payload, kind=envelope.kind)
        except (DecodeError, ValidationFailedError) as e:
            log.warning("adapter.undecodable_payload", error=str(e), agency=agency_id)
            return
        if isinstance(model, BusDelivered) and model.original_kind in SIGNAL_KINDS:
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
