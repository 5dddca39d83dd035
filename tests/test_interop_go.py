"""casebus's checkpoints, cosignatures and proofs, checked by Go tools casebus did not write:
filippo.io/torchwood v0.6.1, transparency-dev/formats v0.1.1 and transparency-dev/merkle
v0.0.2 (tests/interop/go), and the log's tiles read by torchwood's tile fetcher. And the other
way round: a cosignature made by torchwood, checked by casebus.

Needs Go 1.25 or later (``go`` on PATH or /usr/local/go/bin/go) and, the first time, the Go
module proxy; the build and the module cache go to the user's cache directories.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from fastapi import FastAPI, HTTPException, Request

from bus import sm2
from bus.audit.checkpoint import (
    Checkpoint,
    CheckpointSigner,
    parse_note,
    parse_verifier_key,
    sign_checkpoint,
    sm2_key_id,
    verifier_key_string,
)
from bus.audit.checkpointer import Checkpointer
from bus.audit.cosignature import (
    add_signature_lines,
    cosigner_vkey,
    parse_cosigner_key,
    verify_cosignature,
)
from bus.audit.log import AuditLog, AuditRecord
from bus.audit.merkle import consistency_proof, inclusion_proof, root_hash
from bus.audit.tiles_http import tiles_router
from bus.audit.witnessing import WitnessEndpoint, cosigned_note, request_cosignatures
from bus.errors import CheckpointError
from bus.settings import REPO_ROOT, Settings
from bus.signing import Sm2Signer
from bus.witness import MemoryWitnessStore, Witness, create_app, logs_by_origin

pytestmark = pytest.mark.integration

GO_MODULE = REPO_ROOT / "tests" / "interop" / "go"
ORIGIN = "test.casebus/audit"
WITNESS = "ygh.procuratorate/witness"
TORCHWOOD_WITNESS = "ygh.court/torchwood-witness"


def _go() -> str:
    found = shutil.which("go") or "/usr/local/go/bin/go"
    if not Path(found).exists():
        pytest.fail("Go 1.25+ is needed (Debian golang-go, or /usr/local/go): not found")
    return found


@pytest.fixture(scope="module")
def interop_exe() -> Path:
    """The Go checker, built into the user's cache directory (never the repository)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "casebus"
    cache.mkdir(parents=True, exist_ok=True)
    exe = cache / "casebus-interop"
    env = {**os.environ, "GOFLAGS": "-mod=readonly -buildvcs=false", "GOTOOLCHAIN": "local"}
    built = subprocess.run(
        [_go(), "build", "-o", str(exe), "."],
        cwd=GO_MODULE,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stderr
    return exe


def _seed(key: Ed25519PrivateKey) -> str:
    raw = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    return base64.b64encode(raw).decode()


def _b64(items: list[bytes]) -> list[str]:
    return [base64.b64encode(i).decode() for i in items]


def _run(exe: Path, data: dict[str, object], path: Path) -> subprocess.CompletedProcess[str]:
    path.write_text(json.dumps(data))
    return subprocess.run([str(exe), str(path)], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("profile", ["ed25519", "sm2"])
async def test_go_tools_verify_casebus_checkpoints_cosignatures_and_proofs(
    settings: Settings, interop_exe: Path, tmp_path: Path, profile: str
) -> None:
    """Under the sm2 profile every checkpoint also carries the bus's SM2 line, a signature type
    Go's note package does not know: it must ignore it (c2sp.org/signed-note), as must both
    witnesses, and verify the rest exactly as under the default profile."""
    log_key = Ed25519PrivateKey.generate()
    bus_sm2 = Sm2Signer(sm2.generate_private_key(), agency_id="casebus")
    signer = CheckpointSigner(log_key, sm2=bus_sm2 if profile == "sm2" else None)
    witness_key = Ed25519PrivateKey.generate()
    log_vkey = verifier_key_string(ORIGIN, log_key.public_key())
    witness = Witness(
        name=WITNESS,
        private_key=witness_key,
        logs=logs_by_origin([parse_verifier_key(log_vkey)]),
        store=MemoryWitnessStore(),
    )
    endpoint = WitnessEndpoint("http://witness", parse_cosigner_key(witness.vkey))
    leaves = [b"casebus leaf %d" % i for i in range(23)]
    audit_log = AuditLog()
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
    transport = httpx.ASGITransport(app=create_app(witness))
    try:
        async with httpx.AsyncClient(transport=transport) as http:
            for start, end in ((0, 5), (5, 23)):
                async with pool.acquire() as conn, conn.transaction():
                    await audit_log.append(
                        conn,
                        [
                            AuditRecord("accepted", uuid.UUID(int=i + 1), "G", leaves[i])
                            for i in range(start, end)
                        ],
                    )
                await Checkpointer(
                    pool,
                    origin=ORIGIN,
                    private_key=signer,  # type: ignore[arg-type]
                ).checkpoint()
                outcomes = await request_cosignatures(pool, [endpoint], http=http)
                assert [o.status for o in outcomes] == [200]
        old = await audit_log.checkpoint(pool, 5)
        new = await audit_log.checkpoint(pool, 23)
        assert old is not None and new is not None
        data: dict[str, object] = {
            "origin": ORIGIN,
            "log_vkey": log_vkey,
            "witness_vkeys": [witness.vkey],
            "checkpoint": await cosigned_note(pool, new),
            "torchwood_witness_name": WITNESS,
            "torchwood_witness_seed": _seed(witness_key),
            "inclusion": {
                "leaf": base64.b64encode(leaves[17]).decode(),
                "index": 17,
                "size": 23,
                "proof": _b64(await audit_log.inclusion_proof(pool, 17, 23)),
            },
            "consistency": {
                "old_checkpoint": old.note,
                "new_checkpoint": new.note,
                "proof": _b64(await audit_log.consistency_proof(pool, 5, 23)),
            },
        }
    finally:
        await pool.close()
    sm2_id = sm2_key_id(ORIGIN, bus_sm2.public_key)
    for note in (data["checkpoint"], old.note, new.note):
        has_sm2_line = any(s.key_id == sm2_id for s in parse_note(str(note))[1])
        assert has_sm2_line == (profile == "sm2")

    ok = _run(interop_exe, data, tmp_path / "in.json")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.splitlines()[0] == f"ok checkpoint {ORIGIN} size 23 signed by {ORIGIN}"
    assert f"ok cosigned by {WITNESS} at " in ok.stdout
    assert f"ok torchwood verifies the cosignature by {WITNESS} ({witness.vkey})" in ok.stdout
    assert "ok leaf 17 included in tree of size 23" in ok.stdout
    assert "ok tree of size 5 is a prefix of tree of size 23" in ok.stdout

    # The same tools refuse what they should: a flipped cosignature bit, a wrong proof.
    note = str(data["checkpoint"])
    cut = note.rindex(f"— {WITNESS} ") + len(f"— {WITNESS} ") + 20
    flipped = note[:cut] + ("A" if note[cut] != "A" else "B") + note[cut + 1 :]
    bad = _run(interop_exe, {**data, "checkpoint": flipped}, tmp_path / "bad.json")
    assert bad.returncode == 1 and "FAILED" in bad.stderr, bad.stdout
    consistency = dict(data["consistency"])  # type: ignore[call-overload]
    consistency["proof"] = list(reversed(consistency["proof"]))
    bad = _run(interop_exe, {**data, "consistency": consistency}, tmp_path / "bad2.json")
    assert bad.returncode == 1 and "merkle proof.VerifyConsistency" in bad.stderr, bad.stdout


async def test_casebus_verifies_a_cosignature_made_by_torchwood(
    interop_exe: Path, tmp_path: Path
) -> None:
    log_key = Ed25519PrivateKey.generate()
    torchwood_key = Ed25519PrivateKey.generate()
    leaves = [b"x%d" % i for i in range(9)]
    new = sign_checkpoint(
        Checkpoint(ORIGIN, 9, root_hash(leaves), 1_780_000_000_000), ORIGIN, log_key
    )
    old = sign_checkpoint(Checkpoint(ORIGIN, 4, root_hash(leaves[:4])), ORIGIN, log_key)
    data = {
        "origin": ORIGIN,
        "log_vkey": verifier_key_string(ORIGIN, log_key.public_key()),
        "witness_vkeys": [],
        "checkpoint": new,
        "torchwood_witness_name": TORCHWOOD_WITNESS,
        "torchwood_cosign_seed": _seed(torchwood_key),
        "inclusion": {
            "leaf": base64.b64encode(leaves[2]).decode(),
            "index": 2,
            "size": 9,
            "proof": _b64(inclusion_proof(leaves, 2)),
        },
        "consistency": {
            "old_checkpoint": old,
            "new_checkpoint": new,
            "proof": _b64(consistency_proof(leaves, 4)),
        },
    }
    out = _run(interop_exe, data, tmp_path / "in.json")
    assert out.returncode == 0, out.stderr
    printed = dict(line.split(" ", 1) for line in out.stdout.splitlines() if " " in line)
    # Same key id, same vkey: torchwood and casebus agree on the cosigner's identity.
    assert printed["vkey"] == cosigner_vkey(TORCHWOOD_WITNESS, torchwood_key.public_key())
    cosigned = add_signature_lines(new, [printed["cosignature"]])
    stamp = verify_cosignature(cosigned, parse_cosigner_key(printed["vkey"]))
    assert stamp.cosigner == TORCHWOOD_WITNESS and stamp.timestamp_s > 1_700_000_000
    # Moved onto another checkpoint, it is refused: the check can fail.
    with pytest.raises(CheckpointError, match="bad_signature"):
        verify_cosignature(
            add_signature_lines(old, [printed["cosignature"]]), parse_cosigner_key(printed["vkey"])
        )


async def _deny(request: Request) -> None:
    raise HTTPException(status_code=403, detail="entry bundles are not needed here")


async def test_torchwood_proves_inclusion_from_casebus_tiles(
    settings: Settings, interop_exe: Path, tmp_path: Path
) -> None:
    log_key = Ed25519PrivateKey.generate()
    leaves = [b"tiled leaf %d" % i for i in range(600)]  # two full level-0 tiles, one of 88
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
    try:
        async with pool.acquire() as conn, conn.transaction():
            await AuditLog().append(
                conn,
                [
                    AuditRecord("accepted", uuid.UUID(int=i + 1), "G", x)
                    for i, x in enumerate(leaves)
                ],
            )
        await Checkpointer(pool, origin=ORIGIN, private_key=log_key).checkpoint()
    finally:
        await pool.close()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
        yield
        await app.state.pool.close()

    app = FastAPI(lifespan=lifespan)
    app.include_router(tiles_router(lambda: app.state.pool, entry_reader=_deny))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(300):
            if server.started:
                break
            time.sleep(0.05)
        assert server.started, "the tile server did not start"
        data = {
            "origin": ORIGIN,
            "log_vkey": verifier_key_string(ORIGIN, log_key.public_key()),
            "witness_vkeys": [],
            "tiles_prefix": f"http://127.0.0.1:{port}/v1/tlog",
            "tiles_leaves": [
                {"index": i, "leaf": base64.b64encode(leaves[i]).decode()}
                for i in (0, 255, 256, 511, 512, 599)
            ],
        }
        ok = _run(interop_exe, data, tmp_path / "tiles.json")
        assert ok.returncode == 0, ok.stderr
        assert "ok torchwood read tiles of tree 600 matching its checkpoint" in ok.stdout
        assert "ok torchwood proves leaf 599 from tiles" in ok.stdout
        wrong = {**data, "tiles_leaves": [{"index": 7, "leaf": base64.b64encode(b"x").decode()}]}
        bad = _run(interop_exe, wrong, tmp_path / "wrong.json")
        assert bad.returncode == 1 and "tlog.CheckRecord" in bad.stderr, bad.stdout
    finally:
        server.should_exit = True
        thread.join(timeout=10)
