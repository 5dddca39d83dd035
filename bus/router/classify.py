"""What the router decides about one submitted record, before anything is written.

Checks run in the order that gives the most useful answer to the sender: can it be decoded
at all; is the envelope well-formed; with per-agency submit topics, is the claimed sender the
agency whose principal wrote the topic (bus.router.principal); is the signature valid for the
claimed sender; is the payload valid for its kind; may this sender send this kind to these
recipients; and, with CASEBUS_AUDIT_WITNESS_FAIL_CLOSED_AFTER_S, whether the audit log has
gone unwitnessed too long to accept anything (bus.router.witnessed). The first failing stage
decides; a failed stage reports every problem it found.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Literal

import structlog
from aiokafka.structs import ConsumerRecord

from bus.agencies import Registry
from bus.codec import Codec
from bus.errors import DecodeError, Problem, SignatureError, ValidationFailedError
from bus.models import Envelope
from bus.router.principal import PrincipalCheck
from bus.router.verdict import UNWITNESSED, Accepted, NackCode, Outcome, Refused, Verdict
from bus.routing import RoutingPolicy
from bus.signing import KeyStore, PublicKeyRecord, verify_envelope

__all__ = ["UNWITNESSED", "Classifier", "Outcome", "Verdict", "record_size"]

log = structlog.get_logger("casebus.router")


def _author_mismatches(payload: object, sender: str) -> list[Problem]:
    """A field that names the message's author must name its signed sender: one agency
    cannot acknowledge (or refuse) in another's name."""
    return [
        Problem(
            f"payload.{name}",
            "party_mismatch",
            f"{name} names {getattr(payload, name)!s}, but the message is signed by {sender}",
            getattr(payload, name),
            f"{name} 与签名发送方 {sender} 不一致",
        )
        for name in getattr(payload, "AUTHOR_FIELDS", ())
        if getattr(payload, name) != sender
    ]


def record_size(record: ConsumerRecord[bytes, bytes]) -> int:
    """What a record weighs on the wire, near enough: key, value and every header."""
    headers = sum(len(k) + len(v or b"") for k, v in record.headers or ())
    return len(record.key or b"") + len(record.value or b"") + headers


def _header(record: ConsumerRecord[bytes, bytes], name: str) -> str | None:
    for key, value in record.headers or ():
        if key == name:
            try:
                return bytes(value).decode("utf-8")
            except UnicodeDecodeError:
                return None
    return None


class Classifier:
    """Turns records into verdicts with the codec, the key store, the registry and the policy."""

    def __init__(
        self,
        *,
        codec: Codec,
        keystore: KeyStore,
        registry: Registry,
        policy: RoutingPolicy,
        principal: PrincipalCheck | None = None,
        max_record_bytes: int | None = None,
        log_gate: Callable[[datetime], Problem | None] | None = None,
    ) -> None:
        self._max_record_bytes = max_record_bytes
        self._log_gate = log_gate
        self._codec = codec
        self._keys = keystore
        # Asked for every message's sender: a set, not Registry.get's scan of a province's
        # thousands of agencies.
        self._agencies = frozenset(registry.ids())
        self._policy = policy
        self._principal = principal

    def _known(self, agency: str | None) -> str | None:
        return agency if agency in self._agencies else None

    def _reply_to(self, record: ConsumerRecord[bytes, bytes], claimed: str | None) -> str | None:
        # On a per-agency submit topic the nack goes to the topic's agency, the one party known
        # to have written the record: never to whoever the record claims to be.
        owner = self._principal.owner(record.topic) if self._principal is not None else None
        return self._known(owner if owner is not None else claimed)

    async def classify(self, record: ConsumerRecord[bytes, bytes], *, now: datetime) -> Verdict:
        """The verdict on one record (never raises for bad input)."""
        value = record.value or b""
        digest = hashlib.sha256(value).digest()

        def refused(
            code: NackCode,
            problems: Sequence[Problem],
            *,
            reply_to: str | None,
            envelope: Envelope | None = None,
            key: PublicKeyRecord | None = None,
            outcome: Literal["reject", "dead"] = "reject",
            deliver_to: tuple[str, ...] = (),
        ) -> Refused:
            return Refused(
                record=record,
                value=value,
                value_sha256=digest,
                outcome=outcome,
                code=code,
                problems=tuple(problems),
                envelope=envelope,
                key=key,
                deliver_to=deliver_to,
                reply_to=reply_to,
            )

        # 0. Too large to route: whatever it is, its deliveries could not be written.
        size = record_size(record)
        if self._max_record_bytes is not None and size > self._max_record_bytes:
            return self._too_large(record, value, digest, size, self._max_record_bytes)
        # 1. Bytes that are no envelope at all: dead letter; nack whoever the headers name.
        try:
            envelope = self._codec.decode_envelope(value)
        except DecodeError as e:
            return refused(
                "undecodable",
                [Problem("value", "undecodable", str(e), message_zh="无法解码")],
                reply_to=self._reply_to(record, _header(record, "ce_source")),
                outcome="dead",
            )
        except ValidationFailedError as e:
            return refused(
                "invalid_envelope",
                e.problems,
                reply_to=self._reply_to(record, e.agency or _header(record, "ce_source")),
            )
        reply_to = self._reply_to(record, envelope.sender)
        # 1b. The sender, against the principal that wrote the topic (per-agency submit only).
        if self._principal is not None:
            mismatch = self._principal.check(record.topic, envelope.sender)
            if mismatch is not None:
                log.warning(
                    "router.security_event",
                    event_type=mismatch.rule,
                    message_id=str(envelope.message_id),
                    case_id=envelope.case_id,
                    kind=envelope.kind,
                    sender=envelope.sender,
                    topic=record.topic,
                    principal_agency=reply_to,
                )
                return refused(
                    "principal_mismatch", [mismatch], reply_to=reply_to, envelope=envelope
                )
        # 2. The signature, against the registry's keys as of now.
        try:
            key = await verify_envelope(
                envelope, self._keys, at=now, codec=self._codec, value=value
            )
        except SignatureError as e:
            problem = Problem(
                "signature",
                e.reason,
                str(e),
                value=envelope.signature.key_id,
                message_zh="签名无效",
            )
            return refused("bad_signature", [problem], reply_to=reply_to, envelope=envelope)
        # 2b. An algorithm the routing policy's signatures: section forbids for this message.
        wrong = self._policy.check_signature(
            kind=envelope.kind, sender=envelope.sender, algorithm=key.algorithm
        )
        if wrong:
            return refused("bad_signature", wrong, reply_to=reply_to, envelope=envelope, key=key)
        # 3. The payload, for its kind.
        try:
            _, version, payload = self._codec.decode_payload_model(
                envelope.payload, kind=envelope.kind
            )
        except DecodeError as e:
            unknown = envelope.kind not in self._policy.kinds
            code: NackCode = "unknown_kind" if unknown else "invalid_payload"
            problem = Problem(
                "kind" if unknown else "payload",
                code,
                str(e),
                value=envelope.kind,
                message_zh="未知的消息类型" if unknown else "载荷无法解码",
            )
            return refused(code, [problem], reply_to=reply_to, envelope=envelope, key=key)
        except ValidationFailedError as e:
            problems = [
                Problem(f"payload.{p.path}", p.rule, p.message, p.value, p.message_zh)
                for p in e.problems
            ]
            return refused(
                "invalid_payload", problems, reply_to=reply_to, envelope=envelope, key=key
            )
        problems = envelope.check_attachment_refs(payload)
        problems += _author_mismatches(payload, envelope.sender)
        if version != envelope.schema_version:
            problems.append(
                Problem(
                    "schema_version",
                    "schema_version_mismatch",
                    f"the payload was written with v{version}",
                    envelope.schema_version,
                )
            )
        if problems:
            misnamed = any(p.rule == "party_mismatch" for p in problems)
            return refused(
                "party_mismatch" if misnamed else "invalid_payload",
                problems,
                reply_to=reply_to,
                envelope=envelope,
                key=key,
            )
        # 4. The routing policy.
        decision = self._policy.authorize(
            kind=envelope.kind, sender=envelope.sender, recipients=envelope.recipients
        )
        if not decision.allowed:
            log.warning(
                "router.security_event",
                event_type="unauthorized_route",
                message_id=str(envelope.message_id),
                case_id=envelope.case_id,
                kind=envelope.kind,
                sender=envelope.sender,
                recipients=list(envelope.recipients),
            )
            return refused(
                "unauthorized_route",
                decision.problems,
                reply_to=reply_to,
                envelope=envelope,
                key=key,
            )
        deliver_to = tuple(decision.deliver_to)
        # 5. The audit log: refused while it has gone unwitnessed too long (fail closed). Its
        # deliveries are kept: bus.router.plan readmits one the log had already accepted.
        refusal = self._log_gate(now) if self._log_gate is not None else None
        if refusal is not None:
            return refused(
                UNWITNESSED,
                [refusal],
                reply_to=reply_to,
                envelope=envelope,
                key=key,
                deliver_to=deliver_to,
            )
        return Accepted(
            record=record,
            value=value,
            value_sha256=digest,
            envelope=envelope,
            key=key,
            deliver_to=deliver_to,
            reply_to=reply_to,
        )

    def _too_large(
        self,
        record: ConsumerRecord[bytes, bytes],
        value: bytes,
        digest: bytes,
        size: int,
        limit: int,
    ) -> Refused:
        """Refused before any other check; the sender, if one can be named, gets a nack."""
        claimed = _header(record, "ce_source")
        envelope: Envelope | None
        try:
            envelope = self._codec.decode_envelope(value)
            claimed = envelope.sender
        except (DecodeError, ValidationFailedError):
            envelope = None
        reply_to = self._reply_to(record, claimed)
        log.warning(
            "router.too_large",
            size=size,
            limit=limit,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            reply_to=reply_to,
        )
        return Refused(
            record=record,
            value=value,
            value_sha256=digest,
            outcome="reject" if envelope is not None else "dead",
            code="too_large",
            problems=(
                Problem(
                    "record",
                    "too_large",
                    f"the record is {size} bytes (key, value and headers); "
                    f"the bus routes at most {limit}",
                    size,
                    f"消息过大：{size} 字节，总线上限为 {limit} 字节",
                ),
            ),
            envelope=envelope,
            reply_to=reply_to,
            digest_only=True,
        )

    async def classify_all(
        self, records: Sequence[ConsumerRecord[bytes, bytes]], *, now: datetime
    ) -> list[Verdict]:
        """Verdicts for a batch, in record order."""
        return [await self.classify(r, now=now) for r in records]
