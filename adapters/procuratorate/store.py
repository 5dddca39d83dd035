"""Bus → 人民检察院: the procuratorate's own case store.

Besides the deliveries every adapter makes (webhook or pull), the procuratorate keeps what it is
sent: each message of the chain, per case, in ``procuratorate_events`` (payload in the bus's field
names, for the timeline, the screening and the statistics), and each ``audit.tree_head`` in
``procuratorate_tree_heads``. A second inbox reader with a consumer name of its own does the
storing, so it commits exactly once per message, independently of the department's deliveries;
:func:`store_reader` is that reader, listed in the procuratorate's spec.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final

import asyncpg
import structlog
from aiokafka import ConsumerRecord

from adapters._framework.service import AdapterService
from bus.audit.events import decode_leaf, leaf_envelope
from bus.codec import Codec, default_codec
from bus.db import Conn
from bus.errors import DecodeError, ValidationFailedError
from bus.inbox import InboxHandler, InboxReader
from bus.models import AuditTreeHead, Envelope, PayloadModel
from bus.models.bus_kinds import BusDelivered

__all__ = ["STORE_CONSUMER", "record_event", "store_handler", "store_reader"]

log = structlog.get_logger("casebus.adapter.procuratorate")

STORE_CONSUMER: Final = "procuratorate.store.{agency}"
"""The consumer name (idempotency key) of the store reader of one procuratorate."""

_NOT_KEPT: Final = ("bus.",)


async def record_event(
    db: Conn | asyncpg.Pool,
    agency_id: str,
    *,
    message_id: Any,
    kind: str,
    case_id: str,
    sender: str,
    recipients: Sequence[str],
    sent_at: datetime,
    payload: Mapping[str, Any],
) -> bool:
    """Keep one message of a case; True if it is new (a message is kept once)."""
    inserted = await db.fetchval(
        """INSERT INTO procuratorate_events
           (agency_id, message_id, kind, case_id, sender, recipients, sent_at, payload)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb)
           ON CONFLICT (agency_id, message_id) DO NOTHING RETURNING true""",
        agency_id,
        message_id,
        kind,
        case_id,
        sender,
        list(recipients),
        sent_at,
        json.dumps(dict(payload), ensure_ascii=False).replace("\\u0000", "\ufffd"),
    )
    return bool(inserted)


async def _keep(conn: Conn, agency_id: str, envelope: Envelope, model: PayloadModel) -> None:
    """Keep ``envelope`` with its payload read as ``model``, in the bus's field names."""
    await record_event(
        conn,
        agency_id,
        message_id=envelope.message_id,
        kind=envelope.kind,
        case_id=envelope.case_id,
        sender=envelope.sender,
        recipients=envelope.recipients,
        sent_at=envelope.sent_at,
        payload=model.model_dump(mode="json"),
    )


async def _keep_own(conn: Conn, agency_id: str, receipt: BusDelivered, codec: Codec) -> None:
    """Keep a message the procuratorate sent itself (the bus sends it no copy, only a receipt):
    the signed envelope comes from the audit leaf the receipt points at."""
    leaf = await conn.fetchval(
        "SELECT leaf FROM audit_entries WHERE message_id = $1 AND event_kind = 'accepted'",
        receipt.original_message_id,
    )
    value = leaf_envelope(decode_leaf(bytes(leaf))) if leaf is not None else None
    if value is None:
        log.warning(
            "procuratorate.own_message_unaudited", message_id=str(receipt.original_message_id)
        )
        return
    own = codec.decode_envelope(value)
    _, _, model = codec.decode_payload_model(own.payload, kind=own.kind)
    await _keep(conn, agency_id, own, model)


def store_handler(agency_id: str, *, codec: Codec | None = None) -> InboxHandler:
    """The inbox handler keeping chain events and tree heads for the procuratorate's queries."""
    the_codec = codec or default_codec()

    async def handle(conn: Conn, envelope: Envelope, record: ConsumerRecord[bytes, bytes]) -> None:
        try:
            _, _, model = the_codec.decode_payload_model(envelope.payload, kind=envelope.kind)
        except (DecodeError, ValidationFailedError) as e:
            log.warning("procuratorate.undecodable_payload", error=str(e), agency=agency_id)
            return
        if isinstance(model, BusDelivered):
            if not model.original_kind.startswith(_NOT_KEPT):
                await _keep_own(conn, agency_id, model, the_codec)
            return
        if envelope.kind.startswith(_NOT_KEPT):
            return
        if isinstance(model, AuditTreeHead):
            await conn.execute(
                """INSERT INTO procuratorate_tree_heads
                   (agency_id, tree_size, root_hash, checkpoint, issued_at)
                   VALUES ($1, $2, $3, $4, $5) ON CONFLICT (agency_id, tree_size) DO NOTHING""",
                agency_id,
                model.tree_size,
                model.root_hash,
                model.checkpoint,
                model.issued_at,
            )
            return
        await _keep(conn, agency_id, envelope, model)
        log.info(
            "procuratorate.kept",
            agency=agency_id,
            message_id=str(envelope.message_id),
            case_id=envelope.case_id,
            kind=envelope.kind,
        )

    return handle


def store_reader(service: AdapterService, agency_id: str) -> InboxReader:
    """The reader keeping ``agency_id``'s case store (see :func:`store_handler`)."""
    return InboxReader(
        service.settings,
        agency_id=agency_id,
        consumer_name=STORE_CONSUMER.format(agency=agency_id),
        handler=store_handler(agency_id),
        pool=service.pool,
        poll_timeout_ms=200,
    )
