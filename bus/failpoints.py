"""Fault injection for crash tests: kill this process at a named point of its work.

``CASEBUS_FAILPOINTS="router.after_audit:3"`` SIGKILLs the process the third time it passes
``router.after_audit``. Unset (always, in production), :func:`hit` is a dictionary lookup.
A real SIGKILL, not an exception: the crash tests must see what a power cut leaves behind.
"""

from __future__ import annotations

import os
import signal

__all__ = ["fails", "hit"]


def _parse(spec: str) -> dict[str, int]:
    points: dict[str, int] = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, _, count = item.partition(":")
        points[name] = int(count or "1")
    return points


_ARMED = _parse(os.environ.get("CASEBUS_FAILPOINTS", ""))
_SEEN: dict[str, int] = {}


def hit(name: str) -> None:
    """Pass the failpoint ``name``; dies here if it is armed and its count is reached."""
    if not _ARMED or name not in _ARMED:
        return
    _SEEN[name] = _SEEN.get(name, 0) + 1
    if _SEEN[name] >= _ARMED[name]:
        os.kill(os.getpid(), signal.SIGKILL)


def fails(name: str) -> bool:
    """Pass the failpoint ``name``; True, once, when it is armed and its count is reached: the
    caller then fails as the real fault would (a Kafka transaction that cannot commit)."""
    if not _ARMED or name not in _ARMED:
        return False
    _SEEN[name] = _SEEN.get(name, 0) + 1
    return _SEEN[name] == _ARMED[name]
