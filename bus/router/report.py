"""What the router says about a batch: its log lines and its metrics.

Once per batch at info (``router.accepted`` when audited, ``router.delivered`` when its Kafka
transaction committed, with the message count, every message id, the counts per kind, the
offsets read and committed), per message only at debug (``router.message_accepted``,
``router.message_delivered``), and a warning for each refused record with its code and every
problem. The metrics are those of bus.router.metrics.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import structlog
from aiokafka.structs import OffsetAndMetadata, TopicPartition

from bus.router import metrics
from bus.router.batch import BatchPlan
from bus.router.outputs import rejection_id
from bus.router.verdict import Accepted, Verdict

__all__ = ["accepted", "delivered"]

log = structlog.get_logger("casebus.router")


def accepted(plan: BatchPlan) -> dict[str, object]:
    """Log a batch's accepted messages, audited; returns the batch's context, for
    :func:`delivered` to say the same of it."""
    context = _batch_context(plan.accepted) if plan.accepted else {}
    if plan.accepted:
        log.info("router.accepted", **context)
        if _debug_on(log):
            for v in plan.accepted:
                log.debug(
                    "router.message_accepted",
                    **_context(v),
                    key_id=v.key.key_id if v.key else None,
                )
    return context


def delivered(
    plan: BatchPlan,
    offsets: dict[TopicPartition, OffsetAndMetadata],
    *,
    size: int,
    context: dict[str, object],
) -> None:
    """Log and count a batch of ``size`` records whose Kafka transaction committed
    ``offsets``: its deliveries, duplicates and refusals."""
    done_ms = datetime.now(UTC).timestamp() * 1000
    metrics.BATCH_SIZE.observe(size)
    delivered: Counter[str] = Counter()
    for v in plan.accepted:
        delivered[v.envelope.kind] += 1
        metrics.LATENCY.observe((done_ms - v.record.timestamp) / 1000)
    for kind, n in delivered.items():
        metrics.MESSAGES.labels(kind=kind, outcome="delivered").inc(n)
    if plan.accepted:
        log.info("router.delivered", **context, offsets=_offsets(offsets))
        if _debug_on(log):
            for v in plan.accepted:
                log.debug("router.message_delivered", **_context(v), deliver_to=list(v.deliver_to))
    for kind, n in Counter(_kind(d) for d in plan.duplicates).items():
        metrics.MESSAGES.labels(kind=kind, outcome="duplicate").inc(n)
    for r in plan.refused:
        outcome = "dead_lettered" if r.outcome == "dead" else "rejected"
        metrics.MESSAGES.labels(kind=_kind(r), outcome=outcome).inc()
        log.warning(
            f"router.{outcome}",
            message_id=str(r.message_id or rejection_id(r)),
            case_id=r.case_id,
            kind=_kind(r),
            sender=r.reply_to,
            code=r.code,
            problems=[p.as_dict() for p in r.problems],
            partition=r.record.partition,
            offset=r.record.offset,
        )


def _context(v: Accepted) -> dict[str, object]:
    """What every event about an accepted message says: which message, whose, and where from."""
    env = v.envelope
    return {
        "message_id": str(env.message_id),
        "case_id": env.case_id,
        "kind": env.kind,
        "sender": env.sender,
        "partition": v.record.partition,
        "offset": v.record.offset,
    }


def _debug_on(logger: Any) -> bool:
    """Whether per-message debug events would be written (not at the services' info)."""
    enabled = getattr(logger, "is_enabled_for", None)
    return bool(enabled(logging.DEBUG)) if callable(enabled) else True


def _batch_context(accepted: Sequence[Accepted]) -> dict[str, object]:
    """What the router says once per batch of accepted messages (per message at debug): how
    many, their ids in record order, how many of each kind, and where they were read."""
    kinds: Counter[str] = Counter(v.envelope.kind for v in accepted)
    read: dict[str, list[int]] = {}
    for v in accepted:
        r = v.record
        where = read.setdefault(f"{r.topic}/{r.partition}", [r.offset, r.offset])
        where[0], where[1] = min(where[0], r.offset), max(where[1], r.offset)
    return {
        "messages": len(accepted),
        "message_ids": [str(v.envelope.message_id) for v in accepted],
        "kinds": dict(kinds),
        "read": read,
    }


def _offsets(offsets: dict[TopicPartition, OffsetAndMetadata]) -> dict[str, int]:
    """The consumer offsets the batch's transaction committed, as ``topic/partition: next``."""
    return {f"{tp.topic}/{tp.partition}": om.offset for tp, om in sorted(offsets.items())}


def _kind(v: Verdict) -> str:
    return v.envelope.kind if v.envelope is not None else "unknown"
