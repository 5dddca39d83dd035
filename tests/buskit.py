"""A test harness around the real bus: parties with registered keys, submitting, reading
inboxes and the dead-letter topic, running routers in-process or as killable processes, and
the audit log as the router writes it, for the ``casebus audit`` commands to read."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import asyncpg
import keykit
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import ConsumerRecord

from bus.agencies import load_registry
from bus.agency_db import add_key, sync_agencies
from bus.audit.checkpoint import load_log_key
from bus.audit.checkpointer import Checkpointer
from bus.audit.events import message_leaf
from bus.audit.log import AuditLog, AuditRecord
from bus.codec import default_codec
from bus.models import PAYLOAD_MODELS, Envelope
from bus.models.criminal import CriminalReceipt
from bus.party import Party, make_party
from bus.router.app import run_router
from bus.settings import Settings
from bus.signing import ED25519, Ed25519Signer, KeyFiles, algorithm_of_profile, write_keypair

Record = ConsumerRecord[bytes, bytes]


def signed_ack(party: Party, *, recipients: list[str], case_id: str, **envelope: Any) -> Envelope:
    """A signed bus.ack from ``party`` (of some earlier message): the smallest valid message."""
    ack = PAYLOAD_MODELS["bus.ack"](
        original_message_id=uuid.uuid4(),
        acknowledged_by=party.agency_id,
        acknowledged_at=datetime.now(UTC),
    )
    return party.envelope(ack, recipients=recipients, case_id=case_id, **envelope)


def receipt_payload(n: int = 0) -> CriminalReceipt:
    """A small valid payload: the police's receipt of a transfer letter."""
    return CriminalReceipt(
        transfer_letter_no=f"阳城执移〔2026〕{n:04d}号",
        received_at=datetime.now(UTC),
        receiver="阳宗海分局法制大队",
        signed_by="李某",
    )


class Bus:
    """One test's view of the bus."""

    def __init__(self, settings: Settings, tmp: Path) -> None:
        # The bus's key follows the run's profile like the agencies' (the sm2 lane signs
        # receipts and tree heads with SM2); checkpoints then need an Ed25519 log key of their
        # own (C2SP), as a deployment under the profile has.
        bus_key = write_keypair("casebus", tmp / "bus-key", algorithm=keykit.ALGORITHM)
        update: dict[str, object] = {
            "bus_key_file": bus_key.private_key,
            "checkpoint_interval_s": 0.5,
        }
        if keykit.ALGORITHM != ED25519:
            update["audit_log_key_file"] = write_keypair("casebus.log", tmp / "log-key").private_key
        self.settings = settings.model_copy(update=update)
        self._tmp = tmp
        self.parties: dict[str, Party] = {}
        self.log_key: Final = load_log_key(
            self.settings.audit_log_key_file or self.settings.bus_key_file
        ).public_key()
        """The Ed25519 public key the log's checkpoints verify with (the bus key by default)."""
        self.codec = default_codec()
        self._producer: AIOKafkaProducer | None = None
        self._routers: list[asyncio.Task[None]] = []
        """The routers running in :meth:`router` blocks: a read gives up once one has ended."""

    async def setup(self) -> None:
        conn = await asyncpg.connect(self.settings.database_url)
        try:
            await sync_agencies(conn, load_registry(self.settings.agencies_file))
        finally:
            await conn.close()
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.kafka_bootstrap, acks="all", enable_idempotence=True
        )
        await self._producer.start()

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()

    async def party(self, agency_id: str) -> Party:
        """A party whose key is registered (created on first use)."""
        if agency_id not in self.parties:
            algorithm = algorithm_of_profile(self.settings.crypto_profile)
            party = make_party(agency_id, self._tmp / "keys", algorithm=algorithm)
            conn = await asyncpg.connect(self.settings.database_url)
            try:
                await add_key(conn, party.key_record())
            finally:
                await conn.close()
            self.parties[agency_id] = party
        return self.parties[agency_id]

    async def submit(
        self, *items: Envelope | bytes, key: bytes = b"raw", sender: str | None = None
    ) -> None:
        """Produce envelopes (or raw bytes) to the submit topic, as an outbox relay would. With
        per-agency submit topics, ``sender``'s topic (default: each envelope's own sender's)."""
        assert self._producer is not None
        for item in items:
            if isinstance(item, Envelope):
                await self._producer.send(
                    self.settings.topic_submit(sender or item.sender),
                    self.codec.encode_envelope(item),
                    key=item.case_id.encode(),
                    headers=self.codec.cloudevents_headers(item),
                )
            else:
                await self._producer.send(self.settings.topic_submit(sender), item, key=key)
        await self._producer.flush()

    async def read(
        self, topic: str | list[str], *, want: int, timeout_s: float = 30, settle_s: float = 0.0
    ) -> list[Record]:
        """Everything committed on a topic, from the start, until ``want`` records arrived (then
        ``settle_s`` more, to catch extras) or the time is up."""
        topics = [topic] if isinstance(topic, str) else topic
        consumer = AIOKafkaConsumer(
            *topics,
            bootstrap_servers=self.settings.kafka_bootstrap,
            group_id=f"reader-{uuid.uuid4().hex[:8]}",
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            enable_auto_commit=False,
        )
        await consumer.start()
        got: list[Record] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        settled: float | None = None
        try:
            while loop.time() < deadline:
                self._routers_alive()
                batch = await consumer.getmany(timeout_ms=300)
                for records in batch.values():
                    got.extend(records)
                if len(got) >= want:
                    if settled is None:
                        if settle_s <= 0:
                            break
                        settled = loop.time() + settle_s
                    elif loop.time() >= settled:
                        break
        finally:
            await consumer.stop()
        return got

    def _routers_alive(self) -> None:
        """Raise at once if a router of a :meth:`router` block ended: what it would have
        written will never come, and waiting out a read's timeout would hide why."""
        for task in self._routers:
            if task.done():
                error = None if task.cancelled() else task.exception()
                raise AssertionError(f"the router ended inside its block: {error!r}") from error

    async def inbox(self, agency_id: str, **kw: float | int) -> list[Record]:
        """An agency's inbox."""
        return await self.read(self.settings.topic_inbox(agency_id), **kw)  # type: ignore[arg-type]

    def envelopes(self, records: list[Record]) -> list[Envelope]:
        return [self.codec.decode_envelope(r.value or b"") for r in records]

    def payload(self, envelope: Envelope) -> object:
        return self.codec.decode_payload_model(envelope.payload, kind=envelope.kind)[2]

    @contextlib.asynccontextmanager
    async def router(self, **overrides: object) -> AsyncIterator[None]:
        """A router running in this process for the block."""
        stop = asyncio.Event()
        task = asyncio.create_task(
            run_router(
                self.settings.model_copy(update=overrides),
                handle_signals=False,
                stop_event=stop,
            )
        )
        self._routers.append(task)
        try:
            yield
        finally:
            self._routers.remove(task)
            stop.set()
            await asyncio.wait_for(task, 30)

    def router_process(
        self,
        *,
        router_id: str = "router-0",
        failpoints: str = "",
        log_file: Path | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        """A router as a separate process (to SIGKILL or SIGSTOP it)."""
        # As the owner, not the router's own role: at its start it registers the test's bus
        # key, which the owner does in a deployment (`casebus agency key add`).
        child = {"router_id": router_id, "checkpoint_interval_s": 1.0, "router_database_url": None}
        env = self.settings.model_copy(update=child).to_env(os.environ)
        env.update(CASEBUS_FAILPOINTS=failpoints, **(extra_env or {}))
        exe = [str(Path(sys.executable).parent / "casebus"), "router"]
        if log_file is None:
            return subprocess.Popen(
                exe, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
        with open(log_file, "ab") as out:  # the child keeps its own copy of the descriptor
            return subprocess.Popen(exe, env=env, stdout=out, stderr=out)


AUDIT_ORIGIN = "test.casebus/audit"
"""The audit log's origin line in the checkpoints the tests sign."""


def audit_cli(cli_env: dict[str, str], folder: Path) -> tuple[dict[str, str], KeyFiles]:
    """A fresh bus (log) key under ``folder``, and the CLI's environment that signs with it."""
    key = write_keypair("casebus", folder)
    env = {
        **cli_env,
        "CASEBUS_BUS_KEY_FILE": str(key.private_key),
        "CASEBUS_AUDIT_ORIGIN": AUDIT_ORIGIN,
    }
    return env, key


def run_cli(exe: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``casebus *args`` as a subprocess, its output as text."""
    return subprocess.run([str(exe), *args], env=env, capture_output=True, text=True, timeout=60)


def accepted(party: Party, envelope: Envelope) -> AuditRecord:
    """The audit entry of the router accepting ``envelope`` from ``party``."""
    leaf = message_leaf(
        "accepted",
        message_id=envelope.message_id,
        case_id=envelope.case_id,
        at=datetime.now(UTC),
        value=party.value(envelope),
        key=party.key_record(),
    )
    return AuditRecord("accepted", envelope.message_id, envelope.case_id, leaf)


async def append_and_checkpoint(dsn: str, key: Path, records: list[AuditRecord]) -> str:
    """Append ``records`` as the router would and sign a checkpoint with ``key``; its note."""
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    try:
        async with pool.acquire() as conn, conn.transaction():
            await AuditLog().append(conn, records)
        signer = Ed25519Signer.from_file(key, agency_id="casebus")
        checkpointer = Checkpointer(pool, origin=AUDIT_ORIGIN, private_key=signer.private_key)
        cp = await checkpointer.checkpoint()
        assert cp is not None
        return cp.note
    finally:
        await pool.close()
