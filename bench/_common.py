"""Helpers the benchmarks share: where the infrastructure answers, a scratch database, the
broker's topics, an adapter process, a process's CPU and memory, and a Markdown table."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
from aiokafka.admin import AIOKafkaAdminClient

from bus.db import SERVICE_ROLES
from bus.local_infra import local_infra
from bus.settings import Settings, load_settings

__all__ = [
    "admin_sql",
    "cpu_seconds",
    "delete_topics",
    "infra",
    "kafka_version",
    "markdown_table",
    "say",
    "scratch_database",
    "scratch_settings",
    "start_adapter",
    "vm_kib",
    "wait_healthy",
    "with_db",
]


def say(bench: str, text: str) -> None:
    """A progress line on stderr; stdout is kept for the results."""
    print(f"[bench {bench} {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def infra(bench: str) -> tuple[str, str]:
    """Kafka bootstrap and an admin DSN (a role that may create databases): from
    ``CASEBUS_KAFKA_BOOTSTRAP`` and ``CASEBUS_DATABASE_URL``, else from ``deploy/local/up``."""
    found = local_infra(say=lambda text: say(bench, text))
    return found.kafka_bootstrap, found.database_url


def scratch_settings(**fields: object) -> Settings:
    """The environment's settings with ``fields`` replaced, every service connecting as the
    owner: a service's own DSN in the environment names the shared database, never a bench's
    scratch one. ``.to_env(os.environ)`` is the environment of the bench's child processes."""
    owner_only: dict[str, object] = {f"{s}_database_url": None for s in SERVICE_ROLES}
    return load_settings(**(owner_only | fields))


def kafka_version() -> str:
    """The broker's version as ``deploy/local`` installed it (Kafka has no API that says)."""
    if version := os.environ.get("CASEBUS_KAFKA_VERSION"):
        return version
    state = load_settings().state_dir / "kafka"
    found = sorted(p.stem.removeprefix("classpath-") for p in state.glob("classpath-*.txt"))
    return f"{found[-1]} (deploy/local)" if found else "unknown"


def with_db(dsn: str, name: str) -> str:
    """``dsn`` pointing at database ``name``."""
    return urlunsplit(urlsplit(dsn)._replace(path=f"/{name}"))


async def admin_sql(dsn: str, sql: str) -> None:
    """Run one statement on a connection of its own (CREATE and DROP DATABASE)."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextlib.contextmanager
def scratch_database(admin_dsn: str, prefix: str, say: Callable[[str], None]) -> Iterator[str]:
    """A fresh database ``<prefix>_<random>`` for the block (its DSN), dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    try:
        say(f"creating database {name}")
        asyncio.run(admin_sql(admin_dsn, f'CREATE DATABASE "{name}"'))
        yield with_db(admin_dsn, name)
    finally:
        asyncio.run(admin_sql(admin_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        say(f"dropped database {name}")


async def delete_topics(bootstrap: str, prefixes: Sequence[str]) -> list[str]:
    """Delete every topic named ``<prefix>.…`` for one of ``prefixes``; the names deleted."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        ours = [
            t for t in await admin.list_topics() if any(t.startswith(f"{p}.") for p in prefixes)
        ]
        if ours:
            await admin.delete_topics(ours)
        return ours
    finally:
        await admin.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far; 0 once it is gone."""
    with contextlib.suppress(OSError):
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return 0.0


def vm_kib(pid: int, name: str) -> int:
    """A ``/proc/<pid>/status`` memory line (``VmHWM``, ``VmRSS``) in KiB; 0 once it is gone."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{name}:"):
                return int(line.split()[1])
    return 0


def markdown_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A Markdown table, padded for reading as text: the first column left, the rest right."""
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]

    def line(values: Sequence[str]) -> str:
        padded = (
            v.ljust(w) if i == 0 else v.rjust(w)
            for i, (v, w) in enumerate(zip(values, widths, strict=True))
        )
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(
        ":" + "-" * (w + 1) if i == 0 else "-" * (w + 1) + ":" for i, w in enumerate(widths)
    )
    return [line(head), rule + "|", *(line(r) for r in rows)]


async def start_adapter(
    kind: str, *, agency: str, key_dir: Path, port: int, env: Mapping[str, str]
) -> asyncio.subprocess.Process:
    """Start ``casebus adapter <kind>`` for ``agency`` on ``port``; its output is discarded."""
    exe = str(Path(sys.executable).parent / "casebus")
    return await asyncio.create_subprocess_exec(
        exe,
        "adapter",
        kind,
        "--agency",
        agency,
        "--key-dir",
        str(key_dir),
        "--port",
        str(port),
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


async def wait_healthy(client: httpx.AsyncClient, *, attempts: int) -> None:
    """Ask ``/healthz`` every 0.1 s until it answers 200, ``attempts`` times at most; the bench
    goes on either way, and its first request says what is wrong."""
    for _ in range(attempts):
        try:
            if (await client.get("/healthz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.1)
