"""A real S3 server for the tests: SeaweedFS (``weed server -s3``) started by the test, on free
ports of 127.0.0.1, with one identity whose requests must be signed (SigV4).

The ``weed`` binary comes from ``CASEBUS_WEED``, else the user cache
(``~/.cache/casebus/bin/weed``), else it is built there once from the Go module proxy (the pinned
version below; ``go`` from ``PATH`` or ``/usr/local/go/bin``). The build is heavy — minutes on
two cores — which is why it is kept.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from portkit import ephemeral_low, free_port_run, port_free

__all__ = ["SEAWEEDFS_VERSION", "S3Server", "seaweedfs", "weed_binary"]

SEAWEEDFS_VERSION = "v0.0.0-20261109003541-7506e5f91cd6"
_MODULE = "github.com/seaweedfs/seaweedfs"
_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "casebus" / "bin"


@dataclass(frozen=True)
class S3Server:
    """Where the server answers and who may sign requests to it."""

    endpoint_url: str
    access_key: str
    secret_key: str


def _go() -> str:
    found = shutil.which("go") or "/usr/local/go/bin/go"
    if not Path(found).exists():
        raise AssertionError("no weed binary and no go to build it (set CASEBUS_WEED)")
    return found


def weed_binary(*, nice: bool = True) -> Path:
    """The ``weed`` binary, built into the user cache the first time. Builders take turns on a
    lock file, so a test waits for a build already running (``.ci/run`` starts one in the
    background as it begins) instead of starting a second. ``nice``: build at the lowest
    priority, beside running tests."""
    if explicit := os.environ.get("CASEBUS_WEED"):
        return Path(explicit)
    target = _CACHE / "weed"
    if target.exists():
        return target
    _CACHE.mkdir(parents=True, exist_ok=True)
    with open(_CACHE / "weed.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not target.exists():  # built by whoever held the lock before
            _build(target, nice=nice)
    return target


def _build(target: Path, *, nice: bool) -> None:
    go = _go()
    # `go install` refuses a module whose go.mod has replace directives: build in its folder.
    listed = subprocess.run(
        [go, "mod", "download", "-json", f"{_MODULE}@{SEAWEEDFS_VERSION}"],
        check=True,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    source = json.loads(listed.stdout)["Dir"]
    partial = target.with_suffix(".partial")
    subprocess.run(
        [*(["nice", "-n", "19"] if nice else []), go, "build", "-o", str(partial), "./weed"],
        cwd=source,
        check=True,
        timeout=3600,
    )
    partial.rename(target)


def _free_ports(n: int) -> list[int]:
    """``n`` ports free on 127.0.0.1 whose +10000 (SeaweedFS's gRPC ports) are free too, all
    below the kernel's ephemeral range: probing a port there before its server listens can be
    answered by a self-connect, which then holds the port the server is about to bind
    (tests/portkit.py)."""
    ports: list[int] = []
    while len(ports) < n:
        port = free_port_run(1)
        if port + 10_000 >= ephemeral_low() or port in ports or not port_free(port + 10_000):
            continue
        ports.append(port)
    return ports


def _answers(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@contextlib.contextmanager
def seaweedfs(workdir: Path, *, timeout_s: float = 120.0) -> Iterator[S3Server]:
    """A SeaweedFS master, volume server, filer and S3 gateway for the block."""
    weed = weed_binary()
    workdir.mkdir(parents=True, exist_ok=True)
    server = S3Server("", "casebus-test", "casebus-test-secret-key")
    config = workdir / "s3.json"
    config.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "casebus",
                        "credentials": [
                            {"accessKey": server.access_key, "secretKey": server.secret_key}
                        ],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    master, volume, filer, s3 = _free_ports(4)
    argv = [
        str(weed),
        "server",
        f"-dir={workdir}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-master.port={master}",
        "-master.volumeSizeLimitMB=64",
        f"-volume.port={volume}",
        "-volume.max=100",
        "-volume.preStopSeconds=0",
        "-filer",
        f"-filer.port={filer}",
        "-s3",
        f"-s3.port={s3}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.config={config}",
    ]
    log = workdir / "weed.log"
    with open(log, "ab") as out:
        child = subprocess.Popen(argv, stdout=out, stderr=out, cwd=workdir)
    try:
        deadline = time.monotonic() + timeout_s
        while not _answers(s3):
            if child.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"SeaweedFS did not start: {log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield S3Server(f"http://127.0.0.1:{s3}", server.access_key, server.secret_key)
    finally:
        # The server and its folder are the test's alone, and nothing is read from them after
        # the block. Asked to stop, weed stops its volume server at once (no heartbeat grace:
        # -volume.preStopSeconds=0) but then takes ~15 s while its S3 gateway retries the
        # filer it just stopped: killed after a short grace, three servers a run save ~40 s.
        child.terminate()
        try:
            child.wait(3)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(10)


if __name__ == "__main__":  # python3 tests/s3kit.py: build it now (.ci/run, in the background)
    print(weed_binary(nice=False))
