"""How long the audit log has gone unwitnessed: for the metrics, and for the router to refuse
new submissions once that is too long (``CASEBUS_AUDIT_WITNESS_FAIL_CLOSED_AFTER_S``).

Under a witness policy a checkpoint is published only once a quorum cosigned it;
a witness that is down delays publication but never loses or accepts a message. What grows
meanwhile is the unwitnessed window: the time since the oldest checkpoint signed after the
newest quorum-cosigned one. The state is read from PostgreSQL after every checkpoint
attempt, so every router replica sees the same window, whichever replica signed or published,
and a restarted router knows the window it restarted into.

Fail open is the default, and why. X-Road refuses new messages once timestamping has failed
for a configured period; its messages can wait. Here a refusal stops a 两法衔接 transfer: a
criminal case file that must reach the police within statutory 24-hour deadlines would be
refused because a witness in another building is down. And refusing buys little: the log
keeps recording every message while a witness is away, and when it returns it cosigns only
a checkpoint consistent with the last one it cosigned (c2sp.org/tlog-witness: the router
sends a consistency proof across the whole outage), so a history rewritten meanwhile is
still caught. Only the window in which a rewrite would go unnoticed grows, and the alert
``CasebusAuditUnwitnessed`` (deploy/prometheus/delivery-rules.yaml) bounds it. A deployment
whose rules say otherwise sets the setting and gets X-Road's behaviour: every new
submission is nacked ``log_unwitnessed`` (audited and dead-lettered like any refusal) until
a checkpoint is cosigned again; the refused sender may resubmit the same message then.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

import structlog

from bus.audit.witnessing import WitnessPolicy
from bus.db import Executor
from bus.errors import Problem
from bus.router import metrics
from bus.router.classify import UNWITNESSED

__all__ = ["WitnessState", "WitnessWatch", "read_witness_state", "unwitnessed_refusal"]

log = structlog.get_logger("casebus.audit")


@dataclass(frozen=True, slots=True)
class WitnessState:
    """The log's newest signed and newest quorum-cosigned checkpoints, by their signed time."""

    signed_ms: int | None
    witnessed_ms: int | None
    unwitnessed_since_ms: int | None
    """The signed time of the first checkpoint after the newest cosigned one; None: none."""

    def unwitnessed_s(self, now_s: float) -> float:
        """How long checkpoints have waited for a quorum (0 when none waits)."""
        if self.unwitnessed_since_ms is None:
            return 0.0
        return max(0.0, now_s - self.unwitnessed_since_ms / 1000)


def unwitnessed_refusal(
    state: WitnessState | None, *, now: datetime, limit_s: float | None
) -> Problem | None:
    """Why a new submission is refused now, or None: only when a limit is set and the log has
    gone unwitnessed longer (an unknown state, before the first reading, is not refused)."""
    if limit_s is None or state is None:
        return None
    age = state.unwitnessed_s(now.timestamp())
    if age <= limit_s:
        return None
    return Problem(
        "audit",
        UNWITNESSED,
        f"no quorum of witnesses has cosigned the audit log for {age:.0f} s; with "
        f"CASEBUS_AUDIT_WITNESS_FAIL_CLOSED_AFTER_S={limit_s:g} the bus refuses new messages "
        "until one does (resubmit then)",
        round(age, 1),
        f"审计日志已有 {age:.0f} 秒未获见证人共同签名，总线暂停接收新消息（恢复后可重新提交）",
    )


async def read_witness_state(db: Executor, policy: WitnessPolicy) -> WitnessState:
    """The state as the database has it (three index lookups on audit_checkpoints)."""
    signed = await db.fetchval(
        "SELECT timestamp_ms FROM audit_checkpoints ORDER BY tree_size DESC LIMIT 1"
    )
    size = await policy.latest_quorum_size(db)
    witnessed = None
    if size is not None:
        witnessed = await db.fetchval(
            "SELECT timestamp_ms FROM audit_checkpoints WHERE tree_size = $1", size
        )
    since = await db.fetchval(
        "SELECT timestamp_ms FROM audit_checkpoints WHERE tree_size > $1 "
        "ORDER BY tree_size LIMIT 1",
        size or 0,
    )
    return WitnessState(
        None if signed is None else int(signed),
        None if witnessed is None else int(witnessed),
        None if since is None else int(since),
    )


class WitnessWatch:
    """Reads the state after each checkpoint attempt, exports it, and answers the classifier."""

    def __init__(
        self, db: Executor, policy: WitnessPolicy, *, fail_closed_after_s: float | None
    ) -> None:
        self._db = db
        self._policy = policy
        self._limit_s = fail_closed_after_s
        self._state: WitnessState | None = None
        self._refusing = False
        if fail_closed_after_s is not None:
            metrics.FAIL_CLOSED_AFTER.set(fail_closed_after_s)

    @property
    def state(self) -> WitnessState | None:
        """The last reading (None before the first)."""
        return self._state

    async def refresh(self) -> WitnessState:
        """Read the state again and set the gauges."""
        state = await read_witness_state(self._db, self._policy)
        self._state = state
        now_s = time.time()
        if state.signed_ms is not None:
            metrics.SIGNED_AT.set(state.signed_ms / 1000)
        if state.witnessed_ms is not None:
            metrics.WITNESSED_AT.set(state.witnessed_ms / 1000)
        metrics.UNWITNESSED.set(state.unwitnessed_s(now_s))
        refusing = self._limit_s is not None and state.unwitnessed_s(now_s) > self._limit_s
        if refusing != self._refusing:
            self._refusing = refusing
            event = "audit.fail_closed" if refusing else "audit.fail_closed_ended"
            log.warning(
                event,
                unwitnessed_s=round(state.unwitnessed_s(now_s), 1),
                fail_closed_after_s=self._limit_s,
            )
        return state

    def refusal(self, now: datetime) -> Problem | None:
        """The classifier's question: refuse a submission now, and why."""
        return unwitnessed_refusal(self._state, now=now, limit_s=self._limit_s)
