"""Attachment throughput: each store, and the adapter's HTTP routes, next to a plain file copy
of the same bytes in the same run.

Run: ``.venv/bin/python bench/attachments.py [MiB]`` (64 by default) with
``CASEBUS_KAFKA_BOOTSTRAP`` and ``CASEBUS_DATABASE_URL`` pointing at the local broker and
PostgreSQL (``deploy/local/up`` prints them). It makes a database of its own and drops it.

Rows, all over one file of pseudo-random bytes (case files are mostly compressed already):

- ``file copy``: the baseline — read the file and write a copy, fsync'd (PostgreSQL's commit
  is durable too);
- each store in this process, through the port (``put`` streaming 1 MiB pieces, ``read`` to the
  end): the in-memory one (what hashing and the port cost), PostgreSQL (chunks of
  ``CASEBUS_ATTACHMENT_CHUNK_BYTES``) and S3 on a SeaweedFS server started for the run (the
  ``weed`` binary as ``tests/s3kit.py`` finds or builds it);
- through ``casebus adapter enforcement`` as a separate process over HTTP on 127.0.0.1:
  ``POST /v1/attachments`` (new bytes, then the same bytes again: stored once, the second
  upload streams and hashes everything and is rolled back), and ``GET`` of the whole file. The
  adapter's peak RSS growth is reported beside them.

The ratio column is each row's MiB/s over the file copy's.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from _common import (
    admin_sql,
    infra,
    markdown_table,
    say,
    scratch_settings,
    start_adapter,
    vm_kib,
    wait_healthy,
    with_db,
)

from adapters._framework.auth import create_token
from adapters._framework.fake_department import free_socket
from bus.agencies import load_registry
from bus.agency_db import sync_agencies
from bus.attachments import (
    AttachmentStore,
    MemoryAttachmentStore,
    PostgresAttachmentStore,
    S3AttachmentStore,
    attachment_uri,
    record_references,
)
from bus.db import migrate
from bus.logs import configure_logging
from bus.models import Attachment, BusAck
from bus.party import make_party
from bus.provision import OwnKey, ensure_registered
from bus.settings import load_settings
from bus.signing import algorithm_of_profile, load_signer, write_keypair

BENCH = "attachments"
AGENCY = "ygh.enforcement.bureau"
MIB = 1024 * 1024


def _seaweedfs(root: Path) -> AbstractContextManager[Any]:
    """A SeaweedFS server, started the one way the tests start it (tests/s3kit.py, which
    imports the tests' own helpers: hence their folder on the path, for this run only)."""
    sys.path.append(str(Path(__file__).resolve().parents[1] / "tests"))
    from s3kit import seaweedfs

    return seaweedfs(root)


async def from_file(path: Path) -> AsyncIterator[bytes]:
    """The file in 1 MiB pieces, as a request body arrives."""
    with open(path, "rb") as f:
        while piece := f.read(MIB):
            yield piece


def copy_file(src: Path, dst: Path) -> None:
    with open(src, "rb") as i, open(dst, "wb") as o:
        while piece := i.read(MIB):
            o.write(piece)
        o.flush()
        os.fsync(o.fileno())


async def timed(what: Callable[[], Awaitable[object]]) -> float:
    started = time.perf_counter()
    await what()
    return time.perf_counter() - started


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def store_rows(
    name: str, store: AttachmentStore, src: Path, size: int, *, seed: int = 0
) -> list[tuple[str, float]]:
    """``put`` and ``read`` of the file; with ``seed`` its bytes first changed by a prefix, so
    they are new to a store that saw the file already."""
    digest = ""

    async def body() -> AsyncIterator[bytes]:
        first = True
        async for piece in from_file(src):
            if first and seed:
                piece = seed.to_bytes(8, "big") + piece[8:]
            first = False
            yield piece

    async def put() -> None:
        nonlocal digest
        stored = await store.put(body(), media_type="video/mp4", max_bytes=size)
        assert stored.created
        digest = stored.attachment.sha256

    async def read() -> None:
        n = 0
        async for piece in store.read(digest):
            n += len(piece)
        assert n == size

    up = await timed(put)
    down = await timed(read)
    return [(f"{name} store: put", up), (f"{name} store: read", down)]


async def http_rows(
    dsn: str, admin_dsn: str, src: Path, size: int, keys: Path
) -> tuple[list[tuple[str, float]], int]:
    """The adapter-process rows, and its peak RSS growth in bytes."""
    owner = await asyncpg.connect(dsn)
    try:
        await ensure_registered(
            owner,
            registry=load_registry(load_settings().agencies_file),
            keys=[
                OwnKey.of(
                    load_signer(keys / f"{AGENCY}.key.pem", agency_id=AGENCY),
                    keys / f"{AGENCY}.key.pem",
                    valid_from=datetime(2020, 1, 1, tzinfo=UTC),
                )
            ],
        )
        token = await create_token(owner, AGENCY)
    finally:
        await owner.close()
    with free_socket() as sock:
        port = sock.getsockname()[1]
    env = scratch_settings(
        database_url=dsn,
        kafka_bootstrap="127.0.0.1:1",  # relay off: files only
        log_level="warning",
        attachment_max_bytes=size,
    ).to_env(os.environ)
    server = await start_adapter("enforcement", agency=AGENCY, key_dir=keys, port=port, env=env)
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {token}"}
    peak = 0
    sampling = True

    async def sample() -> None:
        nonlocal peak
        while sampling:
            peak = max(peak, vm_kib(server.pid, "VmRSS") * 1024)
            await asyncio.sleep(0.05)

    try:
        async with httpx.AsyncClient(base_url=base, timeout=600) as client:
            await wait_healthy(client, attempts=300)
            digest = ""

            async def upload(expected: int) -> None:
                nonlocal digest
                r = await client.post(
                    "/v1/attachments",
                    content=from_file(src),
                    headers=headers | {"Content-Type": "video/mp4", "Content-Length": str(size)},
                )
                assert r.status_code == expected, r.text
                digest = r.json()["sha256"]

            async def download() -> None:
                n = 0
                async with client.stream("GET", f"/v1/attachments/{digest}", headers=headers) as r:
                    assert r.status_code == 200, await r.aread()
                    async for piece in r.aiter_raw():
                        n += len(piece)
                assert n == size

            warm = await client.post("/v1/attachments", content=b"warm-up", headers=headers)
            assert warm.status_code == 201, warm.text
            before = vm_kib(server.pid, "VmRSS") * 1024
            sampler = asyncio.create_task(sample())
            rows = [("adapter HTTP: POST /v1/attachments", await timed(lambda: upload(201)))]
            rows.append(("adapter HTTP: POST, same bytes again", await timed(lambda: upload(200))))
            await _reference(dsn, digest, size)
            rows.append(("adapter HTTP: GET /v1/attachments/{sha256}", await timed(download)))
            sampling = False
            await sampler
        return rows, peak - before
    finally:
        server.terminate()
        await server.wait()


async def _reference(dsn: str, digest: str, size: int) -> None:
    """The agency sent a message carrying the file: it may download it."""
    conn = await asyncpg.connect(dsn)
    try:
        with tempfile.TemporaryDirectory(prefix="casebus-bench-party-") as keys:
            party = make_party(AGENCY, Path(keys))
        ack = BusAck(
            original_message_id=uuid.uuid4(),
            acknowledged_by=AGENCY,
            acknowledged_at=datetime.now(UTC),
        )
        env = party.envelope(ack, recipients=["ygh.police.bureau"], case_id="bench")
        ref = Attachment(
            name="bench.mp4",
            media_type="video/mp4",
            size_bytes=size,
            sha256=digest,
            uri=attachment_uri(digest),
        )
        await record_references(
            conn, env.model_copy(update={"attachments": [ref]}), AGENCY, "sender"
        )
    finally:
        await conn.close()


def row(what: str, seconds: float, size: int, base: float) -> tuple[str, str, str, str]:
    rate = size / MIB / seconds
    return what, f"{seconds:.2f}", f"{rate:.0f}", f"{rate / base:.2f}"


async def main(mib: int) -> None:
    configure_logging(log_format="console", level="warning")
    _, admin_dsn = infra(BENCH)
    size = mib * MIB
    name = f"casebus_bench_attachments_{uuid.uuid4().hex[:8]}"
    await admin_sql(admin_dsn, f'CREATE DATABASE "{name}"')
    dsn = with_db(admin_dsn, name)
    scratch = Path(tempfile.mkdtemp(prefix="casebus-bench-attachments-"))
    try:
        await migrate(dsn)
        conn = await asyncpg.connect(dsn)
        try:
            await sync_agencies(conn, load_registry(load_settings().agencies_file))
        finally:
            await conn.close()
        src = scratch / "case-file.bin"
        rng = random.Random(20)
        with open(src, "wb") as f:
            for _ in range(mib):
                f.write(rng.randbytes(MIB))
        say(BENCH, f"{mib} MiB file written; sha256 {hashlib.sha256(src.read_bytes()).hexdigest()}")

        rows: list[tuple[str, float]] = []
        copied = await timed(lambda: asyncio.to_thread(copy_file, src, scratch / "copy.bin"))
        rows.append(("file copy (read, write, fsync)", copied))
        say(BENCH, "stores in process")
        rows += await store_rows("memory", MemoryAttachmentStore(), src, size)
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
        try:
            chunk = load_settings().attachment_chunk_bytes
            pg = PostgresAttachmentStore(lambda: pool, chunk_bytes=chunk)
            rows += await store_rows("postgres", pg, src, size)
            await pool.execute("TRUNCATE attachment_chunks, attachment_blobs")
        finally:
            await pool.close()
        say(BENCH, "S3 store on SeaweedFS (weed server -s3, started here)")
        with _seaweedfs(scratch / "seaweedfs") as server:
            s3 = S3AttachmentStore(
                endpoint_url=server.endpoint_url,
                bucket="casebus-bench",
                access_key=server.access_key,
                secret_key=server.secret_key,
            )
            try:
                await s3.ensure_bucket()
                # SeaweedFS makes a bucket's volumes on its first write (seconds): not timed.
                await s3.put(from_file(src), media_type="video/mp4", max_bytes=size)
                await s3.put(_one(b"warm-up"), media_type="text/plain", max_bytes=size)
                rows += await store_rows("s3 (SeaweedFS)", s3, src, size, seed=1)
            finally:
                await s3.aclose()
        say(BENCH, "through the adapter process")
        keys = scratch / "keys"
        write_keypair(AGENCY, keys, algorithm=algorithm_of_profile(load_settings().crypto_profile))
        http, grown = await http_rows(dsn, admin_dsn, src, size, keys)
        rows += http

        base = size / MIB / rows[0][1]
        table = [row(what, seconds, size, base) for what, seconds in rows]
        print(
            f"\n{mib} MiB of pseudo-random bytes; adapter RSS peak growth {grown / MIB:.1f} MiB\n"
        )
        print("\n".join(markdown_table(("what", "s", "MiB/s", "× file copy"), table)))
    finally:
        await admin_sql(admin_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 64))
