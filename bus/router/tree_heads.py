"""Publishing the audit log's signed checkpoints to the procuratorate as ``audit.tree_head``.

Runs beside the router. A checkpoint is signed only when the log grew; each is published to
every procuratorate inbox. With a witness policy (``CASEBUS_AUDIT_WITNESSES``), a checkpoint
is published only once a quorum of witnesses cosigned it, with their cosignatures; one they
refuse is held back (and retried, or superseded by the next), never published. Tree heads
are not themselves audited (that would grow the log forever); the procuratorate's monitor
keeps them instead. After every attempt, a :class:`~bus.router.witnessed.WitnessWatch` reads
how long the log has gone unwitnessed (metrics; the fail-closed setting).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Final

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from bus.audit.checkpointer import Checkpointer
from bus.audit.log import StoredCheckpoint
from bus.codec import Codec, default_codec
from bus.errors import TransportError
from bus.lifecycle import Backoff, Stoppable
from bus.models import Envelope, Signature
from bus.models.bus_kinds import AuditTreeHead
from bus.router.witnessed import WitnessWatch
from bus.settings import Settings
from bus.signing import Signer, sign_envelope

__all__ = ["AUDIT_CASE_ID", "TreeHeadPublisher"]

AUDIT_CASE_ID = "casebus.audit"
"""The Kafka key of every tree head: one partition, so the procuratorate sees them in order."""
_NS = uuid.UUID("0f8f6c55-3a8e-4f0e-8d0e-747265656864")

log = structlog.get_logger("casebus.audit")

_PRODUCER_RETRY: Final = Backoff(initial_s=0.5, max_s=5.0)
"""While Kafka is not up yet at start: wait, then connect again."""


class TreeHeadPublisher(Stoppable):
    """Signs checkpoints on a timer and sends each to the procuratorate(s)."""

    def __init__(
        self,
        settings: Settings,
        *,
        checkpointer: Checkpointer,
        signer: Signer,
        procuratorates: list[str],
        codec: Codec | None = None,
        witnessed: Callable[[StoredCheckpoint], Awaitable[str | None]] | None = None,
        watch: WitnessWatch | None = None,
    ) -> None:
        super().__init__()
        self._settings = settings
        self._checkpointer = checkpointer
        self._signer = signer
        self._to = procuratorates
        self._codec = codec or default_codec()
        self._unsent: StoredCheckpoint | None = None
        self._witnessed = witnessed
        self._watch = watch

    def stop(self) -> None:
        """Finish the current tick and return from :meth:`run`."""
        self.request_stop()

    def envelope(self, cp: StoredCheckpoint, note: str | None = None) -> Envelope:
        """The signed ``audit.tree_head`` message of one checkpoint (``note``: its cosigned
        note, when there is one)."""
        issued = datetime.fromtimestamp(cp.timestamp_ms / 1000, tz=UTC)
        payload = AuditTreeHead(
            checkpoint=note or cp.note,
            origin=self._settings.audit_origin,
            tree_size=cp.tree_size,
            root_hash=cp.root_hash,
            issued_at=issued,
        )
        mid = uuid.uuid5(_NS, f"{self._settings.audit_origin}:{cp.tree_size}")
        unsigned = Envelope(
            message_id=mid,
            kind=AuditTreeHead.KIND,
            schema_version=AuditTreeHead.SCHEMA_VERSION,
            sender="casebus",
            recipients=list(self._to),
            case_id=AUDIT_CASE_ID,
            correlation_id=str(mid),
            sent_at=issued,
            payload=self._codec.encode_payload(AuditTreeHead.KIND, payload),
            signature=Signature(
                algorithm=self._signer.algorithm, key_id=self._signer.key_id, value=b""
            ),
        )
        return sign_envelope(unsigned, self._signer, codec=self._codec)

    async def tick(self, producer: AIOKafkaProducer) -> StoredCheckpoint | None:
        """Sign a checkpoint if the log grew and publish it (or the one a failure left unsent)."""
        cp = await self._checkpointer.checkpoint() or self._unsent
        if cp is None or not self._to:
            return None
        self._unsent = cp
        note = None
        if self._witnessed is not None:
            note = await self._witnessed(cp)
            if note is None:
                log.warning("audit.tree_head_held", tree_size=cp.tree_size)
                return None
        env = self.envelope(cp, note)
        value = self._codec.encode_envelope(env)
        headers = self._codec.cloudevents_headers(env)
        try:
            for agency in self._to:
                await producer.send_and_wait(
                    self._settings.topic_inbox(agency),
                    value,
                    key=AUDIT_CASE_ID.encode(),
                    headers=headers,
                )
        except KafkaError as e:
            raise TransportError(f"tree head not published: {e}", retriable=True) from e
        self._unsent = None
        log.info("audit.tree_head_published", tree_size=cp.tree_size, to=self._to)
        return cp

    async def run(self) -> None:
        """Tick every ``checkpoint_interval_s`` until stopped."""
        producer = AIOKafkaProducer(
            **self._settings.kafka_client_options(), acks="all", enable_idempotence=True
        )
        failures = 0
        while True:
            try:
                await producer.start()
                break
            except KafkaError as e:
                if self.stopping:
                    return
                failures += 1
                delay = _PRODUCER_RETRY.delay(failures)
                log.warning("audit.tree_head_producer_retry", error=repr(e), retry_in_s=delay)
                await asyncio.sleep(delay)
        try:
            while not self.stopping:
                try:
                    await self.tick(producer)
                except Exception as e:
                    log.warning("audit.tree_head_failed", error=repr(e))
                if self._watch is not None:
                    try:
                        await self._watch.refresh()
                    except Exception as e:
                        log.warning("audit.witness_state_failed", error=repr(e))
                await self.pause(self._settings.checkpoint_interval_s)
        finally:
            await producer.stop()
