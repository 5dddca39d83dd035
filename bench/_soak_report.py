"""The soak's verdict: what every department saw, set against what was accepted and where the
routing policy sends it; the audit log's own checks; the printed tables."""

from __future__ import annotations

import asyncio
import importlib
import itertools
import os
import statistics
import subprocess
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
from _common import cpu_seconds, markdown_table, vm_kib
from _soak_departments import Record
from _soak_load import MIX, LoadGenerator, Submission
from _soak_world import process_cpu

from adapters._framework.outbound import answer_id

__all__ = [
    "FaultResult",
    "Figures",
    "Usage",
    "ack_id",
    "analyse",
    "audit_checks",
    "bottlenecks",
    "pct",
    "tables",
    "usage_snapshot",
]

_ADAPTER_KINDS = ("regulators", "enforcement", "police", "procuratorate", "court")


def ack_id(recipient: str, message_id: str) -> str:
    """The id of ``recipient``'s ``bus.ack`` of ``message_id``: fixed by the adapter framework,
    so the sender's department can be checked for it."""
    return str(answer_id(recipient, "bus.ack", uuid.UUID(message_id)))


@dataclass(frozen=True)
class FaultResult:
    """One fault as it happened, and how the bus came back from it."""

    kind: str
    target: str
    start_s: float
    """Seconds into the load."""
    away_s: float
    """From the fault to the component being back (restart time included)."""
    caught_up_s: float | None
    """From back to the last message accepted before it reaching every recipient (None: never)."""
    worst_latency_s: float
    """The slowest submit → webhook of the messages submitted while it was away."""


@dataclass
class Figures:
    """Everything the report prints."""

    offered: int = 0
    accepted: list[Submission] = field(default_factory=list)
    refused: int = 0
    never_accepted: int = 0
    pairs: int = 0
    delivered_pairs: int = 0
    lost_messages: int = 0
    lost_pairs: int = 0
    lost_acks: int = 0
    redelivered: int = 0
    phantom: int = 0
    other_ids: int = 0
    misrouted: int = 0
    out_of_order: int = 0
    webhook_posts: int = 0
    bad_signatures: int = 0
    latency_s: list[float] = field(default_factory=list)
    steady_latency_s: list[float] = field(default_factory=list)
    faults: list[FaultResult] = field(default_factory=list)
    missing: list[tuple[str, str, str, str]] = field(default_factory=list)
    """(message id, kind, sender, what never arrived: a recipient, or "ack from <recipient>")."""

    @property
    def duplicated(self) -> int:
        """Acted on twice by a department deduplicating on X-Casebus-Message-Id."""
        return self.phantom + self.other_ids


def pct(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1), NaN when empty."""
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 1000) - 1]


def _soak_codes() -> set[str]:
    """The ``ywlx`` codes the mix's kinds reach departments under, in every vocabulary."""
    codes = set()
    for kind in _ADAPTER_KINDS:
        vocabulary = importlib.import_module(f"adapters.{kind}.mapping").VOCABULARY
        codes |= {vocabulary.code(k) for k, _, _ in MIX}
    return codes


def analyse(
    gen: LoadGenerator,
    seen: dict[str, Record],
    faults: Sequence[tuple[str, str, float, float]],
    t0: float,
) -> Figures:
    """The figures, from the submissions, what each department recorded and the faults
    (kind, target, start, back; monotonic seconds)."""
    fig = Figures(offered=len(gen.submissions))
    fig.accepted = [s for s in gen.submissions if s.status == "accepted"]
    fig.refused = sum(s.status == "refused" for s in gen.submissions)
    fig.never_accepted = sum(s.status in ("gave_up", "pending") for s in gen.submissions)
    fig.other_ids = sum(len(s.other_ids) for s in gen.submissions)
    ids = {s.message_id: s for s in fig.accepted}
    sent_and_latency: list[tuple[float, float]] = []
    completions: list[tuple[float, float]] = []  # (accepted, arrived) per delivery
    for s in fig.accepted:
        missing = False
        for r in s.deliver_to:
            fig.pairs += 1
            arrival = seen[r].arrivals.get(s.message_id)
            if arrival is None:
                fig.lost_pairs += 1
                missing = True
                completions.append((s.accepted_s, float("inf")))
                fig.missing.append((s.message_id, s.kind, s.sender, r))
                continue
            fig.delivered_pairs += 1
            sent_and_latency.append((s.sent_s, arrival.first_s - s.sent_s))
            completions.append((s.accepted_s, arrival.first_s))
            if ack_id(r, s.message_id) not in seen[s.sender].arrivals:
                fig.lost_acks += 1
                fig.missing.append((s.message_id, s.kind, s.sender, f"ack from {r}"))
        fig.lost_messages += missing
    codes = _soak_codes()
    for agency, record in seen.items():
        fig.webhook_posts += record.posts
        fig.bad_signatures += record.bad_signatures
        for message_id, arrival in record.arrivals.items():
            fig.redelivered += arrival.accepted - 1
            sub = ids.get(message_id)
            if sub is not None:
                fig.misrouted += agency not in sub.deliver_to
            elif arrival.code in codes:
                fig.phantom += 1
    positions = {a: {m: i for i, m in enumerate(r.order)} for a, r in seen.items()}
    for sequence in gen.order.values():
        for r in {r for m in sequence for r in ids[m].deliver_to}:
            at = [positions[r][m] for m in sequence if m in positions[r]]
            fig.out_of_order += sum(1 for a, b in itertools.pairwise(at) if b < a)
    windows = []
    for kind, target, start, back in faults:
        before = [arrived for accepted, arrived in completions if accepted <= back]
        last = max(before, default=back)
        caught_up = None if last == float("inf") else max(0.0, last - back)
        worst = max((lat for t, lat in sent_and_latency if start <= t <= back), default=0.0)
        fig.faults.append(FaultResult(kind, target, start - t0, back - start, caught_up, worst))
        windows.append((start, back + (caught_up or 0.0)))
    fig.latency_s = [lat for _, lat in sent_and_latency]
    fig.steady_latency_s = [
        lat for t, lat in sent_and_latency if not any(a <= t <= b for a, b in windows)
    ]
    return fig


async def audit_checks(
    dsn: str, env: dict[str, str], accepted: list[Submission]
) -> tuple[int, str, bool]:
    """(accepted submissions without exactly one ``accepted`` audit entry, ``casebus audit
    verify``'s last line with its run time, whether it passed)."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT message_id::text AS id, count(*) AS n FROM audit_entries"
            " WHERE event_kind = 'accepted' GROUP BY message_id"
        )
    finally:
        await conn.close()
    counts = {r["id"]: r["n"] for r in rows}
    unaudited = sum(counts.get(s.message_id, 0) != 1 for s in accepted)
    loop = asyncio.get_running_loop()
    started = loop.time()
    proc = await asyncio.to_thread(
        subprocess.run,
        [str(Path(sys.executable).parent / "casebus"), "audit", "verify"],
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    lines = (proc.stdout.strip() or proc.stderr.strip()).splitlines() or ["(no output)"]
    return unaudited, f"{lines[-1]} ({loop.time() - started:.0f} s)", proc.returncode == 0


_STAGES = (
    (
        "adapter: accepted → claimed by the outbox relay",
        "SELECT extract(epoch FROM o.published_at - o.created_at) AS s"
        " FROM outbox o JOIN adapter_submissions a USING (message_id)",
    ),
    (
        "relay → Kafka → router: audited",
        "SELECT extract(epoch FROM r.accepted_at - o.published_at) AS s"
        " FROM outbox o JOIN adapter_submissions a USING (message_id)"
        " JOIN router_accepted r USING (message_id)",
    ),
    (
        "router → Kafka → recipient's inbox reader: stored",
        "SELECT extract(epoch FROM d.received_at - r.accepted_at) AS s"
        " FROM adapter_deliveries d JOIN adapter_submissions a USING (message_id)"
        " JOIN router_accepted r USING (message_id)",
    ),
    (
        "stored → webhook answered 2xx, ack written",
        "SELECT extract(epoch FROM d.done_at - d.received_at) AS s"
        " FROM adapter_deliveries d JOIN adapter_submissions a USING (message_id)"
        " WHERE d.done_at IS NOT NULL",
    ),
)


async def bottlenecks(dsn: str) -> list[str]:
    """Where the time went, per stage (the database's clock), and how fast each inbox reader
    went at its busiest: the tables that say what limits the rate."""
    conn = await asyncpg.connect(dsn)
    try:
        stages = []
        for name, sql in _STAGES:
            row = await conn.fetchrow(
                "SELECT count(*) AS n,"
                " percentile_cont(0.5) WITHIN GROUP (ORDER BY s) AS p50,"
                " percentile_cont(0.99) WITHIN GROUP (ORDER BY s) AS p99"
                f" FROM ({sql}) t"
            )
            assert row is not None
            p50, p99 = row["p50"] or 0.0, row["p99"] or 0.0
            stages.append((name, f"{row['n']}", f"{p50 * 1000:.0f}", f"{p99 * 1000:.0f}"))
        readers = await conn.fetch(
            "SELECT consumer, count(*) AS n, max(per_s) AS peak FROM ("
            "  SELECT consumer, count(*) OVER w / 10.0 AS per_s FROM inbox_handled"
            "  WINDOW w AS (PARTITION BY consumer, floor(extract(epoch FROM handled_at) / 10))"
            ") t GROUP BY consumer ORDER BY n DESC LIMIT 6"
        )
        # The procuratorate keeps every copy in its case store (timeline, screening) through a
        # reader of its own, next to the one that delivers to its department.
        kept, inbox = await conn.fetchrow(
            "SELECT count(*) FILTER (WHERE consumer LIKE 'procuratorate.store.%'),"
            " count(*) FILTER (WHERE consumer = 'adapter.ygh.procuratorate')"
            " FROM inbox_handled"
        ) or (0, 0)
    finally:
        await conn.close()
    store = (
        f"The procuratorate's case store kept {kept} of the {inbox} records its inbox reader "
        "handled" + ("." if kept == inbox else ": **its store reader fell behind or stopped**.")
    )
    return [
        *markdown_table(["stage (accepted submissions)", "n", "p50 ms", "p99 ms"], stages),
        "",
        *markdown_table(
            ["inbox reader (one per agency)", "records", "busiest 10 s, records/s"],
            [(r["consumer"], f"{r['n']}", f"{r['peak']:.1f}") for r in readers],
        ),
        "",
        store,
    ]


@dataclass
class Usage:
    """CPU seconds per process (PostgreSQL with its backends) and the machine's busy ticks."""

    cpu_s: dict[str, float]
    busy_ticks: int
    all_ticks: int


def usage_snapshot(pids: dict[str, int]) -> Usage:
    """CPU so far of ``pids`` and of this process, and of the whole machine."""
    cpu = {name: process_cpu(name, pid) for name, pid in pids.items()}
    cpu["load generator (harness)"] = cpu_seconds(os.getpid())
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    idle = ticks[3] + ticks[4]
    return Usage(cpu, sum(ticks) - idle, sum(ticks))


def rss_mib(pid: int) -> float:
    """Resident memory of a process now, MiB."""
    return vm_kib(pid, "VmRSS") / 1024


def tables(
    fig: Figures,
    *,
    load_s: float,
    accepted_in_load: int,
    drain_s: float,
    router_rss_mib: tuple[float, float],
    unaudited: int,
    verify: str,
    cpu: list[tuple[str, float, float]],
    loop_lag_max_s: float,
) -> list[str]:
    """The Markdown tables of the report."""
    ms = 1000.0
    lat, steady = fig.latency_s, fig.steady_latency_s
    rows = [
        (
            "offered (submissions)",
            f"{fig.offered} ({fig.offered / load_s:.1f}/s over {load_s:.0f} s)",
        ),
        ("accepted by the adapters (202)", f"{len(fig.accepted)}"),
        ("accepted while the load ran", f"{accepted_in_load} ({accepted_in_load / load_s:.1f}/s)"),
        ("refused (4xx) / never accepted", f"{fig.refused} / {fig.never_accepted}"),
        ("deliveries expected (named recipients + copies)", f"{fig.pairs}"),
        ("delivered to the departments' webhooks", f"{fig.delivered_pairs}"),
        ("**lost** (accepted, some recipient never got it)", f"**{fig.lost_messages}**"),
        ("**lost acks** (a bus.ack never back at the sender)", f"**{fig.lost_acks}**"),
        ("**duplicated** (acted on twice: under a 2nd id)", f"**{fig.duplicated}**"),
        ("redelivered (same id POSTed again after a 2xx)", f"{fig.redelivered}"),
        ("misrouted / out of per-case order", f"{fig.misrouted} / {fig.out_of_order}"),
        (
            "latency submit → webhook p50 / p99 / max",
            f"{pct(lat, 0.5) * ms:.0f} / {pct(lat, 0.99) * ms:.0f} / "
            f"{max(lat, default=0) * ms:.0f} ms",
        ),
        (
            "the same outside fault windows p50 / p99",
            f"{pct(steady, 0.5) * ms:.0f} / {pct(steady, 0.99) * ms:.0f} ms",
        ),
        ("drain after the load", f"{drain_s:.0f} s"),
        ("router RSS max / at end", f"{router_rss_mib[0]:.0f} / {router_rss_mib[1]:.0f} MiB"),
        ("webhook POSTs in all (receipts, acks, tree heads too)", f"{fig.webhook_posts}"),
        ("accepted audit entries missing or doubled", f"{unaudited}"),
        ("`casebus audit verify`", verify),
        ("load generator loop lag max (harness health)", f"{loop_lag_max_s * ms:.0f} ms"),
    ]
    fault_rows = [
        (
            f.kind + (f" ({f.target})" if f.target else ""),
            f"{f.start_s:.0f}",
            f"{f.away_s:.1f}",
            "never" if f.caught_up_s is None else f"{f.caught_up_s:.1f}",
            f"{f.worst_latency_s:.1f}",
        )
        for f in fig.faults
    ]
    cpu_rows = [
        (name, f"{cores:.2f}", f"{ms_each:.1f}" if ms_each else "") for name, cores, ms_each in cpu
    ]
    return [
        *markdown_table(["figure", "value"], rows),
        "",
        *markdown_table(["fault", "at s", "away s", "caught up s", "worst latency s"], fault_rows),
        "",
        *markdown_table(["process", "CPU, cores (average)", "CPU ms per submission"], cpu_rows),
    ]
