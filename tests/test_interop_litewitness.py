"""A witness casebus did not write: torchwood's litewitness v0.6.1 (key in an ssh-agent)
cosigns casebus's checkpoints as the log grows, casebus verifies its cosignatures, and it
refuses the checkpoint of a history the tables' owner rewrote.

Needs Go 1.25+ and the Go module proxy the first time (``go install`` into the user's cache
directory), and OpenSSH's ``ssh-agent`` and ``ssh-add`` (Debian openssh-client).
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from bus.audit.checkpoint import verifier_key_string
from bus.audit.checkpointer import Checkpointer
from bus.audit.cosignature import cosigner_vkey, parse_cosigner_key
from bus.audit.log import AuditLog, AuditRecord
from bus.audit.verify import verify_log
from bus.audit.witnessing import WitnessEndpoint, request_cosignatures
from bus.settings import Settings

pytestmark = pytest.mark.integration

ORIGIN = "test.casebus/audit"
NAME = "ygh.court/litewitness"
VERSION = "v0.6.1"


def _tool(name: str, hint: str) -> str:
    found = shutil.which(name) or (f"/usr/local/go/bin/{name}" if name == "go" else None)
    if found is None or not Path(found).exists():
        pytest.fail(f"{name} is needed ({hint}): not found")
    return found


@pytest.fixture(scope="module")
def torchwood_bin() -> Path:
    """litewitness and witnessctl, installed into the user's cache directory."""
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "casebus" / "bin"
    cache.mkdir(parents=True, exist_ok=True)
    stamp = cache / f"torchwood-{VERSION}"
    if not stamp.exists():
        env = {**os.environ, "GOBIN": str(cache), "GOTOOLCHAIN": "local"}
        tools = [f"filippo.io/torchwood/cmd/{t}@{VERSION}" for t in ("litewitness", "witnessctl")]
        done = subprocess.run(
            [_tool("go", "Go 1.25+"), "install", *tools],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert done.returncode == 0, done.stderr
        stamp.touch()
    return cache


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(what: str, ready: object, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while not ready():  # type: ignore[operator]
        assert proc.poll() is None, f"{what} exited with {proc.returncode}"
        assert time.monotonic() < deadline, f"{what} did not start"
        time.sleep(0.1)


@dataclass
class Litewitness:
    """A running litewitness: where it answers, its cosigner vkey, its SQLite database."""

    url: str
    vkey: str
    db: Path


@pytest.fixture
def litewitness(torchwood_bin: Path, tmp_path: Path) -> Iterator[Litewitness]:
    key = Ed25519PrivateKey.generate()
    key_file = tmp_path / "litewitness.key"
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(Encoding.PEM, PrivateFormat.OpenSSH, NoEncryption()))
    public = key.public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()
    blob = base64.b64decode(public.split(" ")[1])
    fingerprint = "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(
        [_tool("ssh-agent", "Debian openssh-client"), "-D", "-a", str(sock)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    procs: list[subprocess.Popen[bytes]] = [agent]
    try:
        _wait("ssh-agent", sock.exists, agent)
        added = subprocess.run(
            [_tool("ssh-add", "Debian openssh-client"), str(key_file)],
            env={**os.environ, "SSH_AUTH_SOCK": str(sock)},
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert added.returncode == 0, added.stderr
        port = _free_port()
        db = tmp_path / "litewitness.db"
        flags = {
            "-name": NAME,
            "-db": str(db),
            "-ssh-agent": str(sock),
            "-key": fingerprint,
            "-listen": f"127.0.0.1:{port}",
        }
        witness = subprocess.Popen(
            [str(torchwood_bin / "litewitness"), *(a for kv in flags.items() for a in kv)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(witness)

        def answers() -> bool:
            try:
                httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
                return True
            except httpx.HTTPError:
                return False

        _wait("litewitness", answers, witness)
        yield Litewitness(f"http://127.0.0.1:{port}", cosigner_vkey(NAME, key.public_key()), db)
    finally:
        for p in reversed(procs):
            p.terminate()
            p.wait(timeout=10)


def _witnessctl(torchwood_bin: Path, *args: str) -> None:
    done = subprocess.run(
        [str(torchwood_bin / "witnessctl"), *args], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr


async def test_litewitness_cosigns_casebus_checkpoints_and_refuses_a_rewritten_history(
    settings: Settings, litewitness: Litewitness, torchwood_bin: Path
) -> None:
    log_key = Ed25519PrivateKey.generate()
    db = str(litewitness.db)
    _witnessctl(torchwood_bin, "add-log", "-db", db, "-origin", ORIGIN)
    log_vkey = verifier_key_string(ORIGIN, log_key.public_key())
    _witnessctl(torchwood_bin, "add-key", "-db", db, "-origin", ORIGIN, "-key", log_vkey)
    endpoint = WitnessEndpoint(litewitness.url, parse_cosigner_key(litewitness.vkey))
    leaves = [b"%d" % i for i in range(30)]

    def batch(start: int, end: int, rewrite: int | None = None) -> list[AuditRecord]:
        return [
            AuditRecord(
                "accepted", uuid.UUID(int=i + 1), "LW", b"rewritten" if i == rewrite else leaves[i]
            )
            for i in range(start, end)
        ]

    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
    checkpointer = Checkpointer(pool, origin=ORIGIN, private_key=log_key)
    try:
        for start, end in ((0, 6), (6, 21)):
            async with pool.acquire() as conn, conn.transaction():
                await AuditLog().append(conn, batch(start, end))
            await checkpointer.checkpoint()
            outcomes = await request_cosignatures(pool, [endpoint])
            assert [(o.status, o.detail) for o in outcomes] == [(200, "")]
        report = await verify_log(
            pool, log_key=log_key.public_key(), origin=ORIGIN, witnesses=(endpoint.key,)
        )
        assert report.ok, report.line()
        assert report.witnessing is not None and report.witnessing.witnessed_size == 21

        # The tables' owner rewrites leaf 3 and the bus signs the result at size 25.
        tables = ("audit_entries", "audit_nodes", "audit_checkpoints", "audit_cosignatures")
        async with pool.acquire() as owner, owner.transaction():
            for t in tables:
                await owner.execute(f"ALTER TABLE {t} DISABLE TRIGGER USER")
            for t in ("audit_cosignatures", "audit_checkpoints", "audit_nodes", "audit_entries"):
                await owner.execute(f"DELETE FROM {t}")
            await AuditLog().append(owner, batch(0, 25, rewrite=3))
            for t in tables:
                await owner.execute(f"ALTER TABLE {t} ENABLE TRIGGER USER")
        await checkpointer.checkpoint()
        refused = await request_cosignatures(pool, [endpoint])
        assert [o.status for o in refused] == [422], refused
        report = await verify_log(
            pool,
            log_key=log_key.public_key(),
            origin=ORIGIN,
            witnesses=(endpoint.key,),
            witness_grace_s=0,
        )
        assert not report.ok and "not covered by one that 1 of the 1 witnesses" in report.line()
    finally:
        await pool.close()
