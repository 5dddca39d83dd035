"""Adapter throughput: ``POST /v1/submissions`` into the outbox, and the outbox relay into Kafka.

Run: ``.venv/bin/python bench/adapter_http.py [N]`` with ``CASEBUS_KAFKA_BOOTSTRAP`` and
``CASEBUS_DATABASE_URL`` pointing at the local broker and PostgreSQL (``deploy/local/up`` prints
them). It creates a database and a topic prefix of its own and drops the database at the end.

1. The regulators adapter runs as ``casebus adapter regulators`` (one uvicorn worker on
   127.0.0.1, a separate process). Its relay points at a closed port, so the measurement is
   "checked, signed and committed to the outbox" — exactly what a 202 promises. A client sends
   ``clue.handover`` documents (~1.3 KB JSON, one attachment) at several concurrency levels.
2. An :class:`~bus.outbox.OutboxRelay` in this process then publishes the rows to Kafka
   (``acks=all``, idempotent); the table reports rows per second.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
import httpx
from _common import scratch_settings, start_adapter, wait_healthy, with_db

from adapters._framework.auth import create_token
from adapters._framework.fake_department import free_socket
from adapters.regulators.testing import clue_handover
from bus.agencies import load_registry
from bus.agency_db import sync_agencies
from bus.db import create_pool, migrate
from bus.logs import configure_logging
from bus.outbox import OutboxRelay
from bus.settings import load_settings
from bus.signing import write_keypair
from bus.topics import ensure_topics

AGENCY = "ygh.regulator.planning"
BUREAU = "ygh.enforcement.bureau"


async def _submissions(
    base: str, token: str, n: int, concurrency: int
) -> tuple[float, list[float]]:
    latencies: list[float] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:

        async def worker() -> None:
            while True:
                try:
                    i = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                doc = clue_handover(
                    ajbh=f"阳城执〔2026〕{i % 500:04d}号", xsbh=f"X-{i}", jsdw=[BUREAU]
                )
                t0 = time.perf_counter()
                r = await client.post(
                    "/v1/submissions",
                    json=doc,
                    headers={**headers, "Idempotency-Key": f"k-{i}-{concurrency}"},
                )
                latencies.append(time.perf_counter() - t0)
                if r.status_code != 202:
                    raise RuntimeError(f"{r.status_code}: {r.text}")

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started, latencies


def _p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000)[int(q * 1000) - 1] if len(values) > 1 else values[0]


async def main(n: int) -> None:
    configure_logging(log_format="console", level="warning")
    base_settings = load_settings()
    name = f"casebus_bench_adapters_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(base_settings.database_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    dsn = with_db(base_settings.database_url, name)
    settings = scratch_settings(database_url=dsn, topic_prefix=f"bench{uuid.uuid4().hex[:8]}")
    server: asyncio.subprocess.Process | None = None
    try:
        await migrate(dsn)
        registry = load_registry(settings.agencies_file)
        await ensure_topics(settings, registry)
        conn = await asyncpg.connect(dsn)
        await sync_agencies(conn, registry)
        token = await create_token(conn, AGENCY)
        await conn.close()
        keys = Path(tempfile.mkdtemp(prefix="casebus-bench-keys-"))
        write_keypair(AGENCY, keys)
        sock = free_socket()
        port = sock.getsockname()[1]
        sock.close()
        # The relay pointed at a closed port: measure acceptance alone.
        server_settings = {"kafka_bootstrap": "127.0.0.1:1", "log_level": "warning"}
        env = settings.model_copy(update=server_settings).to_env(os.environ)
        server = await start_adapter("regulators", agency=AGENCY, key_dir=keys, port=port, env=env)
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base) as probe:
            await wait_healthy(probe, attempts=200)
        await _submissions(base, token, 50, 4)  # warm-up
        rows = []
        for concurrency in (1, 8, 32):
            elapsed, lat = await _submissions(base, token, n, concurrency)
            rows.append(
                (
                    f"POST /v1/submissions c={concurrency}",
                    n / elapsed,
                    _p(lat, 0.5) * 1000,
                    _p(lat, 0.99) * 1000,
                )
            )
        server.terminate()
        await server.wait()
        server = None

        pool = await create_pool(dsn)
        pending = await pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
        relay = OutboxRelay(settings, pool=pool, owner=AGENCY, batch_size=500, poll_interval_s=0.05)
        started = time.perf_counter()
        await relay.start()
        for _ in range(12_000):
            if not await pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL"):
                break
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - started
        await relay.stop()
        await pool.close()
        rows.append(
            (
                f"outbox relay -> Kafka ({pending} rows)",
                pending / elapsed,
                float("nan"),
                float("nan"),
            )
        )

        print(f"{'what':<42} {'per s':>10} {'p50 ms':>9} {'p99 ms':>9}")
        for what, rate, p50, p99 in rows:
            print(f"{what:<42} {rate:>10.0f} {p50:>9.2f} {p99:>9.2f}")
    finally:
        if server is not None:
            server.terminate()
            await server.wait()
        admin = await asyncpg.connect(base_settings.database_url)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000))
