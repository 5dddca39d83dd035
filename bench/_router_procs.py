"""The processes bench/router.py measures: a raw pipe, or K router replicas in one group."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from _common import cpu_seconds, vm_kib  # bench/, first on sys.path when a bench runs

from bus.settings import Settings

__all__ = ["Procs", "spawn_pipe", "spawn_router", "tail"]


def spawn_pipe(
    script: Path, mode: str, bootstrap: str, settings: Settings, recipient: str, log: Path
) -> Procs:
    """``script --pipe mode`` (bench/router.py's raw pipe) forwarding submit to the inbox."""
    cmd = [
        sys.executable,
        str(script),
        "--pipe",
        mode,
        "--pipe-args",
        bootstrap,
        settings.topic_submit(),
        settings.topic_inbox(recipient),
        f"{settings.topic_prefix}.pipe",
    ]
    with open(log, "ab") as out:
        return Procs([(subprocess.Popen(cmd, stdout=out, stderr=out), log)])


def spawn_router(settings: Settings, log: Path, profile: Path | None, replicas: int = 1) -> Procs:
    """``replicas`` router processes in one consumer group (cProfile on the first only)."""
    env = settings.to_env(os.environ)
    exe = str(Path(sys.executable).parent / "casebus")
    procs = []
    for i in range(replicas):
        cmd = [exe, "router"]
        if profile is not None and i == 0:
            cmd = [sys.executable, "-m", "cProfile", "-o", str(profile), exe, "router"]
        replica_log = log.with_suffix(f".{i}.log")
        with open(replica_log, "ab") as out:
            replica_env = settings.model_copy(update={"router_id": f"bench-{i}"}).to_env(env)
            procs.append(
                (subprocess.Popen(cmd, env=replica_env, stdout=out, stderr=out), replica_log)
            )
    return Procs(procs)


class Procs:
    """The processes of one pipe: one, or several router replicas in one consumer group.
    CPU is their sum; peak RSS is the largest replica's (each is a deployment's unit)."""

    def __init__(self, procs: Sequence[tuple[subprocess.Popen[bytes], Path]]) -> None:
        self.procs = [p for p, _ in procs]
        self.logs = [log for _, log in procs]

    def died(self) -> str | None:
        """How the first replica that exited did so, with its log's tail; None if all run."""
        for p, log in zip(self.procs, self.logs, strict=True):
            if p.poll() is not None:
                return f"exited {p.returncode}:\n{tail(log)}"
        return None

    def cpu(self) -> float:
        return sum(cpu_seconds(p.pid) for p in self.procs)

    def rss_kib(self) -> int:
        return max(vm_kib(p.pid, "VmHWM") for p in self.procs)

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def tail(log: Path, lines: int = 15) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    return ""
