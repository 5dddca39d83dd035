"""Fault injection for crash tests: kill this process at a named point of its work.

``CASEBUS_FAILPOINTS="router.after_audit:3"`` SIGKILLs the process the third time it passes
``router.after_audit``. Unset (always, in production), :func:`hit` is a dictionary lookup.
A real SIGKILL, not an exception: the crash tests must see what a power cut leaves behind.

``name:count:stop`` SIGSTOPs the process there instead: a zombie, frozen mid-transaction
until the test sends SIGCONT, as a replica cut off by the network or paused past its session
would be. Its heartbeats stop too, so the group hands its partitions to another replica.
"""

from __future__ import annotations

import os
import signal

__all__ = ["fails", "hit"]


_ACTIONS = {"kill": signal.SIGKILL, "stop": signal.SIGSTOP}


def _parse(spec: str) -> tuple[dict[str, int], dict[str, str]]:
    points: dict[str, int] = {}
    actions: dict[str, str] = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, _, rest = item.partition(":")
        count, _, action = rest.partition(":")
        if action and action not in _ACTIONS:
            raise ValueError(f"CASEBUS_FAILPOINTS: {item!r}: the action is kill or stop")
        points[name] = int(count or "1")
        actions[name] = action or "kill"
    return points, actions


_ARMED, _ACTION = _parse(os.environ.get("CASEBUS_FAILPOINTS", ""))
_SEEN: dict[str, int] = {}


def hit(name: str) -> None:
    """Pass the failpoint ``name``; dies (or freezes) here the first time its count is
    reached. A frozen process that is let go goes on as if nothing happened."""
    if not _ARMED or name not in _ARMED:
        return
    _SEEN[name] = _SEEN.get(name, 0) + 1
    if _SEEN[name] == _ARMED[name] or (_ACTION[name] == "kill" and _SEEN[name] > _ARMED[name]):
        os.kill(os.getpid(), _ACTIONS[_ACTION[name]])


def fails(name: str) -> bool:
    """Pass the failpoint ``name``; True, once, when it is armed and its count is reached: the
    caller then fails as the real fault would (a Kafka transaction that cannot commit)."""
    if not _ARMED or name not in _ARMED:
        return False
    _SEEN[name] = _SEEN.get(name, 0) + 1
    return _SEEN[name] == _ARMED[name]
