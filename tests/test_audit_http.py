"""The proof service over HTTP, checked with the offline verifiers."""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from buskit import accepted, signed_ack
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI, HTTPException

from bus.audit.checkpoint import parse_verifier_key, verifier_key_string, verify_signed_checkpoint
from bus.audit.checkpointer import Checkpointer
from bus.audit.cosignature import parse_cosigner_key, verify_cosignature
from bus.audit.evidence import verify_bundle
from bus.audit.http import audit_router
from bus.audit.log import AuditLog, AuditRecord
from bus.audit.merkle import verify_consistency
from bus.audit.witnessing import WitnessEndpoint, request_cosignatures
from bus.party import make_party
from bus.witness import MemoryWitnessStore, Witness, logs_by_origin
from bus.witness import create_app as create_witness

ORIGIN = "test.casebus/audit"


async def anyone(message_id: uuid.UUID) -> str:
    """A proof reader letting every caller read every bundle (the access rules have their own
    tests in test_route_access.py)."""
    return "test"


async def no_one(message_id: uuid.UUID) -> str:
    raise HTTPException(status_code=403, detail=f"not yours: {message_id}")


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    p = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    yield p
    await p.close()


async def test_proofs_and_consistency_over_http_verify_offline(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    key = Ed25519PrivateKey.generate()
    party = make_party("ygh.police.bureau", tmp_path)
    env = signed_ack(party, recipients=["ygh.enforcement.bureau"], case_id="YGH-77")
    checkpointer = Checkpointer(pool, origin=ORIGIN, private_key=key)
    async with pool.acquire() as conn, conn.transaction():
        await AuditLog().append(conn, [accepted(party, env)])
    await checkpointer.checkpoint()
    async with pool.acquire() as conn, conn.transaction():
        await AuditLog().append(
            conn, [AuditRecord("accepted", uuid.uuid4(), "x", f"{i}".encode()) for i in range(4)]
        )
    await checkpointer.checkpoint()

    app = FastAPI()
    app.include_router(audit_router(lambda: pool, proof_reader=anyone))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as client:
        bundle = (await client.get(f"/v1/audit/proofs/{env.message_id}")).json()
        verdict = await verify_bundle(bundle, log_key=key.public_key())
        assert verdict.tree_size == 5 and verdict.leaf_index == 0

        pinned = (await client.get(f"/v1/audit/proofs/{env.message_id}?checkpoint=1")).json()
        assert (await verify_bundle(pinned, log_key=key.public_key())).tree_size == 1

        c = (await client.get("/v1/audit/consistency?from=1&to=5")).json()
        old = verify_signed_checkpoint(c["old_checkpoint"], ORIGIN, key.public_key())
        new = verify_signed_checkpoint(c["new_checkpoint"], ORIGIN, key.public_key())
        verify_consistency(
            1, 5, old.root_hash, new.root_hash, [base64.b64decode(p) for p in c["proof"]]
        )

        assert (await client.get(f"/v1/audit/proofs/{uuid.uuid4()}")).status_code == 404
        assert (await client.get("/v1/audit/consistency?from=2&to=5")).status_code == 404
        assert (await client.get("/v1/audit/consistency?from=5&to=1")).status_code == 422
        latest = (await client.get("/v1/audit/checkpoints/latest")).json()
        assert latest["tree_size"] == 5


async def test_bundles_answer_only_to_the_proof_reader_and_checkpoints_to_anyone(
    pool: asyncpg.Pool,
) -> None:
    key = Ed25519PrivateKey.generate()
    message_id = uuid.uuid4()
    async with pool.acquire() as conn, conn.transaction():
        await AuditLog().append(conn, [AuditRecord("accepted", message_id, "x", b"{}")])
    await Checkpointer(pool, origin=ORIGIN, private_key=key).checkpoint()
    app = FastAPI()
    app.include_router(audit_router(lambda: pool, proof_reader=no_one))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as client:
        refused = await client.get(f"/v1/audit/proofs/{message_id}")
        assert refused.status_code == 403 and str(message_id) in refused.text
        assert (await client.get("/v1/audit/checkpoints/latest")).status_code == 200


async def test_a_tree_size_past_bigint_is_a_422_not_a_driver_error(pool: asyncpg.Pool) -> None:
    app = FastAPI()
    app.include_router(audit_router(lambda: pool, proof_reader=anyone))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        for query in (
            f"/v1/audit/consistency?from=1&to={2**63}",
            f"/v1/audit/consistency?from={2**64}&to={2**65}",
            f"/v1/audit/proofs/{uuid.uuid4()}?checkpoint={2**63}",
        ):
            assert (await client.get(query)).status_code == 422, query
        assert (await client.get(f"/v1/audit/consistency?from=1&to={2**63 - 1}")).status_code == 404


async def test_checkpoints_carry_the_witnesses_cosignatures(pool: asyncpg.Pool) -> None:
    key = Ed25519PrivateKey.generate()
    logs = logs_by_origin([parse_verifier_key(verifier_key_string(ORIGIN, key.public_key()))])
    witness = Witness(
        name="ygh.court/witness",
        private_key=Ed25519PrivateKey.generate(),
        logs=logs,
        store=MemoryWitnessStore(),
    )
    endpoint = WitnessEndpoint("http://w", parse_cosigner_key(witness.vkey))
    witness_http = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_witness(witness)))
    async with witness_http:
        for n in (2, 3):
            async with pool.acquire() as conn, conn.transaction():
                await AuditLog().append(
                    conn, [AuditRecord("accepted", uuid.uuid4(), "x", b"%d" % i) for i in range(n)]
                )
            await Checkpointer(pool, origin=ORIGIN, private_key=key).checkpoint()
            await request_cosignatures(pool, [endpoint], http=witness_http)
    app = FastAPI()
    app.include_router(audit_router(lambda: pool, proof_reader=anyone))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        latest = (await client.get("/v1/audit/checkpoints/latest")).json()
        assert verify_cosignature(latest["note"], endpoint.key).cosigner == "ygh.court/witness"
        c = (await client.get("/v1/audit/consistency?from=2&to=5")).json()
        for note in (c["old_checkpoint"], c["new_checkpoint"]):
            verify_signed_checkpoint(note, ORIGIN, key.public_key())
            verify_cosignature(note, endpoint.key)
