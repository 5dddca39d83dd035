"""The demo: a clue handover through the whole bus, proven to the procuratorate at the end.

A regulator hands a clue to the enforcement bureau; the router verifies, authorizes, audits
and delivers it (with its receipt); the bureau accepts the clue; the log signs a checkpoint;
the procuratorate gets an evidence bundle for the handover and verifies it offline.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import ConsumerRecord

from bus.agencies import load_registry
from bus.audit.evidence import build_bundle, verify_bundle
from bus.codec import default_codec
from bus.db import create_pool
from bus.errors import CasebusError
from bus.models import Envelope
from bus.registry import add_key, sync_agencies
from bus.router.app import run_router
from bus.samples import sample_envelope
from bus.settings import Settings
from bus.signing import Ed25519Signer, write_keypair
from bus.testing import Party

__all__ = ["run_demo"]

REGULATOR = "ygh.regulator.planning"
BUREAU = "ygh.enforcement.bureau"


def _signer(agency: str, path: Path) -> Ed25519Signer:
    if not path.exists():
        write_keypair(agency, path.parent)
    return Ed25519Signer.from_file(path, agency_id=agency)


class _Inbox:
    """A consumer positioned at the end of some inboxes before anything is sent."""

    def __init__(self, settings: Settings, agencies: list[str]) -> None:
        self._codec = default_codec()
        self._seen: list[tuple[Envelope, ConsumerRecord[bytes, bytes]]] = []
        self._consumer = AIOKafkaConsumer(
            *(settings.topic_inbox(a) for a in agencies),
            bootstrap_servers=settings.kafka_bootstrap,
            group_id=f"casebus.demo.{uuid.uuid4()}",
            auto_offset_reset="latest",
            isolation_level="read_committed",
            enable_auto_commit=False,
        )

    async def start(self) -> None:
        await self._consumer.start()
        await self._consumer.getmany(timeout_ms=500)
        for tp in self._consumer.assignment():
            await self._consumer.position(tp)

    async def stop(self) -> None:
        await self._consumer.stop()

    async def wait_for(
        self, match: Callable[[Envelope], bool], timeout_s: float = 30
    ) -> tuple[Envelope, ConsumerRecord[bytes, bytes]]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for i, (env, r) in enumerate(self._seen):
                if match(env):
                    del self._seen[i]
                    return env, r
            batch = await self._consumer.getmany(timeout_ms=250)
            for records in batch.values():
                self._seen.extend((self._codec.decode_envelope(r.value or b""), r) for r in records)
        raise CasebusError("the demo waited in vain for a message; see the router's log")


async def run_demo(
    settings: Settings, *, key_dir: Path, seed: int = 2017, say: Callable[[str], None] = print
) -> None:
    """Run the scenario; raises if any step does not happen."""
    registry = load_registry(settings.agencies_file)
    codec = default_codec()
    regulator = Party(REGULATOR, _signer(REGULATOR, key_dir / f"{REGULATOR}.key.pem"))
    bureau = Party(BUREAU, _signer(BUREAU, key_dir / f"{BUREAU}.key.pem"))
    bus_signer = _signer("casebus", settings.bus_key_file)
    pool = await create_pool(settings.database_url, max_size=4)
    stop = asyncio.Event()
    router = None
    inbox = _Inbox(settings, [REGULATOR, BUREAU])
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, acks="all", enable_idempotence=True
    )
    try:
        async with pool.acquire() as conn:
            await sync_agencies(conn, registry)
            for party in (regulator, bureau):
                await add_key(conn, party.key_record())
        say(f"agencies: {len(registry.agencies)} registered; keys of {REGULATOR} and {BUREAU}")
        router = asyncio.create_task(run_router(settings, handle_signals=False, stop_event=stop))
        await inbox.start()
        await producer.start()

        async def submit(env: Envelope) -> None:
            await producer.send_and_wait(
                settings.topic_submit(),
                codec.encode_envelope(env),
                key=env.case_id.encode(),
                headers=codec.cloudevents_headers(env),
            )

        rng = random.Random(seed)
        now = datetime.now(UTC)
        clue = sample_envelope(
            regulator,
            "clue.handover",
            rng,
            recipients=[BUREAU],
            message_id=uuid.uuid4(),
            sent_at=now,
            now=now,
        )
        t0 = time.perf_counter()
        await submit(clue)
        say(
            f"1. {REGULATOR} hands over clue {clue.message_id} (case {clue.case_id}, "
            f"{len(clue.attachments)} supervision records attached)"
        )
        got, record = await inbox.wait_for(lambda e: e.message_id == clue.message_id)
        index = dict(record.headers).get("casebus_audit_index", b"?").decode()
        say(
            f"2. router verified, authorized and audited it (audit index {index}); "
            f"{BUREAU} received it in {(time.perf_counter() - t0) * 1000:.0f} ms"
        )
        receipt, _ = await inbox.wait_for(
            lambda e: e.kind == "bus.delivered" and e.causation_id == str(clue.message_id)
        )
        say(f"3. {REGULATOR} got the bus's signed delivery receipt {receipt.message_id}")

        payload = codec.decode_payload_model(got.payload, kind="clue.handover")[2]
        answer = sample_envelope(
            bureau,
            "clue.receipt",
            rng,
            recipients=[REGULATOR],
            case_id=clue.case_id,
            correlation_id=clue.correlation_id,
            causation_id=str(clue.message_id),
            message_id=uuid.uuid4(),
            sent_at=datetime.now(UTC),
            now=datetime.now(UTC),
            decision="ACCEPTED",
            clue_no=payload.clue_no,  # type: ignore[attr-defined]
        )
        await submit(answer)
        await inbox.wait_for(lambda e: e.message_id == answer.message_id)
        say(f"4. {BUREAU} accepted the clue; {REGULATOR} has the receipt")

        bundle = None
        deadline = time.monotonic() + 30
        while bundle is None:
            try:
                bundle = await build_bundle(pool, clue.message_id)
            except CasebusError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)
        verdict = await verify_bundle(bundle, log_key=bus_signer.private_key.public_key())
        say(f"5. procuratorate: {verdict.line()}")
    finally:
        stop.set()
        await inbox.stop()
        await producer.stop()
        if router is not None:
            await asyncio.wait_for(router, 30)
        await pool.close()
