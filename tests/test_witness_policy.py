"""The witness policy gating publication (k of n), on the real PostgreSQL: the router's
tree-head publisher sends a checkpoint to the procuratorate only once a quorum of witnesses
cosigned it, with their cosignatures on it, and holds back one they refuse."""

from __future__ import annotations

import asyncio
import functools
import uuid
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bus.audit.checkpoint import parse_verifier_key, verifier_key_string
from bus.audit.checkpointer import Checkpointer
from bus.audit.cosignature import cosigner_vkey, parse_cosigner_key, verify_cosignature
from bus.audit.log import AuditLog, AuditRecord
from bus.audit.witnessing import WitnessEndpoint, WitnessPolicy
from bus.codec import default_codec
from bus.errors import CheckpointError, ConfigError
from bus.router.tree_heads import TreeHeadPublisher
from bus.settings import Settings
from bus.signing import Ed25519Signer
from bus.witness import LogState, MemoryWitnessStore, Witness, create_app, logs_by_origin

pytestmark = pytest.mark.integration


@dataclass
class Producer:
    """Records what the publisher sends instead of sending it."""

    sent: list[bytes] = field(default_factory=list)

    async def send_and_wait(self, topic: str, value: bytes, **_: Any) -> None:
        self.sent.append(value)


def test_a_policy_names_the_setting_it_came_from() -> None:
    vkey = "w+00000000+" + "A" * 44
    with pytest.raises(ConfigError, match="not '<URL>=<vkey>'"):
        WitnessPolicy.parse(f"nourl={vkey}", None)
    assert WitnessPolicy.parse("", None) is None
    key = Ed25519PrivateKey.generate().public_key()
    one = f"http://w={cosigner_vkey('w', key)}"
    with pytest.raises(ConfigError, match="CASEBUS_AUDIT_WITNESS_QUORUM 2"):
        WitnessPolicy.parse(one, 2)


async def test_a_checkpoint_is_published_only_once_a_quorum_cosigned_it(
    settings: Settings,
) -> None:
    origin = settings.audit_origin
    log_key = Ed25519PrivateKey.generate()
    logs = logs_by_origin([parse_verifier_key(verifier_key_string(origin, log_key.public_key()))])
    stores = {name: MemoryWitnessStore() for name in ("procuratorate", "court")}
    witnesses = {
        name: Witness(
            name=f"ygh.{name}/witness",
            private_key=Ed25519PrivateKey.generate(),
            logs=logs,
            store=store,
        )
        for name, store in stores.items()
    }
    mounts = {
        f"http://{name}": httpx.ASGITransport(app=create_app(w)) for name, w in witnesses.items()
    }
    endpoints = tuple(
        WitnessEndpoint(f"http://{name}", parse_cosigner_key(w.vkey))
        for name, w in witnesses.items()
    )
    # The court's witness has cosigned a larger tree of this origin before: it refuses ours.
    await stores["court"].advance(origin, LogState(10_000, bytes(32), "x"), lambda _: None)

    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
    http = httpx.AsyncClient(mounts=mounts)
    try:
        async with pool.acquire() as conn, conn.transaction():
            await AuditLog().append(
                conn, [AuditRecord("accepted", uuid.uuid4(), "P", b"%d" % i) for i in range(9)]
            )
        signer = Ed25519Signer(log_key, agency_id="casebus")

        def publisher(quorum: int) -> TreeHeadPublisher:
            policy = WitnessPolicy(endpoints, quorum)
            return TreeHeadPublisher(
                settings,
                checkpointer=Checkpointer(pool, origin=origin, private_key=log_key),
                signer=signer,
                procuratorates=["ygh.procuratorate"],
                witnessed=functools.partial(policy.cosigned, pool, http=http),
            )

        producer = Producer()
        both = publisher(2)
        assert await both.tick(producer) is None  # type: ignore[arg-type]
        assert producer.sent == []
        assert await both.tick(producer) is None, "a refused checkpoint stays held"  # type: ignore[arg-type]

        # One of two is enough for the next policy: the log grows, checkpoint 10 goes out.
        async with pool.acquire() as conn, conn.transaction():
            await AuditLog().append(conn, [AuditRecord("accepted", uuid.uuid4(), "P", b"9")])
        published = await publisher(1).tick(producer)  # type: ignore[arg-type]
        assert published is not None and published.tree_size == 10
        assert len(producer.sent) == 1
        envelope = default_codec().decode_envelope(producer.sent[0])
        _, _, head = default_codec().decode_payload_model(envelope.payload, kind="audit.tree_head")
        note = head.checkpoint  # type: ignore[attr-defined]
        assert verify_cosignature(note, endpoints[0].key).cosigner == "ygh.procuratorate/witness"
        with pytest.raises(CheckpointError, match="unknown_key"):
            verify_cosignature(note, endpoints[1].key)
    finally:
        await http.aclose()
        await pool.close()


class _MeetingStore(MemoryWitnessStore):
    """A witness store that answers only once every witness of the barrier is asked."""

    def __init__(self, barrier: asyncio.Barrier) -> None:
        super().__init__()
        self._barrier = barrier

    async def advance(self, origin: str, new: LogState, decide: Any) -> Any:
        await asyncio.wait_for(self._barrier.wait(), 5)
        return await super().advance(origin, new, decide)


async def test_the_witnesses_are_asked_at_once_not_one_after_another(settings: Settings) -> None:
    # Each witness answers only while the other is being asked too: asked in turn, the first
    # would wait for the second forever (here 5 s, then its request fails).
    origin = settings.audit_origin
    log_key = Ed25519PrivateKey.generate()
    logs = logs_by_origin([parse_verifier_key(verifier_key_string(origin, log_key.public_key()))])
    barrier = asyncio.Barrier(2)
    witnesses = [
        Witness(
            name=f"ygh.{name}/witness",
            private_key=Ed25519PrivateKey.generate(),
            logs=logs,
            store=_MeetingStore(barrier),
        )
        for name in ("procuratorate", "court")
    ]
    mounts = {
        f"http://w{i}": httpx.ASGITransport(app=create_app(w)) for i, w in enumerate(witnesses)
    }
    policy = WitnessPolicy(
        tuple(
            WitnessEndpoint(f"http://w{i}", parse_cosigner_key(w.vkey))
            for i, w in enumerate(witnesses)
        ),
        2,
    )
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=4)
    try:
        async with httpx.AsyncClient(mounts=mounts) as http:
            async with pool.acquire() as conn, conn.transaction():
                await AuditLog().append(conn, [AuditRecord("accepted", uuid.uuid4(), "P", b"0")])
            cp = await Checkpointer(pool, origin=origin, private_key=log_key).checkpoint()
            assert cp is not None
            note = await policy.cosigned(pool, cp, http=http)
        assert note is not None
        for endpoint in policy.witnesses:
            verify_cosignature(note, endpoint.key)
    finally:
        await pool.close()
