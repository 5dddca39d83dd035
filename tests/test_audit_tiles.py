"""The stored audit log served as C2SP tiles (real PostgreSQL): tiles equal the spec's
definition over the leaves, entry bundles hash to the level-0 tiles, nothing beyond the signed
size is served, and the pure-Python client proves inclusion from tiles with the log's and the
witness's keys alone."""

from __future__ import annotations

import uuid

import asyncpg
import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI, HTTPException, Request

from bus.audit.checkpoint import parse_verifier_key, verifier_key_string
from bus.audit.checkpointer import Checkpointer
from bus.audit.cosignature import cosigner_vkey, parse_cosigner_key
from bus.audit.log import AuditLog, AuditRecord
from bus.audit.merkle import leaf_hash, root_hash
from bus.audit.tiles_client import TiledLog
from bus.audit.tiles_http import tiles_router
from bus.audit.witnessing import WitnessEndpoint, WitnessPolicy, request_cosignatures
from bus.errors import ProofError
from bus.settings import Settings
from bus.witness import MemoryWitnessStore, Witness, create_app, logs_by_origin

pytestmark = pytest.mark.integration

ORIGIN = "test.casebus/audit"
N = 300  # a full level-0 tile, a partial one of 44, and a partial level-1 tile of 1


async def only_the_procuratorate(request: Request) -> None:
    if request.headers.get("x-agency") != "ygh.procuratorate":
        raise HTTPException(status_code=403, detail="entry bundles carry case content")


async def test_tiles_serve_the_stored_tree_and_prove_inclusion(settings: Settings) -> None:
    log_key = Ed25519PrivateKey.generate()
    witness = Witness(
        name="ygh.court/witness",
        private_key=Ed25519PrivateKey.generate(),
        logs=logs_by_origin(
            [parse_verifier_key(verifier_key_string(ORIGIN, log_key.public_key()))]
        ),
        store=MemoryWitnessStore(),
    )
    leaves = [b"entry %d" % i for i in range(N + 5)]
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
    app = FastAPI()
    app.include_router(tiles_router(lambda: pool, entry_reader=only_the_procuratorate))
    try:
        async with pool.acquire() as conn, conn.transaction():
            records = [
                AuditRecord("accepted", uuid.UUID(int=i + 1), "T", leaves[i]) for i in range(N)
            ]
            await AuditLog().append(conn, records)
        await Checkpointer(pool, origin=ORIGIN, private_key=log_key).checkpoint()
        witness_http = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(witness)))
        async with witness_http:
            endpoint = WitnessEndpoint("http://w", parse_cosigner_key(witness.vkey))
            assert [
                o.status for o in await request_cosignatures(pool, [endpoint], http=witness_http)
            ] == [200]
        # Entries past the checkpoint are in the log but not signed yet: not served.
        async with pool.acquire() as conn, conn.transaction():
            extra = [
                AuditRecord("accepted", uuid.UUID(int=i + 1), "T", leaves[i])
                for i in range(N, N + 5)
            ]
            await AuditLog().append(conn, extra)

        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bus") as http:
            level0 = await http.get("/v1/tlog/tile/0/001.p/44")
            assert level0.status_code == 200
            assert level0.content == b"".join(leaf_hash(x) for x in leaves[256:300])
            level1 = await http.get("/v1/tlog/tile/1/000.p/1")
            assert level1.content == root_hash(leaves[:256])
            assert (await http.get("/v1/tlog/tile/0/001.p/45")).status_code == 404
            assert (await http.get("/v1/tlog/tile/0/001")).status_code == 404
            assert (await http.get("/v1/tlog/tile/0/1")).status_code == 404

            procuratorate = {"x-agency": "ygh.procuratorate"}
            bundle = await http.get("/v1/tlog/tile/entries/001.p/44", headers=procuratorate)
            assert bundle.status_code == 200
            parsed, rest = [], bundle.content
            while rest:
                n = int.from_bytes(rest[:2], "big")
                parsed.append(rest[2 : 2 + n])
                rest = rest[2 + n :]
            assert parsed == leaves[256:300]
            outsider = await http.get("/v1/tlog/tile/entries/001.p/44")
            assert outsider.status_code == 403

            checkpoint = await http.get("/v1/tlog/checkpoint")
            assert checkpoint.headers["content-type"] == "text/plain; charset=utf-8"
            assert "\n— ygh.court/witness " in checkpoint.text

            client = TiledLog(
                http,
                "/v1/tlog",
                origin=ORIGIN,
                log_key=log_key.public_key(),
                witnesses=[parse_cosigner_key(witness.vkey)],
            )
            for index in (0, 1, 255, 256, 299):
                proved = await client.verify_inclusion(leaves[index], index)
                assert proved.checkpoint.size == N and proved.cosigners == ("ygh.court/witness",)
            with pytest.raises(ProofError):
                await client.verify_inclusion(b"not this leaf", 17)
            with pytest.raises(ProofError, match="beyond checkpoint size"):
                await client.verify_inclusion(leaves[N], N)
            stranger = parse_cosigner_key(
                cosigner_vkey("ygh.court/witness", Ed25519PrivateKey.generate().public_key())
            )
            unwitnessed = TiledLog(
                http, "/v1/tlog", origin=ORIGIN, log_key=log_key.public_key(), witnesses=[stranger]
            )
            with pytest.raises(ProofError, match="cosigned by 0 of the given witnesses"):
                await unwitnessed.verify_inclusion(leaves[3], 3)
    finally:
        await pool.close()


async def test_under_a_witness_policy_only_witnessed_checkpoints_and_their_tiles_are_served(
    settings: Settings,
) -> None:
    log_key = Ed25519PrivateKey.generate()
    logs = logs_by_origin([parse_verifier_key(verifier_key_string(ORIGIN, log_key.public_key()))])
    witnesses = [
        Witness(
            name=n, private_key=Ed25519PrivateKey.generate(), logs=logs, store=MemoryWitnessStore()
        )
        for n in ("ygh.procuratorate/witness", "ygh.court/witness")
    ]
    endpoints = tuple(
        WitnessEndpoint(f"http://w{i}", parse_cosigner_key(w.vkey)) for i, w in enumerate(witnesses)
    )
    mounts = {
        e.url: httpx.ASGITransport(app=create_app(w))
        for e, w in zip(endpoints, witnesses, strict=True)
    }
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
    leaves = [b"w%d" % i for i in range(305)]

    async def grow_and_sign(start: int, end: int) -> None:
        async with pool.acquire() as conn, conn.transaction():
            await AuditLog().append(
                conn,
                [
                    AuditRecord("accepted", uuid.UUID(int=i + 1), "T", leaves[i])
                    for i in range(start, end)
                ],
            )
        await Checkpointer(pool, origin=ORIGIN, private_key=log_key).checkpoint()

    def served(quorum: int) -> httpx.AsyncClient:
        app = FastAPI()
        policy = WitnessPolicy(endpoints, quorum)
        app.include_router(
            tiles_router(lambda: pool, entry_reader=only_the_procuratorate, policy=policy)
        )
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bus")

    try:
        await grow_and_sign(0, 300)
        async with httpx.AsyncClient(mounts=mounts) as http:
            assert [o.status for o in await request_cosignatures(pool, endpoints, http=http)] == [
                200,
                200,
            ]
            await grow_and_sign(300, 305)
            only_one = await request_cosignatures(pool, endpoints[:1], http=http)
            assert [o.status for o in only_one] == [200]
        async with served(2) as both, served(1) as one:
            # Two of two vouched for 300 only: 305 is not published, nor are its tiles.
            assert (await both.get("/v1/tlog/checkpoint")).text.split("\n")[1] == "300"
            assert (await both.get("/v1/tlog/tile/0/001.p/44")).status_code == 200
            assert (await both.get("/v1/tlog/tile/0/001.p/49")).status_code == 404
            # One of two is enough: 305 is.
            assert (await one.get("/v1/tlog/checkpoint")).text.split("\n")[1] == "305"
            assert (await one.get("/v1/tlog/tile/0/001.p/49")).status_code == 200
    finally:
        await pool.close()
