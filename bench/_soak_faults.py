"""The soak's faults: planned from the seed, injected at their time, each timed from the moment
the component went away to the moment it was back.

A broker restart needs care on a test machine. ``deploy/local`` may run Kafka on a port inside
the kernel's ephemeral range (32768–60999 here). While the broker is down, every bus client keeps
reconnecting to that port; sooner or later the kernel picks the port itself as a client's source
port, the connection meets itself (a TCP self-connect), and its TIME_WAIT holds the port. Kafka
binds its listener without SO_REUSEADDR, so it cannot come back: the first soak runs saw a broker
stay down for good. :class:`PortHolder` keeps the port bound while the broker is away (resetting
whatever connects, as a dead broker's host would) and lets go only once the new broker logs that
it is about to open it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
import time
from dataclasses import dataclass
from pathlib import Path

from _common import say
from _soak_load import ENFORCEMENT, POLICE
from _soak_world import LOCAL, SoakWorld

from bus.sim.world import PROCURATORATE

__all__ = ["FAULTS", "Fault", "PortHolder", "plan_faults", "run_faults"]

FAULTS = ("kafka", "router", "webhook", "pg")
_AWAY_S = {"kafka": (5.0, 15.0), "router": (2.0, 10.0), "webhook": (30.0, 60.0), "pg": (5.0, 15.0)}
_ABOUT_TO_BIND = b"Waiting for the broker to be unfenced"
"""Kafka logs this just before it opens its client listener (the controller's is open already)."""


@dataclass
class Fault:
    """One fault: planned, then as it happened (monotonic seconds)."""

    kind: str
    at_s: float
    """Planned start, seconds into the load."""
    away_s: float
    """Planned time away (a restart adds its own time to it)."""
    target: str = ""
    start: float = 0.0
    back: float = 0.0


def plan_faults(rng: random.Random, duration_s: float, kinds: list[str]) -> list[Fault]:
    """One fault of each kind in shuffled order, each in a slot of its own; an outage is cut
    short to end within the first 60 % of its slot, so each recovery is measured on its own."""
    kinds = list(kinds)
    rng.shuffle(kinds)
    lo, hi = 0.08 * duration_s, 0.9 * duration_s
    slot = (hi - lo) / max(1, len(kinds))
    out = []
    for i, kind in enumerate(kinds):
        at = lo + i * slot + rng.uniform(0, 0.25 * slot)
        low, high = _AWAY_S[kind]
        away = min(rng.uniform(low, high), max(2.0, lo + (i + 0.6) * slot - at))
        target = rng.choice([*ENFORCEMENT, *POLICE, PROCURATORATE]) if kind == "webhook" else ""
        out.append(Fault(kind, at, away, target))
    return out


class PortHolder:
    """Binds a local port and resets every connection to it, until :meth:`release`."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._sock: socket.socket | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def held(self) -> bool:
        """Whether the port is bound by us."""
        return self._sock is not None

    async def hold(self, timeout_s: float = 120.0) -> None:
        """Bind as soon as the port is free (a TIME_WAIT does not stop us: SO_REUSEADDR)."""
        deadline = time.monotonic() + timeout_s
        while self._sock is None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setblocking(False)
            try:
                sock.bind(("127.0.0.1", self.port))
                sock.listen(512)
            except OSError:
                sock.close()
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.02)
                continue
            self._sock = sock
        self._task = asyncio.create_task(self._reset_all(self._sock))

    async def _reset_all(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        linger = struct.pack("ii", 1, 0)  # close with RST: no TIME_WAIT left on the port
        while True:
            conn, _ = await loop.sock_accept(sock)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            conn.close()

    async def release(self) -> None:
        """Let go of the port (pending connections are reset)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._sock is not None:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self._sock.close()
            self._sock = None


class _Tail:
    """New bytes of a log file that is replaced (renamed away) on every broker launch."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._inode = -1
        self._offset = 0
        self.new_file = False

    def read(self) -> bytes:
        try:
            st = self.path.stat()
        except OSError:
            return b""
        self.new_file = st.st_ino != self._inode or st.st_size < self._offset
        if self.new_file:
            self._inode, self._offset = st.st_ino, 0
        with open(self.path, "rb") as f:
            f.seek(self._offset)
            data = f.read()
        self._offset += len(data)
        return data


async def restart_kafka(world: SoakWorld, away_s: float, started: float) -> None:
    """``deploy/local/down kafka``, ``away_s`` later ``up``, holding the port in between."""
    port = int(world.bootstrap.split(",")[0].rpartition(":")[2])
    holder = PortHolder(port)
    grab = asyncio.create_task(holder.hold())  # the moment the broker lets go of it
    try:
        await world.local("down", "kafka")
        await grab
        await asyncio.sleep(max(0.0, started + away_s - time.monotonic()))
        state = world.settings.state_dir
        tail = _Tail(state / "kafka" / "logs" / "server.log")
        tail.read()  # the old broker's lines
        # `up` refuses to start a broker on a port that answers: let go for the moment between
        # its check and its launch of the JVM (which renames the log), then hold on again.
        await holder.release()
        with open(world.run_dir / "deploy-local.log", "ab") as out:
            up = await asyncio.create_subprocess_exec(
                str(LOCAL / "up"), stdout=asyncio.subprocess.DEVNULL, stderr=out
            )
            seen = b""
            while up.returncode is None:
                seen = seen[-200:] + tail.read()
                if tail.new_file and not holder.held:  # a broker launched: hold until it binds
                    await holder.hold()
                    seen = seen[-200:] + tail.read()
                if holder.held and _ABOUT_TO_BIND in seen:
                    await holder.release()
                    seen = b""
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(up.wait(), 0.01)
        if up.returncode != 0:
            raise RuntimeError(f"deploy/local/up failed ({up.returncode}); see deploy-local.log")
    finally:
        grab.cancel()
        await holder.release()


async def inject(world: SoakWorld, fault: Fault) -> None:
    """Do it, recording when the component went away and when it was back."""
    assert world.departments is not None
    fault.start = time.monotonic()
    say("soak", f"fault: {fault.kind} {fault.target} away for {fault.away_s:.0f} s")

    def remaining() -> float:
        return max(0.0, fault.start + fault.away_s - time.monotonic())

    if fault.kind == "kafka":
        world.note_restart("kafka")
        await restart_kafka(world, fault.away_s, fault.start)
    elif fault.kind == "pg":
        world.note_restart("postgresql")
        await world.local("down", "pg")
        await asyncio.sleep(remaining())
        await world.local("up")
    elif fault.kind == "router":
        world.kill_router()
        await asyncio.sleep(remaining())
        world.start_router()
        await world.wait_router_started(timeout_s=300)
    else:
        await world.departments.take_down(fault.target)
        await asyncio.sleep(remaining())
        await world.departments.bring_up(fault.target)
    fault.back = time.monotonic()
    say("soak", f"fault: {fault.kind} back after {fault.back - fault.start:.1f} s")


async def run_faults(world: SoakWorld, faults: list[Fault], t0: float) -> None:
    """Inject each fault at its planned time."""
    for fault in faults:
        await asyncio.sleep(max(0.0, t0 + fault.at_s - time.monotonic()))
        await inject(world, fault)
