"""The soak's bus: a scratch database and topic prefix, the router and the adapters as real
processes (``casebus router``, ``casebus adapter <kind>``), a fake department behind every
agency, and the faults: broker and PostgreSQL restarts through ``deploy/local``, a router
SIGKILL, a department's webhook going away."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import asyncpg
import httpx
from _common import admin_sql, cpu_seconds, delete_topics, say, scratch_settings, with_db
from _soak_departments import Departments
from _soak_load import COURT, ENFORCEMENT, POLICE

from adapters._framework.auth import create_token
from bus.agencies import load_registry
from bus.agency_db import sync_agencies
from bus.db import migrate
from bus.routing import RoutingPolicy, load_policy
from bus.settings import REPO_ROOT, Settings
from bus.signing import algorithm_of_profile, write_keypair
from bus.sim.world import PROCURATORATE, REGULATORS
from bus.topics import ensure_topics

__all__ = ["LOCAL", "AdapterProcess", "SoakWorld", "layout", "process_cpu"]

_EXE = str(Path(sys.executable).parent / "casebus")
LOCAL = REPO_ROOT / "deploy" / "local"
"""The deploy/local scripts (up, down, status)."""


def layout(split: int) -> list[tuple[str, str, tuple[str, ...]]]:
    """(process name, adapter kind, agencies): each agency is served by exactly one process (two
    webhook deliverers for one agency would race for its rows), the busy kinds by ``split``."""

    def parts(kind: str, agencies: tuple[str, ...]) -> list[tuple[str, str, tuple[str, ...]]]:
        n = max(1, min(split, len(agencies)))
        return [(f"{kind}-{i + 1}" if n > 1 else kind, kind, agencies[i::n]) for i in range(n)]

    return [
        *parts("regulators", REGULATORS),
        *parts("enforcement", ENFORCEMENT),
        ("police", "police", POLICE),
        ("procuratorate", "procuratorate", (PROCURATORATE,)),
        ("court", "court", (COURT,)),
    ]


@dataclass
class AdapterProcess:
    """One ``casebus adapter`` process."""

    name: str
    kind: str
    agencies: tuple[str, ...]
    port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        """Its HTTP API."""
        return f"http://127.0.0.1:{self.port}"


@dataclass
class SoakWorld:
    """Everything the soak starts; :meth:`close` stops and removes it again."""

    run_dir: Path
    bootstrap: str
    admin_dsn: str
    log_level: str
    split: int
    database: str = field(default_factory=lambda: f"casebus_soak_{uuid.uuid4().hex[:8]}")
    prefix: str = field(default_factory=lambda: f"soak{uuid.uuid4().hex[:8]}")
    departments: Departments | None = None
    adapters: list[AdapterProcess] = field(default_factory=list)
    tokens: dict[str, str] = field(default_factory=dict)
    router: subprocess.Popen[bytes] | None = None
    router_starts: int = 0
    restarted_cpu_s: dict[str, float] = field(default_factory=dict)
    """CPU seconds of processes that were stopped or killed, by name (the next one starts
    from zero): the router, Kafka, PostgreSQL."""
    _router_log_from: int = 0
    _created: bool = False
    _logs: list[IO[bytes]] = field(default_factory=list)

    @property
    def dsn(self) -> str:
        """The scratch database."""
        return with_db(self.admin_dsn, self.database)

    @property
    def key_dir(self) -> Path:
        """Agency keys and webhook secrets, as ``casebus adapter --key-dir`` reads them."""
        return self.run_dir / "keys"

    @property
    def bus_key(self) -> Path:
        """The bus's own signing key (checkpoints, receipts)."""
        return self.key_dir / "casebus" / "casebus.key.pem"

    @property
    def settings(self) -> Settings:
        """Settings of the scratch world."""
        return scratch_settings(
            kafka_bootstrap=self.bootstrap,
            database_url=self.dsn,
            topic_prefix=self.prefix,
            bus_key_file=self.bus_key,
        )

    def env(self, **fields: object) -> dict[str, str]:
        """The environment of every child process (and of ``casebus audit verify``), with
        ``fields`` of the settings replaced."""
        child = {"log_format": "json", "log_level": self.log_level} | fields
        return self.settings.model_copy(update=child).to_env(os.environ)

    def policy(self) -> RoutingPolicy:
        """The routing policy the router runs with."""
        s = self.settings
        return load_policy(s.routing_policy_file, load_registry(s.agencies_file))

    # -- set-up ---------------------------------------------------------------------------------

    async def setup(self) -> None:
        """Database, topics, keys, tokens, departments; then the router and the adapters."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        await admin_sql(self.admin_dsn, f'CREATE DATABASE "{self.database}"')
        self._created = True
        await migrate(self.dsn)
        registry = load_registry(self.settings.agencies_file)
        await ensure_topics(self.settings, registry)
        write_keypair("casebus", self.bus_key.parent)
        groups = layout(self.split)
        algorithm = algorithm_of_profile(self.settings.crypto_profile)  # the agencies' keys
        agencies = [a for _, _, group in groups for a in group]
        ports = _free_ports(len(groups) + len(agencies))
        self.adapters = [
            AdapterProcess(name, kind, group, port)
            for (name, kind, group), port in zip(groups, ports, strict=False)
        ]
        specs = []
        conn = await asyncpg.connect(self.dsn)
        try:
            await sync_agencies(conn, registry)
            for agency, port in zip(agencies, ports[len(groups) :], strict=True):
                write_keypair(agency, self.key_dir, algorithm=algorithm)
                secret = secrets.token_hex(16).encode()
                # Owner-only from the start: `casebus adapter` refuses a readable secret.
                path = self.key_dir / f"{agency}.webhook-secret"
                path.touch(mode=0o600)
                path.chmod(0o600)
                path.write_bytes(secret)
                specs.append((agency, secret, port))
                self.tokens[agency] = await create_token(conn, agency, label="soak")
        finally:
            await conn.close()
        self.departments = Departments(specs)
        await self.departments.start()
        self.start_router()
        await self.wait_router_started(timeout_s=120)
        for adapter in self.adapters:
            self._start_adapter(adapter)
        await asyncio.gather(*(self._wait_healthy(a) for a in self.adapters))

    def _log(self, name: str) -> IO[bytes]:
        out = open(self.run_dir / f"{name}.log", "ab")  # noqa: SIM115 - the child keeps it open
        self._logs.append(out)
        return out

    def start_router(self) -> None:
        """``casebus router`` as a child process, logging to ``router.log``."""
        self.router_starts += 1
        out = self._log("router")
        out.write(f"\n=== soak: router start {self.router_starts}\n".encode())
        out.flush()
        self._router_log_from = out.tell()
        env = self.env(router_id="soak-router", log_level="info")
        self.router = subprocess.Popen(
            [_EXE, "router"], env=env, stdout=out, stderr=subprocess.STDOUT
        )

    async def wait_router_started(self, timeout_s: float) -> None:
        """Until the current router logged ``router.started`` (its consumer joined)."""
        log = self.run_dir / "router.log"
        deadline = time.monotonic() + timeout_s
        with open(log, "rb") as f:
            f.seek(self._router_log_from)
            seen = b""
            while time.monotonic() < deadline:
                seen = seen[-100:] + f.read()
                if b"router.started" in seen:
                    return
                if self.router is not None and self.router.poll() is not None:
                    raise SystemExit(f"the router exited ({self.router.returncode}); see {log}")
                await asyncio.sleep(0.2)
        raise SystemExit(f"the router did not start in {timeout_s:.0f} s; see {log}")

    def note_restart(self, name: str) -> None:
        """Keep the CPU seconds of ``name`` (router, kafka, postgresql) before it goes away."""
        pid = self.processes().get(name)
        if pid:
            self.restarted_cpu_s[name] = self.restarted_cpu_s.get(name, 0.0) + process_cpu(
                name, pid
            )

    def kill_router(self) -> None:
        """SIGKILL the router, as a crashed node would be."""
        if self.router is not None and self.router.poll() is None:
            self.note_restart("router")
            self.router.send_signal(signal.SIGKILL)
            self.router.wait()

    def _start_adapter(self, adapter: AdapterProcess) -> None:
        args = [_EXE, "adapter", adapter.kind, "--key-dir", str(self.key_dir)]
        args += ["--port", str(adapter.port)]
        assert self.departments is not None
        for agency in adapter.agencies:
            args += ["--agency", agency, "--webhook", f"{agency}={self.departments.urls[agency]}"]
        out = self._log(f"adapter-{adapter.name}")
        adapter.proc = subprocess.Popen(args, env=self.env(), stdout=out, stderr=subprocess.STDOUT)

    async def _wait_healthy(self, adapter: AdapterProcess) -> None:
        async with httpx.AsyncClient(base_url=adapter.base_url, timeout=2) as client:
            for _ in range(600):
                if adapter.proc is not None and adapter.proc.poll() is not None:
                    log = self.run_dir / f"adapter-{adapter.name}.log"
                    raise SystemExit(f"adapter {adapter.name} exited; see {log}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get("/healthz")).status_code == 200:
                        return
                await asyncio.sleep(0.2)
        raise SystemExit(f"adapter {adapter.name} did not answer /healthz in 120 s")

    def base_urls(self) -> dict[str, str]:
        """Agency → the API of the adapter process serving it."""
        return {a: p.base_url for p in self.adapters for a in p.agencies}

    def processes(self) -> dict[str, int]:
        """Name → pid of every running child, the broker and the database server."""
        out = {f"adapter {a.name}": a.proc.pid for a in self.adapters if a.proc is not None}
        if self.router is not None and self.router.poll() is None:
            out["router"] = self.router.pid
        if self.departments is not None and self.departments.pid:
            out["departments (harness)"] = self.departments.pid
        state = self.settings.state_dir
        with contextlib.suppress(OSError, ValueError):
            out["kafka"] = int((state / "kafka" / "kafka.pid").read_text().split()[0])
        with contextlib.suppress(OSError, ValueError):
            out["postgresql"] = int(
                (state / "pg" / "data" / "postmaster.pid").read_text().split()[0]
            )
        return out

    def dead_children(self) -> list[str]:
        """Adapters (or the router) that exited without being told to."""
        dead = [
            f"adapter {a.name} (exit {a.proc.returncode})"
            for a in self.adapters
            if a.proc is not None and a.proc.poll() is not None
        ]
        if self.router is not None and self.router.poll() is not None:
            dead.append(f"router (exit {self.router.returncode})")
        return dead

    # -- infrastructure faults ------------------------------------------------------------------

    @staticmethod
    async def local(*args: str) -> None:
        """``deploy/local/<args>``, with this process's CASEBUS_STATE_DIR and ports."""

        def run() -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [str(LOCAL / args[0]), *args[1:]], capture_output=True, text=True, timeout=300
            )

        proc = await asyncio.to_thread(run)
        if proc.returncode != 0:
            raise RuntimeError(f"deploy/local/{' '.join(args)} failed:\n{proc.stderr[-3000:]}")

    # -- tear-down ------------------------------------------------------------------------------

    async def stop_processes(self) -> None:
        """SIGTERM the adapters and the router; SIGKILL what has not ended after 30 s."""
        procs = [a.proc for a in self.adapters if a.proc is not None]
        if self.router is not None:
            procs.append(self.router)
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        while any(p.poll() is None for p in procs) and time.monotonic() < deadline:  # noqa: ASYNC110 - a child's exit is no event here
            await asyncio.sleep(0.2)
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()

    async def close(self, *, keep: bool) -> None:
        """Stop everything; unless ``keep``, drop the database and delete the topics."""
        await self.stop_processes()
        if self.departments is not None:
            await self.departments.close()
        for out in self._logs:
            out.close()
        if keep or not self._created:
            return
        try:
            await delete_topics(self.bootstrap, [self.prefix])
            await admin_sql(
                self.admin_dsn, f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)'
            )
        except Exception as e:  # the report is out already: say what is left behind
            say("soak", f"clean-up failed ({e!r}): drop {self.database}, delete {self.prefix}.*")
        else:
            say("soak", f"dropped database {self.database} and topics {self.prefix}.*")


def _free_ports(n: int) -> list[int]:
    import socket

    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def process_cpu(name: str, pid: int) -> float:
    """CPU seconds of a process so far; for PostgreSQL, with its backends (children of the
    postmaster, alive or reaped)."""
    if name != "postgresql":
        return cpu_seconds(pid)
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(entry) == pid:
            total += sum(int(x) for x in fields[11:15]) / tick
        elif int(fields[1]) == pid:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total
