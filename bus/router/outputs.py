"""What the router writes for a verdict: audit leaves, receipts, nacks, dead letters.

Ids of everything the router creates are derived from what it reacts to (UUIDv5), so a batch
re-run after a crash produces the same receipt and nack ids, and idempotent consumers drop
the second copy if one ever escapes a transaction.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bus.audit.events import message_leaf
from bus.audit.log import AuditRecord
from bus.codec import Codec, cloudevents_headers_of
from bus.errors import Problem
from bus.models import SIGNAL_KINDS, Envelope, Signature
from bus.models.bus_kinds import BusDelivered, BusNack, NackReason
from bus.router.classify import record_size
from bus.router.verdict import Accepted, Refused, Verdict
from bus.settings import Settings
from bus.signing import DOMAIN_PREFIX, Signer, sign_and_encode

__all__ = ["BUS_AGENCY", "OVERSIZE_PREFIX_BYTES", "Outputs", "Send", "rejection_id"]

BUS_AGENCY = "casebus"
OVERSIZE_PREFIX_BYTES = 4096
"""How much of a too-large record its dead letter and audit entry keep, beside its digest."""
_NS = uuid.UUID("5b3f5e2a-7c1d-4c55-9a57-63617365b075")


def _id(purpose: str, ref: str) -> uuid.UUID:
    return uuid.uuid5(_NS, f"{purpose}:{ref}")


_NS_BYTES = _NS.bytes


def _id_text(purpose: str, ref: str) -> str:
    """``str(_id(purpose, ref))`` without making the UUID: RFC 4122 §4.3 (SHA-1 of the
    namespace and the name, version 5, the variant bits) written out directly. One receipt id
    per accepted message; the uuid module's object and its str() were 2 % of the router's CPU."""
    name = f"{purpose}:{ref}".encode()
    d = bytearray(hashlib.sha1(_NS_BYTES + name, usedforsecurity=False).digest()[:16])
    d[6] = (d[6] & 0x0F) | 0x50
    d[8] = (d[8] & 0x3F) | 0x80
    h = d.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def rejection_id(verdict: Refused) -> uuid.UUID:
    """The audit id of a rejected or dead-lettered submission: one per distinct byte string."""
    return _id(verdict.outcome, verdict.value_sha256.hex())


@dataclass(frozen=True, slots=True)
class Send:
    """One record the router produces in its Kafka transaction."""

    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


def _problems_json(problems: Sequence[Problem]) -> list[dict[str, Any]]:
    return [p.as_dict() for p in problems]


MAX_REPORTED_PROBLEMS = 100
"""Problems a nack or a dead letter's reason lists; the rest are counted. A payload with
thousands of faults must not make a nack too large to write (every problem stays in the audit
log)."""


def _bounded(problems: Sequence[Problem]) -> list[Problem]:
    if len(problems) <= MAX_REPORTED_PROBLEMS:
        return list(problems)
    more = len(problems) - MAX_REPORTED_PROBLEMS + 1
    return [
        *problems[: MAX_REPORTED_PROBLEMS - 1],
        Problem(
            "*",
            "more_problems",
            f"{more} more problems; the audit log lists every one",
            more,
            f"另有 {more} 个问题，审计日志中有完整列表",
        ),
    ]


def _digest_summary(v: Refused) -> dict[str, Any]:
    """What the audit log and the dead letter say of a record too large to keep whole."""
    return {
        "sha256": v.value_sha256.hex(),
        "size": len(v.value),
        "record_size": record_size(v.record),
        "prefix": base64.b64encode(v.value[:OVERSIZE_PREFIX_BYTES]).decode("ascii"),
        "stored_in": "dead_letter_bodies",
    }


def _utc_millis(at: datetime) -> datetime:
    """``at`` as the models hold an instant for the wire: UTC, whole milliseconds."""
    if at.tzinfo is UTC and not at.microsecond % 1000:
        return at  # a broker timestamp (received_at) already is
    at = at.astimezone(UTC)
    return at.replace(microsecond=at.microsecond // 1000 * 1000)


def _source(verdict: Verdict) -> dict[str, Any]:
    r = verdict.record
    return {"topic": r.topic, "partition": r.partition, "offset": r.offset}


class Outputs:
    """Builds the router's own messages, signed as the bus."""

    def __init__(self, settings: Settings, *, signer: Signer, codec: Codec) -> None:
        self._settings = settings
        self._signer = signer
        self._codec = codec

    def _envelope(
        self,
        payload: Any,
        *,
        message_id: uuid.UUID,
        recipient: str,
        case_id: str,
        correlation_id: str,
        causation_id: str | None,
        sent_at: datetime,
    ) -> tuple[Envelope, bytes]:
        unsigned = Envelope(
            message_id=message_id,
            kind=payload.KIND,
            schema_version=payload.SCHEMA_VERSION,
            sender=BUS_AGENCY,
            recipients=[recipient],
            case_id=case_id,
            correlation_id=correlation_id,
            causation_id=causation_id,
            sent_at=sent_at,
            payload=self._codec.encode_payload(payload.KIND, payload),
            signature=Signature(
                algorithm=self._signer.algorithm, key_id=self._signer.key_id, value=b""
            ),
        )
        return sign_and_encode(unsigned, self._signer, codec=self._codec)

    # -- accepted -----------------------------------------------------------------------------

    def accepted_record(self, v: Accepted) -> AuditRecord:
        """The audit record of an accepted submission: its signed value and verifying key."""
        env = v.envelope
        leaf = message_leaf(
            "accepted",
            message_id=env.message_id,
            case_id=env.case_id,
            at=v.received_at,
            value=v.value,
            key=v.key,
            details={
                "kind": env.kind,
                "sender": env.sender,
                "deliver_to": list(v.deliver_to),
                "source": _source(v),
            },
        )
        return AuditRecord("accepted", env.message_id, env.case_id, leaf)

    def receipt(
        self, v: Accepted, *, audit_index: int
    ) -> tuple[AuditRecord, bytes, list[tuple[str, bytes]] | None]:
        """The ``bus.delivered`` receipt for the sender (its value and headers, or None for a
        signal's receipt, which is audited but never sent), and its audit record.

        One per accepted message, so it is written from plain records rather than models:
        every field is the bus's own, copied from the envelope the classifier validated, the
        routing policy's recipients or the log's index. The bytes are those the models and
        :func:`~bus.signing.sign_and_encode` give (tests/test_router_outputs.py)."""
        env = v.envelope
        if not v.deliver_to:
            raise ValueError("a receipt names at least one recipient")
        at = _utc_millis(v.received_at)
        causation_id = str(env.message_id)
        message_id = _id_text("delivered", causation_id)  # fastavro writes a uuid's str()
        if not self._codec.index.envelope_signature_is_last:
            value = self._checked_receipt(v, uuid.UUID(message_id), at, audit_index)
        else:
            payload = self._codec.encode_own_payload(
                BusDelivered.KIND,
                {
                    "original_message_id": causation_id,
                    "original_kind": env.kind,
                    "recipients": list(v.deliver_to),
                    "audit_index": audit_index,
                    "delivered_at": at,
                },
            )
            body = self._codec.own_envelope_body(
                {
                    "message_id": message_id,
                    "kind": BusDelivered.KIND,
                    "schema_version": BusDelivered.SCHEMA_VERSION,
                    "sender": BUS_AGENCY,
                    "recipients": [env.sender],
                    "case_id": env.case_id,
                    "correlation_id": env.correlation_id,
                    "causation_id": causation_id,
                    "sent_at": at,
                    "due_at": None,
                    "payload": payload,
                    "attachments": [],
                    "signature": {
                        "algorithm": self._signer.algorithm,
                        "key_id": self._signer.key_id,
                        "value": b"",
                    },
                }
            )
            # What sign_and_encode signs: canonical_bytes, the body with signature.value empty.
            # A receipt carries no attachment, so it is written with envelope version 1, the
            # schema own_envelope_body writes with.
            value = self._codec.encode_signed_envelope(
                body, self._signer.sign(DOMAIN_PREFIX + body), version=1
            )
        headers = (
            None  # a signal's receipt is audited, never sent (SIGNAL_KINDS)
            if env.kind in SIGNAL_KINDS
            else cloudevents_headers_of(
                message_id=message_id,
                sender=BUS_AGENCY,
                kind=BusDelivered.KIND,
                sent_at=at,
                case_id=env.case_id,
            )
        )
        leaf = message_leaf(
            "delivered",
            message_id=env.message_id,
            case_id=env.case_id,
            at=v.received_at,
            value=value,
            details={"deliver_to": list(v.deliver_to), "accepted_index": audit_index},
        )
        return AuditRecord("delivered", env.message_id, env.case_id, leaf), value, headers

    def _checked_receipt(
        self, v: Accepted, message_id: uuid.UUID, at: datetime, audit_index: int
    ) -> bytes:
        """The receipt through the models, for an envelope schema that does not end with the
        signature (none does today)."""
        env = v.envelope
        payload = BusDelivered(
            original_message_id=env.message_id,
            original_kind=env.kind,
            recipients=list(v.deliver_to),
            audit_index=audit_index,
            delivered_at=at,
        )
        _, value = self._envelope(
            payload,
            message_id=message_id,
            recipient=env.sender,
            case_id=env.case_id,
            correlation_id=env.correlation_id,
            causation_id=str(env.message_id),
            sent_at=at,
        )
        return value

    def deliveries(self, v: Accepted, *, audit_index: int) -> list[Send]:
        """The submission, unchanged, to every recipient's inbox, keyed by case."""
        env = v.envelope
        headers = [*(v.record.headers or ()), ("casebus_audit_index", str(audit_index).encode())]
        key = env.case_id.encode()
        return [Send(self._settings.topic_inbox(a), key, v.value, headers) for a in v.deliver_to]

    def receipt_send(
        self, v: Accepted, value: bytes, headers: list[tuple[str, bytes]] | None = None
    ) -> Send:
        """The receipt, to the sender's inbox (``headers`` are its value's, if at hand)."""
        env = v.envelope
        if headers is None:
            headers = self._codec.cloudevents_headers(self._codec.decode_envelope(value))
        return Send(self._settings.topic_inbox(env.sender), env.case_id.encode(), value, headers)

    # -- rejected and dead ---------------------------------------------------------------------

    def nack(self, v: Refused) -> Envelope | None:
        """The ``bus.nack`` for the sender, or None when there is nobody known to tell."""
        if v.reply_to is None:
            return None
        env = v.envelope
        original = env.message_id if env is not None else rejection_id(v)
        payload = BusNack(
            original_message_id=original,
            code=v.code,
            reasons=[NackReason.from_problem(p) for p in _bounded(v.problems)],
            rejected_by=BUS_AGENCY,
            rejected_at=v.received_at,
        )
        nack, _ = self._envelope(
            payload,
            message_id=_id("nack", v.value_sha256.hex()),
            recipient=v.reply_to,
            case_id=env.case_id if env is not None else "casebus.undecodable",
            correlation_id=env.correlation_id if env is not None else str(original),
            causation_id=str(original),
            sent_at=v.received_at,
        )
        return nack

    def rejected_record(self, v: Refused, nack: Envelope | None) -> AuditRecord:
        """The audit record of a refused or undecodable submission, with the nack sent for it."""
        env = v.envelope
        details: dict[str, Any] = {
            "code": v.code,
            "problems": _problems_json(v.problems),
            "source": _source(v),
        }
        if env is not None:
            details.update(
                original_message_id=str(env.message_id), kind=env.kind, sender=env.sender
            )
        if nack is not None:
            details["nack_to"] = v.reply_to
        if v.digest_only:  # the bytes are in dead_letter_bodies, under their digest
            details["value"] = _digest_summary(v)
        leaf = message_leaf(
            "rejected" if v.outcome == "reject" else "dead_lettered",
            message_id=rejection_id(v),
            case_id=v.case_id,
            at=v.received_at,
            value=None if v.digest_only else v.value,
            key=v.key,
            details=details,
        )
        return AuditRecord(
            "rejected" if v.outcome == "reject" else "dead_lettered",
            rejection_id(v),
            v.case_id,
            leaf,
        )

    def dead_letter(self, v: Refused) -> Send:
        """The submission, unchanged, to the dead-letter topic with why, from where and when.

        One kept by digest (too large, or refused by Kafka) goes as its digest, its size and a
        prefix instead, without its own headers (they may be what is too large); the whole
        record is in dead_letter_bodies under ``casebus_value_sha256``."""
        r = v.record
        why = [
            ("casebus_dead_code", v.code.encode()),
            (
                "casebus_dead_reason",
                json.dumps(_problems_json(_bounded(v.problems)), ensure_ascii=False).encode(),
            ),
            ("casebus_source_topic", r.topic.encode()),
            ("casebus_source_partition", str(r.partition).encode()),
            ("casebus_source_offset", str(r.offset).encode()),
            ("casebus_dead_at", v.received_at.isoformat().encode()),
        ]
        if not v.digest_only:
            headers = [*(r.headers or ()), *why]
            return Send(self._settings.topic_dead(), r.key or b"", v.value, headers)
        summary = _digest_summary(v)
        headers = [
            *why,
            ("casebus_value_sha256", summary["sha256"].encode()),
            ("casebus_value_size", str(summary["size"]).encode()),
            ("casebus_value_truncated", b"true"),
            ("casebus_record_size", str(summary["record_size"]).encode()),
        ]
        key = r.key or b""
        if len(key) > 256:
            key = hashlib.sha256(key).hexdigest().encode()
        return Send(self._settings.topic_dead(), key, v.value[:OVERSIZE_PREFIX_BYTES], headers)

    def nack_send(self, v: Refused, nack: Envelope) -> Send:
        """The nack, to the sender's inbox."""
        assert v.reply_to is not None
        return Send(
            self._settings.topic_inbox(v.reply_to),
            nack.case_id.encode(),
            self._codec.encode_envelope(nack),
            self._codec.cloudevents_headers(nack),
        )
