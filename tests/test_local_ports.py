"""deploy/local refuses ports in the kernel's ephemeral range, before it starts anything.

A client reconnecting to a stopped server on such a port can be given that very port as its own
source port and connect to itself (a TCP self-connect); the restarted broker then finds its port
in use. It stopped a broker-restart fault loop on port 39092, with "Address already in use" on
every relaunch for a minute and a half.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from bus.settings import REPO_ROOT

LOCAL = REPO_ROOT / "deploy" / "local"


def _ephemeral_range() -> tuple[int, int]:
    low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    return int(low), int(high)


def _refuse(port: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", f'source "{LOCAL / "_lib.sh"}"; refuse_ephemeral_port SOME_PORT {port}'],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_a_port_inside_the_ephemeral_range_is_refused_with_the_range_named() -> None:
    low, high = _ephemeral_range()
    for port in (low, (low + high) // 2, high):
        done = _refuse(port)
        assert done.returncode != 0, port
        assert f"SOME_PORT={port}" in done.stderr
        assert f"{low}-{high}" in done.stderr
        assert "self-connect" in done.stderr


def test_ports_outside_it_are_taken() -> None:
    low, high = _ephemeral_range()
    for port in (19092, low - 1, *([high + 1] if high < 65535 else [])):
        done = _refuse(port)
        assert done.returncode == 0, (port, done.stderr)


@pytest.mark.parametrize("variable", ["CASEBUS_KAFKA_PORT", "CASEBUS_PG_PORT"])
def test_up_refuses_before_it_creates_or_starts_anything(tmp_path: Path, variable: str) -> None:
    low, high = _ephemeral_range()
    state = tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASEBUS_")}
    env.update(CASEBUS_STATE_DIR=str(state), **{variable: str((low + high) // 2)})
    done = subprocess.run([str(LOCAL / "up")], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "ephemeral port range" in done.stderr
    assert not state.exists()
