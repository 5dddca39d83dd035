"""The router's Prometheus metrics (defined once per process)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "BATCH_SIZE",
    "FAIL_CLOSED_AFTER",
    "HANGING_SETTLED",
    "LAG",
    "LATENCY",
    "MESSAGES",
    "OFFSETS_UNSTABLE",
    "RETRIES",
    "SIGNED_AT",
    "UNWITNESSED",
    "WITNESSED_AT",
]

MESSAGES = Counter(
    "casebus_router_messages_total",
    "Submissions handled by the router, by kind and outcome.",
    ["kind", "outcome"],
)
BATCH_SIZE = Histogram(
    "casebus_router_batch_size",
    "Records per router batch.",
    buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000),
)
LATENCY = Histogram(
    "casebus_router_latency_seconds",
    "Submit (broker append) to delivery commit, per accepted message.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
LAG = Gauge("casebus_router_consumer_lag", "Records not yet routed, by partition.", ["partition"])
OFFSETS_UNSTABLE = Gauge(
    "casebus_router_offsets_unstable_seconds",
    "How long the router has been waiting for a submit partition's committed offset to settle "
    "(Kafka answers UNSTABLE_OFFSET_COMMIT while a transaction that committed offsets for it "
    "is open); 0 when it waits for none. Past the transaction timeout it is a hanging "
    "transaction: see CasebusRouterOffsetsStuck.",
)
HANGING_SETTLED = Counter(
    "casebus_router_hanging_offsets_settled_total",
    "Hanging transactions of this router's own producer id on its group's offsets that it "
    "settled itself, by the outcome it ended them with (bus.router.hanging).",
    ["outcome"],
)
RETRIES = Counter("casebus_router_retries_total", "Audit or delivery attempts retried.", ["stage"])
SIGNED_AT = Gauge(
    "casebus_audit_signed_checkpoint_timestamp_seconds",
    "Unix time of the newest signed audit checkpoint (under a witness policy).",
)
WITNESSED_AT = Gauge(
    "casebus_audit_witnessed_checkpoint_timestamp_seconds",
    "Unix time of the newest checkpoint a quorum of witnesses cosigned.",
)
UNWITNESSED = Gauge(
    "casebus_audit_unwitnessed_seconds",
    "How long the oldest checkpoint newer than the last quorum-cosigned one has waited "
    "(0: none waits).",
)
FAIL_CLOSED_AFTER = Gauge(
    "casebus_audit_witness_fail_closed_after_seconds",
    "CASEBUS_AUDIT_WITNESS_FAIL_CLOSED_AFTER_S (exported only when set).",
)
