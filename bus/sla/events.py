"""sla.warning, sla.breach and sla.met as signed envelopes in the outbox.

The engine never produces to Kafka itself: it adds the envelope to the outbox in the
transaction that changes the deadline, and the outbox relay publishes it to the submit topic,
where the router audits and delivers it like any party's message.
"""

from __future__ import annotations

from datetime import datetime

from bus.codec import Codec, default_codec
from bus.db import Conn
from bus.errors import ConfigError
from bus.models import Envelope, PayloadModel, Signature, SlaBreach, SlaMet, SlaWarning
from bus.outbox import OutboxWriter
from bus.settings import Settings
from bus.signing import Signer, sign_envelope
from bus.sla.deadline import SLA_AGENCY, Deadline, Emission, event_message_id

__all__ = ["SlaEmitter", "sla_payload"]


def sla_payload(deadline: Deadline, emission: Emission) -> PayloadModel:
    """The payload of an SLA event about ``deadline``."""
    common = {
        "policy_id": deadline.policy_id,
        "deadline_id": str(deadline.id),
        "case_id": deadline.case_id,
        "opened_by": deadline.opened_by,
        "due_at": deadline.due_at,
        "owner_agency": deadline.owner_agency,
        "waiting_agency": deadline.waiting_agency,
        "occurred_at": emission.occurred_at,
    }
    if emission.kind == "sla.met":
        return SlaMet(**common, closed_by=emission.causation_id)
    if emission.kind == "sla.breach":
        return SlaBreach(**common)
    return SlaWarning(**common)


class SlaEmitter:
    """Builds, signs (as ``casebus.sla``) and queues SLA events in the outbox."""

    def __init__(self, settings: Settings, *, signer: Signer, codec: Codec | None = None) -> None:
        if not signer.key_id.startswith(f"{SLA_AGENCY}:"):
            raise ConfigError(f"the SLA engine signs as {SLA_AGENCY}, not with {signer.key_id}")
        self._codec = codec if codec is not None else default_codec()
        self._outbox = OutboxWriter(settings, codec=self._codec)
        self._signer = signer

    def envelope(self, deadline: Deadline, emission: Emission, *, now: datetime) -> Envelope:
        """The signed envelope of ``emission``; its message id depends only on the deadline,
        the event kind and its number."""
        payload = sla_payload(deadline, emission)
        unsigned = Envelope(
            message_id=event_message_id(deadline.id, emission.kind, emission.n),
            kind=emission.kind,
            schema_version=payload.SCHEMA_VERSION,
            sender=SLA_AGENCY,
            recipients=deadline.recipients(emission.kind),
            case_id=deadline.case_id,
            correlation_id=deadline.correlation_id,
            causation_id=str(emission.causation_id),
            sent_at=now,
            payload=self._codec.encode_payload(emission.kind, payload),
            signature=Signature(
                algorithm=self._signer.algorithm, key_id=self._signer.key_id, value=b""
            ),
        )
        return sign_envelope(unsigned, self._signer, codec=self._codec)

    async def emit(
        self, conn: Conn, deadline: Deadline, emission: Emission, *, now: datetime
    ) -> Envelope:
        """Queue the event in the outbox inside the caller's transaction."""
        envelope = self.envelope(deadline, emission, now=now)
        await self._outbox.add(conn, envelope, owner=SLA_AGENCY)
        return envelope
