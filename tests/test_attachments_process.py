"""Attachments through a real adapter process (``casebus adapter enforcement``, as its own
login) over real HTTP: a 200 MiB file goes up and comes back down while the process's resident
memory (``/proc/<pid>/status``) barely moves, and an upload whose client goes away half-way
leaves nothing behind."""

from __future__ import annotations

import asyncio
import hashlib
import random
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx
import pytest
from buskit import signed_ack
from keykit import ALGORITHM

from adapters._framework.auth import create_token
from adapters._framework.fake_department import free_socket
from bus.agencies import load_registry
from bus.attachments import attachment_uri, record_references
from bus.models import Attachment
from bus.party import make_party
from bus.provision import OwnKey, ensure_registered
from bus.settings import Settings
from bus.signing import load_signer, write_keypair

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BUREAU = "ygh.enforcement.bureau"
MIB = 1024 * 1024
BIG = 200 * MIB
RSS_BUDGET = 50 * MIB
SINCE = datetime(2020, 1, 1, tzinfo=UTC)


@dataclass
class Adapter:
    url: str
    pid: int
    token: str
    owner: asyncpg.Pool
    log: Path

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def rss_bytes(pid: int) -> int:
    """The resident set size of process ``pid``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


class Peak:
    """Samples a process's RSS every 50 ms while in use; ``peak`` the largest seen."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = rss_bytes(pid)
        self._task: asyncio.Task[None] | None = None

    async def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, rss_bytes(self.pid))
            await asyncio.sleep(0.05)

    async def __aenter__(self) -> Peak:
        self._task = asyncio.create_task(self._sample())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        self.peak = max(self.peak, rss_bytes(self.pid))


def pieces(total: int, seed: int = 7) -> Iterator[bytes]:
    """``total`` pseudo-random bytes in 1 MiB pieces, made as they are sent: the test holds no
    more of the file than the adapter should."""
    rng = random.Random(seed)
    left = total
    while left:
        n = min(MIB, left)
        yield rng.randbytes(n)
        left -= n


async def streamed(total: int, seed: int) -> AsyncIterator[bytes]:
    for piece in pieces(total, seed):
        yield piece


def sha_of(total: int, seed: int = 7) -> str:
    h = hashlib.sha256()
    for p in pieces(total, seed):
        h.update(p)
    return h.hexdigest()


def spawn(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(argv, env=env, stdout=out, stderr=out)


@pytest.fixture
async def adapter(
    provisioned: Settings, cli_env: dict[str, str], casebus_exe: Path, tmp_path: Path
) -> AsyncIterator[Adapter]:
    keys = tmp_path / "keys"
    files = write_keypair(BUREAU, keys, algorithm=ALGORITHM)
    owner = await asyncpg.create_pool(provisioned.database_url, min_size=1, max_size=3)
    async with owner.acquire() as conn:  # what the operator does before the adapter starts
        signer = load_signer(files.private_key, agency_id=BUREAU)
        await ensure_registered(
            conn,
            registry=load_registry(provisioned.agencies_file),
            keys=[
                OwnKey.of(signer, files.private_key, valid_from=datetime(2020, 1, 1, tzinfo=UTC))
            ],
        )
    token = await create_token(owner, BUREAU)
    with free_socket() as sock:
        port = sock.getsockname()[1]
    log = tmp_path / "adapter.log"
    argv = ["adapter", "enforcement", "--agency", BUREAU, "--key-dir", str(keys)]
    child = spawn([str(casebus_exe), *argv, "--port", str(port)], cli_env, log)
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=url) as client:
            for _ in range(300):
                assert child.poll() is None, log.read_text()
                try:
                    if (await client.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
        yield Adapter(url, child.pid, token, owner, log)
    finally:
        child.terminate()
        try:
            child.wait(30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(10)
        await owner.close()


async def upload(a: Adapter, total: int, seed: int) -> httpx.Response:
    headers = a.headers | {"Content-Type": "video/mp4", "Content-Length": str(total)}
    async with httpx.AsyncClient(base_url=a.url, timeout=300) as client:
        return await client.post("/v1/attachments", content=streamed(total, seed), headers=headers)


async def test_a_200_mib_file_goes_up_and_down_while_the_adapter_stays_small(
    adapter: Adapter, tmp_path: Path
) -> None:
    warm = await upload(adapter, 3 * MIB, seed=1)  # pools, buffers and code paths warmed up
    assert warm.status_code == 201, warm.text
    before = rss_bytes(adapter.pid)
    started = time.monotonic()
    async with Peak(adapter.pid) as up:
        r = await upload(adapter, BIG, seed=7)
    up_s = time.monotonic() - started
    assert r.status_code == 201, r.text
    digest = sha_of(BIG, seed=7)
    assert r.json()["sha256"] == digest and r.json()["size_bytes"] == BIG
    assert up.peak - before < RSS_BUDGET, f"upload grew RSS by {(up.peak - before) / MIB:.1f} MiB"

    # The sender may read its own file once a message of its carries it.
    party = make_party(BUREAU, tmp_path / "party")
    env = signed_ack(party, recipients=["ygh.police.bureau"], case_id="阳城执〔2026〕大文件1号")
    ref = Attachment(
        name="执法记录仪.mp4",
        media_type="video/mp4",
        size_bytes=BIG,
        sha256=digest,
        uri=attachment_uri(digest),
    )
    await record_references(
        adapter.owner, env.model_copy(update={"attachments": [ref]}), BUREAU, "sender"
    )
    h = hashlib.sha256()
    received = 0
    started = time.monotonic()
    async with Peak(adapter.pid) as down, httpx.AsyncClient(base_url=adapter.url, timeout=300) as c:
        url = f"/v1/attachments/{digest}"
        async with c.stream("GET", url, headers=adapter.headers) as response:
            assert response.status_code == 200
            async for piece in response.aiter_bytes():
                h.update(piece)
                received += len(piece)
    down_s = time.monotonic() - started
    assert received == BIG and h.hexdigest() == digest
    assert down.peak - before < RSS_BUDGET, (
        f"download grew RSS by {(down.peak - before) / MIB:.1f} MiB"
    )
    print(  # shown with -s: the figures the README quotes
        f"\n200 MiB up {BIG / MIB / up_s:.0f} MiB/s, down {BIG / MIB / down_s:.0f} MiB/s; "
        f"RSS {before / MIB:.0f} MiB before, peak +{(up.peak - before) / MIB:.1f} MiB up, "
        f"+{(down.peak - before) / MIB:.1f} MiB down"
    )


async def test_an_upload_cut_off_half_way_leaves_no_file(adapter: Adapter) -> None:
    total, sent = 30 * MIB, 12 * MIB
    host, port = adapter.url.removeprefix("http://").split(":")
    request = (
        f"POST /v1/attachments HTTP/1.1\r\nHost: {host}\r\n"
        f"Authorization: Bearer {adapter.token}\r\nContent-Type: application/pdf\r\n"
        f"Content-Length: {total}\r\n\r\n"
    ).encode()
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(request)
        for i, piece in enumerate(pieces(total, seed=9)):
            if i * MIB >= sent:
                break
            sock.sendall(piece)
        await asyncio.sleep(1.0)  # the adapter is writing chunks inside its transaction now
    # The client is gone. Nothing of the file may be seen, now or once the adapter noticed.
    for _ in range(100):
        busy = await adapter.owner.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND state LIKE 'idle in transaction%'"
        )
        assert await adapter.owner.fetchval("SELECT count(*) FROM attachment_blobs") == 0
        if busy == 0:
            break
        await asyncio.sleep(0.1)
    assert busy == 0, "the cut upload's transaction is still open"
    assert await adapter.owner.fetchval("SELECT count(*) FROM attachment_chunks") == 0
    # The same file, sent whole, is new to the store.
    whole = await upload(adapter, total, seed=9)
    assert whole.status_code == 201, whole.text
    assert whole.json()["sha256"] == sha_of(total, seed=9)
