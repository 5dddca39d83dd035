"""Witnessed checkpoints on the real PostgreSQL, through the CLI as operators run it: the bus
asks a ``casebus witness serve`` process to cosign, ``casebus audit verify`` and
``verify-bundle`` check the cosignatures, and when the tables' owner rewrites a leaf the
witness refuses the next checkpoint and verify fails."""

from __future__ import annotations

import base64
import json
import os
import socket
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest
from buskit import AUDIT_ORIGIN, accepted, append_and_checkpoint, run_cli, signed_ack
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse

from bus.audit.checkpointer import Checkpointer
from bus.audit.cosignature import cosign, cosigner_vkey, parse_cosigner_key, verify_cosignature
from bus.audit.log import AuditLog, AuditRecord
from bus.audit.merkle import root_hash
from bus.audit.witnessing import WitnessEndpoint, cosigned_note, request_cosignatures
from bus.party import make_party
from bus.settings import Settings
from bus.signing import Ed25519Signer, write_keypair

pytestmark = pytest.mark.integration

ORIGIN = AUDIT_ORIGIN
WITNESS = "ygh.procuratorate/witness"


def write_private_key(path: Path) -> Path:
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Served:
    """A ``casebus witness serve`` process: where it answers, its vkey, its own store."""

    url: str
    vkey: str
    db: Path

    @property
    def endpoint(self) -> str:
        """As ``casebus audit witness --witness`` takes it."""
        return f"{self.url}={self.vkey}"


@dataclass
class Log:
    """The bus side: the CLI's environment with the log key, and the log's own vkey."""

    env: dict[str, str]
    key_file: Path
    vkey: str


@pytest.fixture
def log(cli_env: dict[str, str], casebus_exe: Path, tmp_path: Path) -> Log:
    key = write_keypair("casebus", tmp_path / "bus").private_key
    env = {**cli_env, "CASEBUS_BUS_KEY_FILE": str(key), "CASEBUS_AUDIT_ORIGIN": ORIGIN}
    vkey = run_cli(casebus_exe, env, "audit", "log-key")
    assert vkey.returncode == 0, vkey.stderr
    return Log(env, key, vkey.stdout.strip())


@pytest.fixture
def witness(log: Log, casebus_exe: Path, tmp_path: Path) -> Iterator[Served]:
    key = write_private_key(tmp_path / "witness.key.pem")
    port = free_port()
    env = {
        **log.env,
        "CASEBUS_WITNESS_NAME": WITNESS,
        "CASEBUS_WITNESS_KEY_FILE": str(key),
        "CASEBUS_WITNESS_DB": str(tmp_path / "witness.sqlite"),
    }
    vkey = run_cli(casebus_exe, env, "witness", "vkey")
    assert vkey.returncode == 0, vkey.stderr
    proc = subprocess.Popen(
        [str(casebus_exe), "witness", "serve", "--log", log.vkey, "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "the witness did not start"
            time.sleep(0.1)
        yield Served(url, vkey.stdout.strip(), tmp_path / "witness.sqlite")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stderr is not None:
            proc.stderr.close()


def records(n: int, *, rewrite: int | None = None) -> list[AuditRecord]:
    return [
        AuditRecord(
            "accepted", uuid.UUID(int=i + 1), "YGH-16", b"rewritten" if i == rewrite else b"%d" % i
        )
        for i in range(n)
    ]


async def owner_rewrites_history(owner_dsn: str, n: int, *, rewrite: int) -> None:
    """As the role owning the tables, with no key: triggers off, a leaf rewritten, nodes
    rebuilt, the checkpoints and their cosignatures gone."""
    tables = ("audit_entries", "audit_nodes", "audit_checkpoints", "audit_cosignatures")
    owner = await asyncpg.connect(owner_dsn)
    try:
        async with owner.transaction():
            for table in tables:
                await owner.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
            for table in ("audit_cosignatures", "audit_checkpoints", "audit_nodes"):
                await owner.execute(f"DELETE FROM {table}")
            await owner.execute("DELETE FROM audit_entries")
            await AuditLog().append(owner, records(n, rewrite=rewrite))
            for table in tables:
                await owner.execute(f"ALTER TABLE {table} ENABLE TRIGGER USER")
    finally:
        await owner.close()


def witness_state(db: Path) -> tuple[int, bytes]:
    conn = sqlite3.connect(db)
    try:
        size, root = conn.execute(
            "SELECT size, root_hash FROM witness_logs WHERE origin = ?", (ORIGIN,)
        ).fetchone()
        return int(size), bytes(root)
    finally:
        conn.close()


async def test_the_witness_refuses_a_rewritten_history_and_verify_fails(
    settings: Settings, log: Log, witness: Served, casebus_exe: Path
) -> None:
    await append_and_checkpoint(settings.database_url, log.key_file, records(37))
    ask = run_cli(
        casebus_exe, log.env, "audit", "witness", "--witness", f"{witness.url}={witness.vkey}"
    )
    assert ask.returncode == 0, ask.stderr
    assert ask.stdout.strip() == f"{WITNESS}: cosigned (size 37)"
    verify = ("audit", "verify", "--witness", witness.vkey, "--witness-grace-s", "0")
    ok = run_cli(casebus_exe, log.env, *verify)
    assert ok.returncode == 0, ok.stderr
    assert "witnessed up to size 37 by 1 of 1 witnesses" in ok.stdout

    await owner_rewrites_history(settings.database_url, 40, rewrite=12)
    # The bus, which holds the log key, signs whatever the database holds.
    signer = Ed25519Signer.from_file(log.key_file, agency_id="casebus")
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
    try:
        assert await Checkpointer(pool, origin=ORIGIN, private_key=signer.private_key).checkpoint()
    finally:
        await pool.close()

    # The database forgot the cosignature; the witness did not: 409 "37", then 422.
    refused = run_cli(casebus_exe, log.env, "audit", "witness", "--witness", witness.endpoint)
    assert refused.returncode == 1, refused.stdout
    assert f"{WITNESS}: refused 422 consistency proof from 37 does not verify" in refused.stderr
    assert witness_state(witness.db) == (37, root_hash([b"%d" % i for i in range(37)]))

    # Internally consistent, signed by the log's key: only the witness tells it apart.
    inside = run_cli(casebus_exe, log.env, "audit", "verify")
    assert inside.returncode == 0 and "internal consistency only" in inside.stdout
    bad = run_cli(casebus_exe, log.env, *verify)
    assert bad.returncode == 1, bad.stdout
    assert (
        "the checkpoint of size 40 is not covered by one that 1 of the 1 witnesses cosigned "
        "(witnessed up to size 0)" in bad.stderr
    )


async def test_a_bundle_carries_the_cosignature_and_verify_bundle_requires_it(
    settings: Settings, log: Log, witness: Served, casebus_exe: Path, tmp_path: Path
) -> None:
    party = make_party("ygh.regulator.planning", tmp_path / "keys")
    env_msg = signed_ack(party, recipients=["ygh.enforcement.bureau"], case_id="YGH-16")
    await append_and_checkpoint(
        settings.database_url, log.key_file, [accepted(party, env_msg), *records(4)]
    )
    ask = run_cli(
        casebus_exe, log.env, "audit", "witness", "--witness", f"{witness.url}={witness.vkey}"
    )
    assert ask.returncode == 0, ask.stderr
    # A newer checkpoint the witness has not cosigned (yet): the bundle uses the cosigned one.
    later = [AuditRecord("accepted", uuid.UUID(int=100 + i), "YGH-16", b"later") for i in range(3)]
    await append_and_checkpoint(settings.database_url, log.key_file, later)
    proved = run_cli(casebus_exe, log.env, "audit", "prove", str(env_msg.message_id))
    assert proved.returncode == 0, proved.stderr
    bundle = json.loads(proved.stdout)
    assert bundle["tree_size"] == 5
    assert f"\n— {WITNESS} " in bundle["checkpoint"]
    (tmp_path / "bundle.json").write_text(proved.stdout)
    pub = tmp_path / "log.pub.pem"
    pub.write_bytes(
        Ed25519Signer.from_file(log.key_file, agency_id="casebus")
        .private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    no_db = {**log.env, "CASEBUS_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"}

    def verify_bundle(path: Path, *vkeys: str) -> subprocess.CompletedProcess[str]:
        witnesses = [a for v in vkeys for a in ("--witness", v)]
        return run_cli(
            casebus_exe,
            no_db,
            "audit",
            "verify-bundle",
            str(path),
            "--log-key",
            str(pub),
            *witnesses,
        )

    ok = verify_bundle(tmp_path / "bundle.json", witness.vkey)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip().endswith(f"signed checkpoint verified, cosigned by {WITNESS}")

    stranger = cosigner_vkey("ygh.court/witness", Ed25519PrivateKey.generate().public_key())
    missing = verify_bundle(tmp_path / "bundle.json", witness.vkey, stranger)
    assert missing.returncode == 1
    assert "FAILED: witnesses: the checkpoint is cosigned by 1 of the 2 witnesses" in missing.stderr

    # One bit of the cosignature flipped: a forgery, not a missing cosignature.
    lines = bundle["checkpoint"].split("\n")
    i = next(n for n, line in enumerate(lines) if line.startswith(f"— {WITNESS} "))
    blob = bytearray(base64.b64decode(lines[i].split(" ")[2]))
    blob[-1] ^= 1
    lines[i] = f"— {WITNESS} {base64.b64encode(bytes(blob)).decode()}"
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps({**bundle, "checkpoint": "\n".join(lines)}))
    bad = verify_bundle(forged, witness.vkey)
    assert bad.returncode == 1 and "FAILED: cosignature: bad_signature" in bad.stderr


async def test_only_a_cosignature_by_the_witness_key_is_kept(
    settings: Settings, tmp_path: Path
) -> None:
    key, old_key = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    app = FastAPI()

    @app.post("/add-checkpoint")
    async def add(request: Request) -> PlainTextResponse:
        # A witness rotating its key: a line by the retired key first, then the current one.
        note = (await request.body()).decode().split("\n\n", 1)[1]
        body = note.split("\n\n")[0].encode() + b"\n"
        lines = [cosign(body, WITNESS, k, timestamp_s=1_800_000_000).line() for k in (old_key, key)]
        return PlainTextResponse("".join(f"{line}\n" for line in lines))

    log_key = write_keypair("casebus", tmp_path / "bus").private_key
    await append_and_checkpoint(settings.database_url, log_key, records(3))
    endpoint = WitnessEndpoint(
        "http://w", parse_cosigner_key(cosigner_vkey(WITNESS, key.public_key()))
    )
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as http:
            outcomes = await request_cosignatures(pool, [endpoint], http=http)
        assert [o.status for o in outcomes] == [200]
        cp = await AuditLog().checkpoint(pool)
        assert cp is not None
        note = await cosigned_note(pool, cp)
        assert note.count(f"— {WITNESS} ") == 1
        assert verify_cosignature(note, endpoint.key).timestamp_s == 1_800_000_000
    finally:
        await pool.close()
