"""How fast the router moves signed messages, next to a bare aiokafka pipe on the same broker.

Run: ``.venv/bin/python bench/router.py [--messages 20000] [--quick]``. The default run takes a
few minutes; ``--quick`` (2,000 messages, 5 s of offered load) well under one. It reads
``CASEBUS_KAFKA_BOOTSTRAP`` and ``CASEBUS_DATABASE_URL`` (a role that may create databases) or,
when they are unset, runs ``deploy/local/up`` and uses the addresses it prints. It works in a
database of its own (created, migrated, dropped at the end) and under topic prefixes of its own
(created with ``ensure_topics``, deleted at the end), also on errors and Ctrl-C.

Three pipes move the same signed envelopes (``criminal.transfer`` from ``bus.samples``, or a
``criminal.receipt`` with a long note with ``--message receipt``) from a ``.submit`` topic to
the recipient's ``.inbox.`` topic:

- **raw pipe (txn)**: aiokafka alone, the router's loop without the router's work: a consumer
  group, ``read_committed``, ``getmany(max_records=500)``, then one Kafka transaction per batch
  with the consumer offsets, forwarding each record unchanged to one inbox.
- **raw pipe (no txn)**: the same loop with an idempotent producer and a consumer commit after
  each batch is acknowledged: what the transactions cost.
- **router**: ``casebus router`` with the same settings a deployment uses (JSON logs at info):
  verify, validate, authorize, audit in PostgreSQL, deliver in one transaction (for a transfer:
  the recipient, copies to the procuratorate and ``casebus.sla``, a receipt to the sender).

Beside them, the **signature floor** (Ed25519, or SM2 with ``--crypto sm2``), the part of the
router's work no router can skip: in this process, just before and just after the router's run, the
CPU time (``process_time``) to verify every loaded submission's signature and to make every
signature the router makes for it (its ``bus.delivered`` receipt). What it signs is found by running
the router's own classifier and outputs on each message with a signer that notes what it is asked to
sign; keys are loaded once, outside the timing. Each pipe's CPU per message delivered in the timed
half (below) is printed as a multiple of the mean of the two (issue #18: the router at most 2.5x,
with Ed25519).

``--crypto sm2`` runs everything under the 国密 profile (issue #19): the submissions are signed
with an SM2 key, the router's own key (receipts) is SM2 and its checkpoints carry an Ed25519 log
key's line plus the SM2 one, and the floor is SM2 verify + SM2 sign. Run it beside a default run
to report the router under both profiles.

Each pipe runs as its own process, as the router does in production, so the bench's producer and
readers do not share its event loop and ``VmHWM`` is the pipe's own peak RSS. Throughput: N
messages are loaded first, then the pipe starts; msgs/s is counted on the recipient inbox
(``read_committed``) over the second half of the N, from the N/2-th arrival to the N-th, so
start-up, the group join and, with ``--routers 2``, the rebalance as each replica joins are left
out of every pipe alike. ``--routers K`` runs K router processes in one consumer group (the
topics have 6 partitions), as a deployment scales out; CPU is their sum, RSS the largest one's.
Latency: with the pipe idle and running (and the drain's dirty pages written back first:
``os.sync()``), messages are offered at a steady rate and each one's
submit → inbox time is the reader's arrival time less the send time, same process and clock; the
reader polls with ``fetch_max_wait_ms=100``.

The parts live beside this file: the plan, the messages and a pipe's result in
``bench/_router_plan.py``, the signature floor in ``bench/_router_floor.py``, the raw pipe in
``bench/_router_pipe.py`` (run in a child process as ``bench/router.py --pipe ...``), the pipes'
processes in ``bench/_router_procs.py`` and the table and targets in ``bench/_router_report.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import asyncpg
import structlog
from _common import (  # bench/, first on sys.path when a bench runs as a script
    admin_sql,
    delete_topics,
    infra,
    say,
    scratch_settings,
    with_db,
)
from _router_floor import signature_floor  # bench/, as _common
from _router_pipe import raw_pipe
from _router_plan import (
    LOAD_RATE,
    MAX_BATCH,
    PARTITIONS,
    Message,
    Plan,
    Result,
    sender_and_recipient,
    signed_messages,
)
from _router_procs import Procs, spawn_pipe, spawn_router
from _router_report import Run, report
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from bus.agencies import load_registry
from bus.agency_db import add_key, sync_agencies
from bus.db import migrate
from bus.party import Party
from bus.settings import Settings, load_settings
from bus.signing import algorithm_of_profile, load_signer, write_keypair
from bus.topics import ensure_topics

__all__ = ["main"]

_DRAIN_S = 15.0  # how long a latency run waits for stragglers after the last send


def _say(text: str) -> None:
    say("router", text)


# --- measuring ------------------------------------------------------------------------------------


class _Tap:
    """Reads one topic ``read_committed`` from the start: how many records arrived, and when
    each message id first did."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._topic = topic
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            isolation_level="read_committed",
            enable_auto_commit=False,
            fetch_max_wait_ms=100,
        )
        self.count = 0
        self.first: tuple[float, int] | None = None  # (when, how many) records first appeared
        self.arrived: dict[bytes, float] = {}
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._consumer.start()
        tps = [TopicPartition(self._topic, p) for p in range(PARTITIONS)]
        self._consumer.assign(tps)
        await self._consumer.seek_to_beginning(*tps)
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while True:
            batch = await self._consumer.getmany(timeout_ms=100)
            now = time.perf_counter()
            for records in batch.values():
                for r in records:
                    for name, value in r.headers:
                        if name == "ce_id":
                            self.arrived.setdefault(bytes(value), now)
                            break
                self.count += len(records)
            if batch:
                if self.first is None:
                    self.first = (now, self.count)
                self._changed.set()

    async def wait_for(self, count: int, *, deadline: float, proc: Procs) -> bool:
        """Until ``count`` records arrived (True), the deadline passed or the pipe died."""
        while self.count < count:
            if time.perf_counter() > deadline or proc.died() is not None:
                return False
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), 1.0)
        return True

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._consumer.stop()


async def _produce(
    producer: AIOKafkaProducer, topic: str, messages: Sequence[Message], *, rate: float = 0
) -> dict[bytes, float]:
    """Send ``messages`` (at ``rate`` msgs/s when given, else at once); each one's send time."""
    sent: dict[bytes, float] = {}
    start = time.perf_counter()
    for i, m in enumerate(messages):
        if rate:
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        sent[m.message_id] = time.perf_counter()
        await producer.send(topic, m.value, key=m.key, headers=m.headers)
    await producer.flush()
    return sent


async def _measure_pipe(
    result: Result,
    settings: Settings,
    recipient: str,
    load: Sequence[Message],
    offered: Sequence[Message],
    spawn: Callable[[], Procs],
) -> None:
    """Throughput from a loaded topic, peak RSS, then latency at a steady offered load."""
    n = len(load)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        max_batch_size=256 * 1024,
    )
    await producer.start()
    tap = _Tap(settings.kafka_bootstrap, settings.topic_inbox(recipient))
    proc: Procs | None = None
    try:
        _say(f"{result.name}: loading {n:,} messages into {settings.topic_submit()}")
        await _produce(producer, settings.topic_submit(), load)
        await producer.stop()
        producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap, acks="all", enable_idempotence=True
        )
        await producer.start()
        await tap.start()
        _say(f"{result.name}: starting the pipe")
        launched = time.perf_counter()
        proc = spawn()
        deadline = launched + 60 + n / 50
        done = await tap.wait_for(1, deadline=deadline, proc=proc)
        if tap.first is not None:
            result.launch_to_first_s = tap.first[0] - launched
        # Timed over the second half: start-up, the group join and, with replicas, the
        # rebalance as each one joins are behind every pipe by then.
        done = done and await tap.wait_for(n // 2, deadline=deadline, proc=proc)
        half_at, half_count, cpu_half = time.perf_counter(), tap.count, proc.cpu()
        done = done and await tap.wait_for(n, deadline=deadline, proc=proc)
        finished = time.perf_counter()
        result.rss_kib = proc.rss_kib()
        result.delivered = tap.count
        if done and finished > half_at:
            result.rate = (min(tap.count, n) - half_count) / (finished - half_at)
            cpu_used = proc.cpu() - cpu_half
            result.cpu = cpu_used / (finished - half_at)
            result.cpu_per_message = cpu_used / max(1, min(tap.count, n) - half_count)
        if not done:
            result.note = f"stopped at {tap.count:,} of {n:,} delivered"
            dead = proc.died()
            if dead is not None:
                result.note += f" (the pipe {dead})"
            return
        _say(
            f"{result.name}: {result.rate:,.0f} msgs/s, peak RSS {result.rss_kib / 1024:,.0f} MiB;"
            f" offering {LOAD_RATE} msgs/s for {len(offered) / LOAD_RATE:.0f} s"
        )
        # The drain left hundreds of MB of dirty pages (broker logs, WAL); the kernel writes
        # them back ~30 s later in one go, and a pipe that fsyncs (the router's audit commits)
        # then stalls for ~250 ms. Write them now, so each latency run starts alike.
        await asyncio.to_thread(os.sync)
        began, cpu_began = time.perf_counter(), proc.cpu()
        sent = await _produce(producer, settings.topic_submit(), offered, rate=LOAD_RATE)
        await tap.wait_for(n + len(offered), deadline=time.perf_counter() + _DRAIN_S, proc=proc)
        result.cpu_at_load = (proc.cpu() - cpu_began) / (time.perf_counter() - began)
        result.offered = len(sent)
        result.latencies = sorted(
            tap.arrived[mid] - at for mid, at in sent.items() if mid in tap.arrived
        )
        if len(result.latencies) < len(sent):
            result.note = f"{len(sent) - len(result.latencies):,} offered messages never arrived"
    finally:
        if proc is not None:
            proc.stop()
        await producer.stop()
        await tap.close()


async def _dead_letters(settings: Settings) -> int:
    """Records on the router's dead-letter topic (transaction markers included)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    await consumer.start()
    try:
        topic = settings.topic_dead()
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)  # stopping an unassigned group-less consumer raises in aiokafka
        return sum((await consumer.end_offsets(tps)).values())
    finally:
        await consumer.stop()


async def _run(plan: Plan, bootstrap: str, dsn: str, base: str, tmp: Path, profile: Path | None):
    registry_file = load_settings().agencies_file
    registry = load_registry(registry_file)
    algorithm = algorithm_of_profile(plan.crypto)
    bus_key = write_keypair("casebus", tmp / "bus-key", algorithm=algorithm)
    # C2SP checkpoints need an Ed25519 log key; under sm2 it is a key of its own.
    log_key = write_keypair("casebus.log", tmp / "log-key") if plan.crypto == "sm2" else None

    def settings_for(prefix: str) -> Settings:
        return scratch_settings(
            kafka_bootstrap=bootstrap,
            database_url=dsn,
            topic_prefix=prefix,
            topic_partitions=PARTITIONS,
            topic_replication=1,
            agencies_file=registry_file,
            bus_key_file=bus_key.private_key,
            audit_log_key_file=None if log_key is None else log_key.private_key,
            crypto_profile=plan.crypto,
        )

    runs = {"txn": settings_for(f"{base}-txn"), "plain": settings_for(f"{base}-plain")}
    routed = settings_for(base)
    _say("migrating and creating topics")
    await migrate(dsn)
    for s in (*runs.values(), routed):
        await ensure_topics(s, registry)
    sender, recipient = sender_and_recipient(plan)
    sender_key = write_keypair(sender, tmp / "keys" / sender, algorithm=algorithm)
    party = Party(sender, load_signer(sender_key.private_key, agency_id=sender))
    conn = await asyncpg.connect(dsn)
    try:
        await sync_agencies(conn, registry)
        await add_key(conn, party.key_record())
        pg_version = await conn.fetchval("SHOW server_version")
    finally:
        await conn.close()

    _say(f"signing {plan.messages:,} + {int(plan.load_s * LOAD_RATE):,} {plan.message} messages")
    load = signed_messages(plan, party, plan.messages, seed=1)
    offered = signed_messages(plan, party, int(plan.load_s * LOAD_RATE), seed=2)
    size = statistics.fmean(len(m.value) for m in load)

    load_before = os.getloadavg()[0]
    results = []
    for mode, name in (("txn", "raw pipe (txn)"), ("plain", "raw pipe (no txn)")):
        s = runs[mode]
        log = tmp / f"pipe-{mode}.log"
        result = Result(name)
        await _measure_pipe(
            result,
            s,
            recipient,
            load,
            offered,
            lambda mode=mode, s=s, log=log: spawn_pipe(
                Path(__file__).resolve(), mode, bootstrap, s, recipient, log
            ),
        )
        results.append(result)
    bus_signer = load_signer(bus_key.private_key, agency_id="casebus")
    _say(f"timing the {plan.floor_name} (verify + the router's signatures) on the loaded messages")
    floor_before = await signature_floor(routed, party, load, bus_signer)
    log = tmp / "router.log"
    name = "router" if plan.routers == 1 else f"router ×{plan.routers}"
    result = Result(name + (" (under cProfile)" if profile else ""))
    await _measure_pipe(
        result,
        routed,
        recipient,
        load,
        offered,
        lambda: spawn_router(routed, log, profile, plan.routers),
    )
    results.append(result)
    floor_after = await signature_floor(routed, party, load, bus_signer)
    dead = await _dead_letters(routed)
    return Run(results, size, pg_version, dead, load_before, (floor_before, floor_after))


# --- entry point ----------------------------------------------------------------------------------


def _args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, help="N (default 50,000; 2,000 quick)")
    parser.add_argument(
        "--routers",
        type=int,
        default=1,
        choices=range(1, PARTITIONS + 1),
        metavar="K",
        help="router replicas in one consumer group (default 1)",
    )
    parser.add_argument("--quick", action="store_true", help="2,000 messages, 5 s of load")
    parser.add_argument(
        "--message",
        choices=("transfer", "receipt"),
        default="receipt",
        help="a ~1 KB criminal.receipt with a long note (the issue's 1 KB message, the "
        "default) or a ~4.6 KB criminal.transfer from bus.samples with its documents",
    )
    parser.add_argument(
        "--profile", type=Path, help="run the router under cProfile, writing its stats here"
    )
    parser.add_argument(
        "--crypto",
        choices=("ed25519", "sm2"),
        default="ed25519",
        help="the crypto profile of every key in the run: ed25519 (default) or sm2 (SM2 over "
        "SM3 for the submissions and the router's receipts; issue #19)",
    )
    parser.add_argument("--pipe", choices=("txn", "plain"), help=argparse.SUPPRESS)
    parser.add_argument("--pipe-args", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.messages is not None and args.messages < 2 * MAX_BATCH:
        # The rate is counted after the first visible batch: fewer leave nothing to time.
        parser.error(f"--messages must be at least {2 * MAX_BATCH:,}")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark and print its table."""
    args = _args(argv)
    if args.pipe:
        asyncio.run(raw_pipe(args.pipe, *args.pipe_args))
        return
    plan = Plan(
        messages=args.messages or (2_000 if args.quick else 50_000),
        load_s=5.0 if args.quick else 20.0,
        message=args.message,
        routers=args.routers,
        crypto=args.crypto,
    )
    # The library logs through structlog; keep stdout for the table.
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
    began = time.perf_counter()
    bootstrap, admin = infra("router")
    tag = uuid.uuid4().hex[:10]
    name, base = f"casebus_bench_router_{tag}", f"benchrouter{tag}"
    prefixes = [f"{base}-txn", f"{base}-plain", base]
    try:
        with tempfile.TemporaryDirectory(prefix="bench-router-") as tmp:
            _say(f"creating database {name}")
            asyncio.run(admin_sql(admin, f'CREATE DATABASE "{name}"'))
            run = asyncio.run(
                _run(plan, bootstrap, with_db(admin, name), base, Path(tmp), args.profile)
            )
    finally:
        asyncio.run(admin_sql(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        _say(f"dropped database {name}")
        with contextlib.suppress(Exception):
            asyncio.run(delete_topics(bootstrap, prefixes))
            _say(f"deleted the topics under {', '.join(prefixes)}")
    report(plan, run, bootstrap, time.perf_counter() - began)
    if args.profile:
        print(f"Router profile written to {args.profile} (its rows are slowed by cProfile).")


if __name__ == "__main__":
    main()
