"""Free local ports for the brokers and databases tests start of their own.

Below the kernel's ephemeral range: a port in it can be taken, while its server is down, by a
client reconnecting to it (the kernel may give the client that very port, and it connects to
itself), and a broker started again must find its port free. ``deploy/local/up`` refuses such
ports (tests/test_local_ports.py).
"""

from __future__ import annotations

import os
import random
import socket
from pathlib import Path

__all__ = ["ephemeral_low", "free_port_run", "port_free"]

_LOWEST = 20_000
# One generator per process, so that two calls in one test do not draw the same ports.
_rng = random.Random(os.getpid())


def ephemeral_low() -> int:
    """The lowest port the kernel hands out as a client's own (32768 unless configured)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port_run(count: int) -> int:
    """The first of ``count`` consecutive ports, all free now, below the ephemeral range."""
    top = ephemeral_low() - count
    for _ in range(500):
        base = _rng.randrange(_LOWEST, top)
        if all(port_free(p) for p in range(base, base + count)):
            return base
    raise RuntimeError(f"no {count} consecutive free ports between {_LOWEST} and {top + count}")
