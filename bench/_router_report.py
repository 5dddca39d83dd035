"""bench/router.py's report: what a run measured, its table, and the targets it is held to."""

from __future__ import annotations

import os
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import aiokafka
import cryptography
from _common import kafka_version, markdown_table  # bench/, first on sys.path when a bench runs
from _router_floor import Floor
from _router_plan import LOAD_RATE, MAX_BATCH, PARTITIONS, Plan, Result

from bus import sm2

__all__ = ["Run", "report"]

TARGET_RATIO = 0.20
TARGET_P99_S = 0.100
TARGET_RSS_MB = 300
TARGET_FLOOR_MULTIPLE = 2.5  # the router's CPU per message over its Ed25519 work's (issue #18)


@dataclass(slots=True)
class Run:
    results: list[Result]
    message_bytes: float
    pg_version: str
    dead: int
    load_before: float  # the machine's 1-minute load average when the measurements began
    floors: tuple[Floor, Floor]  # measured just before and just after the router's run

    @property
    def floor(self) -> float:
        """The signature floor's CPU seconds per message: the mean of its two measurements."""
        return statistics.fmean(f.cpu_per_message for f in self.floors)


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.1f} ms"


def _pct(values: Sequence[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def _table(results: Sequence[Result], floor: float, floor_name: str) -> list[str]:
    base = results[0].rate
    head = (
        "pipe",
        "msgs/s",
        "vs raw txn pipe",
        "CPU",
        "CPU µs/msg",
        "× floor",
        f"p50 @{LOAD_RATE}/s",
        "p99",
        "max",
        f"CPU @{LOAD_RATE}/s",
        "peak RSS",
    )
    rows = []
    for r in results:
        lat = r.latencies
        rows.append(
            (
                r.name,
                f"{r.rate:,.0f}",
                f"{r.rate / base:.1%}" if base else "-",
                f"{r.cpu:.2f}",
                f"{r.cpu_per_message * 1e6:,.0f}",
                f"{r.cpu_per_message / floor:.2f}×" if floor else "-",
                _ms(_pct(lat, 50)) if len(lat) > 1 else "-",
                _ms(_pct(lat, 99)) if len(lat) > 1 else "-",
                _ms(lat[-1]) if lat else "-",
                f"{r.cpu_at_load:.2f}",
                f"{r.rss_kib * 1024 / 1e6:,.0f} MB",
            )
        )
    rows.append(
        (floor_name, "-", "-", "-", f"{floor * 1e6:,.0f}", "1.00×", "-", "-", "-", "-", "-")
    )
    return markdown_table(head, rows)


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def report(plan: Plan, run: Run, bootstrap: str, seconds: float) -> None:
    raw, router = run.results[0], run.results[-1]
    print(
        f"N = {plan.messages:,} {plan.message} messages of {run.message_bytes:,.0f} bytes"
        f" on average (+ CloudEvents headers); {PARTITIONS} partitions per topic;"
        f" batches of {MAX_BATCH}; latency: {LOAD_RATE} msgs/s offered for {plan.load_s:g} s"
    )
    print(
        f"Kafka {kafka_version()} at {bootstrap} (aiokafka {aiokafka.__version__}); "
        f"PostgreSQL {run.pg_version}; Python {sys.version.split()[0]}; {os.cpu_count()} CPUs "
        f"shared by the broker, the database, the pipe and this bench (1-min load average "
        f"{run.load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end)"
    )
    print()
    print("\n".join(_table(run.results, run.floor, plan.floor_name)))
    print()
    for r in run.results:
        extra = f"; {r.note}" if r.note else ""
        print(
            f"- {r.name}: {r.delivered:,} delivered; first delivery {r.launch_to_first_s:.1f} s "
            f"after launch; {len(r.latencies):,} of {r.offered:,} offered measured{extra}"
        )
    print(f"- router dead-letter topic: {run.dead} records (0 expected)")
    print(
        "- CPU: the pipe process's CPU seconds per second (1.00 = one core busy), while it "
        f"drained the loaded topic and while {LOAD_RATE} msgs/s were offered; CPU µs/msg: its "
        "CPU over the timed half of the drain per message delivered then"
    )
    before, after = run.floors
    print(
        f"- {plan.floor_name}: this process's CPU (process_time) to verify each of the N "
        f"submissions and make the {before.signatures:g} signature(s) per message the router "
        "makes for it (receipts), with "
        + (
            f"OpenSSL's libcrypto {sm2.openssl_version()}: "
            if plan.crypto == "sm2"
            else f"cryptography {cryptography.__version__}: "
        )
        + f"{before.cpu_per_message * 1e6:.1f} µs/msg just before the router's run, "
        f"{after.cpu_per_message * 1e6:.1f} µs just after; the mean is the floor"
    )
    print()
    ratio = router.rate / raw.rate if raw.rate else 0.0
    p99 = _pct(router.latencies, 99) if len(router.latencies) > 1 else float("inf")
    rss_mb = router.rss_kib * 1024 / 1e6
    print("Targets for the router (measured vs target):")
    if plan.messages < 20_000:
        print(
            f"- (N = {plan.messages:,}: the raw pipes drain their timed half in a few tens of"
            " milliseconds, so the ratio is not a measurement; the full run is)"
        )
    print(
        f"- throughput {ratio:.1%} of the raw txn pipe vs ≥ {TARGET_RATIO:.0%}: "
        f"{_verdict(ratio >= TARGET_RATIO)}"
    )
    print(
        f"- p99 {_ms(p99)} at {LOAD_RATE} msgs/s vs < {_ms(TARGET_P99_S)}: "
        f"{_verdict(p99 < TARGET_P99_S)}"
    )
    print(
        f"- peak RSS {rss_mb:,.0f} MB vs < {TARGET_RSS_MB} MB: {_verdict(rss_mb < TARGET_RSS_MB)}"
    )
    multiple = router.cpu_per_message / run.floor if run.floor else float("inf")
    print(
        f"- CPU {router.cpu_per_message * 1e6:,.0f} µs/msg, {multiple:.2f}× the {plan.floor_name} "
        + (
            f"vs ≤ {TARGET_FLOOR_MULTIPLE}×: {_verdict(multiple <= TARGET_FLOOR_MULTIPLE)}"
            if plan.crypto == "ed25519"
            else f"(the ≤ {TARGET_FLOOR_MULTIPLE}× target is set for Ed25519; reported beside it)"
        )
    )
    print()
    print(f"Whole run {seconds:,.0f} s.")
