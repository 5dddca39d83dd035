"""Adapter throughput: ``POST /v1/submissions`` into the outbox, and the outbox relay into Kafka.

Run: ``.venv/bin/python bench/adapter_http.py [N] [--rate 200] [--seconds 10]`` with
``CASEBUS_KAFKA_BOOTSTRAP`` and ``CASEBUS_DATABASE_URL`` pointing at the local broker and
PostgreSQL (``deploy/local/up`` prints them). It creates a database and a topic prefix of its
own and drops the database at the end.

1. The regulators adapter runs as ``casebus adapter regulators`` (one uvicorn worker on
   127.0.0.1, a separate process). Its relay points at a closed port, so the measurement is
   "checked, signed and committed to the outbox" — exactly what a 202 promises. A client sends
   ``clue.handover`` documents (~1.3 KB JSON, one attachment) at several concurrency levels
   (closed loop: each client sends its next request when the last one was answered), then at a
   fixed offered rate (open loop: request ``i`` is due at ``start + i / rate`` whether or not
   earlier ones were answered; its latency counts from when it was due, so a stall is not
   hidden by the requests it held back). With ``--acks``, N pending deliveries (stored as the
   inbox reader stores them, each a case of its own) are then acknowledged by pull, 8 clients:
   the settling a webhook delivery also goes through (mark it, sign a ``bus.ack`` into the
   outbox).
2. An :class:`~bus.outbox.OutboxRelay` in this process then publishes the rows to Kafka
   (``acks=all``, idempotent); the table reports rows per second.

Each row also gives the adapter process's CPU (user + system, from ``/proc``) per submission
over that phase: on a shared machine a steadier figure than the rate. The client is the soak's
light keep-alive client (``_soak_http``), so the load generator takes little of the CPU the
adapter competes for; ``--client httpx`` uses httpx as the first version of this bench did.
``--server-tree DIR`` runs the adapter from another checkout (``PYTHONPATH=DIR``; several
folders joined by ``:`` come first in that order), for a before/after pair with one load
generator; the database is migrated by this checkout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import httpx
from _common import cpu_seconds, scratch_settings, start_adapter, wait_healthy, with_db
from _soak_http import Pool

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

Post = Callable[[bytes, dict[str, str]], Awaitable[int]]
"""POST one body with headers; the status."""


def _body(i: int) -> bytes:
    doc = clue_handover(ajbh=f"阳城执〔2026〕{i % 500:04d}号", xsbh=f"X-{i}", jsdw=[BUREAU])
    return json.dumps(doc, ensure_ascii=False).encode()


class _Client:
    """The load generator's connections: the light keep-alive pool, or httpx."""

    def __init__(self, kind: str, port: int, size: int) -> None:
        self._raw = Pool("127.0.0.1", port, size=size) if kind == "raw" else None
        limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
        self._httpx = (
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=30)
            if kind == "httpx"
            else None
        )

    async def post(
        self, body: bytes, headers: dict[str, str], path: str = "/v1/submissions", want: int = 202
    ) -> int:
        if self._raw is not None:
            answer = await self._raw.post(path, body, headers)
            status, text = answer.status, answer.body
        else:
            assert self._httpx is not None
            r = await self._httpx.post(path, content=body, headers=headers)
            status, text = r.status_code, r.content
        if status != want:
            raise RuntimeError(f"{status}: {text[:500]!r}")
        return status

    async def close(self) -> None:
        if self._raw is not None:
            await self._raw.close()
        if self._httpx is not None:
            await self._httpx.aclose()


def _headers(token: str, key: str) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/json",
        "Idempotency-Key": key,
    }


async def _closed_loop(
    client: _Client, token: str, first: int, n: int, concurrency: int
) -> tuple[float, list[float]]:
    """``n`` submissions by ``concurrency`` clients, each waiting for its answer; the elapsed
    time and each request's latency."""
    bodies = [(_body(first + i), f"k-{first + i}") for i in range(n)]
    latencies: list[float] = []

    async def worker() -> None:
        while bodies:
            body, key = bodies.pop()
            t0 = time.perf_counter()
            await client.post(body, _headers(token, key))
            latencies.append(time.perf_counter() - t0)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started, latencies


async def _open_loop(
    client: _Client, token: str, first: int, rate: float, seconds: float
) -> tuple[float, list[float]]:
    """Request ``i`` due at ``start + i / rate`` for ``seconds``; the elapsed time until the last
    answer and each request's latency from when it was due."""
    n = int(rate * seconds)
    bodies = [(_body(first + i), f"k-{first + i}") for i in range(n)]
    latencies: list[float] = []

    async def one(due: float, body: bytes, key: str) -> None:
        await client.post(body, _headers(token, key))
        latencies.append(time.perf_counter() - due)

    started = time.perf_counter()
    tasks = []
    for i, (body, key) in enumerate(bodies):
        due = started + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(due, body, key)))
    await asyncio.gather(*tasks)
    return time.perf_counter() - started, latencies


async def _deliveries(dsn: str, n: int) -> list[uuid.UUID]:
    """``n`` pending deliveries to AGENCY that answer with a bus.ack, each a case of its own,
    stored as the adapter's inbox reader stores them."""
    ids = [uuid.uuid4() for _ in range(n)]
    conn = await asyncpg.connect(dsn)
    try:
        await conn.executemany(
            "INSERT INTO adapter_deliveries (agency_id, message_id, case_id, kind, sender,"
            " correlation_id, document, needs_ack)"
            " VALUES ($1, $2, $3, 'opinion.request', $4, $5, '{}'::jsonb, true)",
            [(AGENCY, m, f"阳城执〔2026〕A{i:05d}号", BUREAU, str(m)) for i, m in enumerate(ids)],
        )
    finally:
        await conn.close()
    return ids


async def _acks(
    client: _Client, token: str, ids: list[uuid.UUID], concurrency: int
) -> tuple[float, list[float]]:
    """``POST /v1/inbox/{id}/ack`` for each of ``ids`` by ``concurrency`` clients: the settling
    path a webhook delivery also takes (mark the delivery, sign a bus.ack into the outbox)."""
    todo = list(ids)
    latencies: list[float] = []
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    async def worker() -> None:
        while todo:
            message_id = todo.pop()
            t0 = time.perf_counter()
            await client.post(b"", headers, path=f"/v1/inbox/{message_id}/ack", want=200)
            latencies.append(time.perf_counter() - t0)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started, latencies


def _p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000)[int(q * 1000) - 1] if len(values) > 1 else values[0]


def _load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


async def main(args: argparse.Namespace) -> None:
    configure_logging(log_format="console", level="warning")
    base_settings = load_settings()
    name = f"casebus_bench_adapters_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(base_settings.database_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    dsn = with_db(base_settings.database_url, name)
    settings = scratch_settings(database_url=dsn, topic_prefix=f"bench{uuid.uuid4().hex[:8]}")
    server: asyncio.subprocess.Process | None = None
    rows: list[tuple[str, float, float, float, float]] = []
    load_before = _load()
    # The agency's private key lives only as long as the run.
    keys_dir = tempfile.TemporaryDirectory(prefix="casebus-bench-keys-")
    try:
        await migrate(dsn)
        registry = load_registry(settings.agencies_file)
        await ensure_topics(settings, registry)
        conn = await asyncpg.connect(dsn)
        await sync_agencies(conn, registry)
        token = await create_token(conn, AGENCY)
        await conn.close()
        keys = Path(keys_dir.name)
        write_keypair(AGENCY, keys)
        sock = free_socket()
        port = sock.getsockname()[1]
        sock.close()
        # The relay pointed at a closed port: measure acceptance alone.
        server_settings = {"kafka_bootstrap": "127.0.0.1:1", "log_level": "warning"}
        env = dict(settings.model_copy(update=server_settings).to_env(os.environ))
        if args.server_tree:
            paths = args.server_tree.split(os.pathsep)
            env["PYTHONPATH"] = os.pathsep.join(str(Path(p).resolve()) for p in paths)
        server = await start_adapter("regulators", agency=AGENCY, key_dir=keys, port=port, env=env)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as probe:
            await wait_healthy(probe, attempts=200)
        client = _Client(args.client, port, size=max(64, *args.concurrency))
        sent = 0
        try:
            await _closed_loop(client, token, sent, 100, 4)  # warm-up
            sent += 100

            async def phase(what: str, run: Callable[[], Awaitable[tuple[float, list[float]]]]):
                assert server is not None
                cpu0 = cpu_seconds(server.pid)
                elapsed, lat = await run()
                cpu = cpu_seconds(server.pid) - cpu0
                rows.append(
                    (
                        what,
                        len(lat) / elapsed,
                        _p(lat, 0.5) * 1e3,
                        _p(lat, 0.99) * 1e3,
                        cpu / len(lat) * 1e3,
                    )
                )
                return len(lat)

            for c in args.concurrency:
                sent += await phase(
                    f"POST /v1/submissions c={c}",
                    lambda c=c, first=sent: _closed_loop(client, token, first, args.n, c),
                )
            if args.acks:
                ids = await _deliveries(dsn, args.n)
                await phase(
                    "POST /v1/inbox/{id}/ack c=8",
                    lambda: _acks(client, token, ids, 8),
                )
            for rate in args.rate:
                sent += await phase(
                    f"POST /v1/submissions {rate:g}/s offered",
                    lambda r=rate, first=sent: _open_loop(client, token, first, r, args.seconds),
                )
        finally:
            await client.close()
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
        nan = float("nan")
        rows.append((f"outbox relay -> Kafka ({pending} rows)", pending / elapsed, nan, nan, nan))

        print(f"server tree: {args.server_tree or 'this checkout'}; client: {args.client}")
        print(f"load average before {load_before}, after {_load()}")
        print(f"{'what':<42} {'per s':>10} {'p50 ms':>9} {'p99 ms':>9} {'CPU ms/sub':>11}")
        for what, rate_s, p50, p99, cpu_ms in rows:
            print(f"{what:<42} {rate_s:>10.0f} {p50:>9.2f} {p99:>9.2f} {cpu_ms:>11.2f}")
    finally:
        if server is not None:
            server.terminate()
            await server.wait()
        keys_dir.cleanup()
        admin = await asyncpg.connect(base_settings.database_url)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def _numbers(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("n", nargs="?", type=int, default=1000, help="submissions per level")
    parser.add_argument(
        "--concurrency",
        type=lambda t: [int(x) for x in _numbers(t)],
        default=[1, 8, 32],
        help="closed-loop client counts, comma-separated (default 1,8,32)",
    )
    parser.add_argument(
        "--rate",
        type=_numbers,
        default=[200.0],
        help="offered rates per second for the open-loop phase, comma-separated (default 200)",
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each rate phase")
    parser.add_argument("--client", choices=["raw", "httpx"], default="raw")
    parser.add_argument(
        "--acks", action="store_true", help="also settle N pending deliveries by pull ack"
    )
    parser.add_argument(
        "--server-tree", default="", help="run the adapter from this checkout (PYTHONPATH)"
    )
    asyncio.run(main(parser.parse_args()))
