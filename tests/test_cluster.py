"""Exactly-once on a three-broker cluster: a broker stopped, then another one killed, under load
through the router and two adapters; two routers sharing the partitions with one SIGKILLed; and
the router's three crash points. Each ends with every message delivered exactly once, in per-case
order.

The module starts a cluster of its own (``deploy/local/up --brokers 3`` in a private state dir:
replication factor 3, ``min.insync.replicas`` 2, its own PostgreSQL) and stops it at the end; its
tests never touch the session's broker. The streams are smaller than those of the single-broker
fault tests (300 to 450 messages over 10 to 20 cases) to keep the module, cluster start
included, within its share of CI's time (about three and a half minutes).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from buskit import Bus
from conftest import Infra, make_service_logins
from faultkit import (
    BUREAU,
    POLICE,
    load_at,
    logged,
    router_killed_at,
    stop,
    stream,
    tail,
    two_routers_one_killed,
    wait_exit,
)
from portkit import free_port_run

from adapters import enforcement
from adapters import police as police_adapter
from adapters._framework.fake_department import DepartmentClient, running_adapter
from adapters.police.testing import receipt
from bus.db import migrate
from bus.inbox import InboxReader
from bus.models import Envelope
from bus.settings import REPO_ROOT, Service, Settings

pytestmark = [pytest.mark.slow, pytest.mark.integration]

BROKERS = 3
ECO = "kmg.police.eco"  # sends through the police adapter...
TANGCHI = "ygh.enforcement.tangchi"  # ...to a squadron that pulls from the enforcement adapter


# -- the module's own cluster ------------------------------------------------------------------


@dataclass(frozen=True)
class Cluster:
    """A running ``up --brokers 3`` and the environment that names it to the local scripts."""

    env: dict[str, str]
    bootstrap: str
    database_url: str

    def script(self, *args: str) -> str:
        """Run ``deploy/local/<args>`` on this cluster; its stdout."""
        proc = subprocess.run(
            [str(REPO_ROOT / "deploy" / "local" / args[0]), *args[1:]],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=280,
        )
        assert proc.returncode == 0, f"deploy/local/{' '.join(args)}:\n{proc.stderr[-3000:]}"
        return proc.stdout

    def status(self) -> dict[str, str]:
        """``deploy/local/status`` by part (``kafka``, ``kafka node-2``, ``postgresql``...)."""
        out = subprocess.run(
            [str(REPO_ROOT / "deploy" / "local" / "status")],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout
        return dict(line.split(": ", 1) for line in out.splitlines())

    def stopped(self) -> list[str]:
        """The parts that do not run."""
        return [part for part, state in self.status().items() if state.startswith("stopped")]

    def stop_broker(self, node: int, how: str) -> None:
        """Stop broker ``node``: ``stopped`` as an operator would, or ``killed`` as a power cut
        would (SIGKILL: no controlled shutdown, no flush)."""
        if how == "stopped":
            self.script("down", "kafka-node", str(node))
            return
        state = self.status()[_part(node)]
        os.kill(int(state.split("(pid ", 1)[1].split(",", 1)[0]), signal.SIGKILL)
        for _ in range(100):
            if _part(node) in self.stopped():
                return
            time.sleep(0.1)
        raise AssertionError(f"broker {node} still runs after SIGKILL")


def _part(node: int) -> str:
    """How ``deploy/local/status`` names broker ``node``."""
    return "kafka" if node == 1 else f"kafka node-{node}"


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """Three KRaft brokers and a PostgreSQL of this module's own, stopped and removed after it."""
    # Not under pytest's tmp dir: that is private to this user, and PostgreSQL runs as 'postgres'.
    state = Path(tempfile.mkdtemp(prefix="casebus-cluster-", dir="/tmp"))
    state.chmod(0o755)
    base = free_port_run(2 * BROKERS + 1)  # a broker and a controller port each, then PG
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASEBUS_")}
    env.update(
        CASEBUS_STATE_DIR=str(state),
        CASEBUS_KAFKA_PORT=str(base),
        CASEBUS_PG_PORT=str(base + 2 * BROKERS),
        CASEBUS_KAFKA_HEAP="512m",
    )
    probe = Cluster(env, "", "")
    try:
        out = probe.script("up", "--brokers", str(BROKERS))
        exports = dict(
            line.removeprefix("export ").split("=", 1)
            for line in out.splitlines()
            if line.startswith("export ")
        )
        assert exports["CASEBUS_TOPIC_REPLICATION"] == "3"
        yield Cluster(env, exports["CASEBUS_KAFKA_BOOTSTRAP"], exports["CASEBUS_DATABASE_URL"])
    finally:
        subprocess.run(
            [str(REPO_ROOT / "deploy" / "local" / "down")],
            env=env,
            capture_output=True,
            timeout=120,
        )
        shutil.rmtree(state, ignore_errors=True)


# conftest's fixtures of the same names, pointed at the module's cluster.


@pytest.fixture(scope="module")
def infra(cluster: Cluster) -> Infra:
    """The cluster, with replication factor 3 for every test topic."""
    return Infra(cluster.bootstrap, cluster.database_url, topic_replication=BROKERS)


@pytest.fixture(scope="module")
async def template_db(infra: Infra) -> str:
    """A migrated database each test copies (dropped with the cluster)."""
    name = f"casebus_tpl_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(infra.database_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    base, _, _ = infra.database_url.rpartition("/")
    await migrate(f"{base}/{name}")
    return name


@pytest.fixture(scope="module")
async def service_logins(infra: Infra, template_db: str) -> dict[Service, str]:
    """The services' logins, made on the module's cluster."""
    return await make_service_logins(infra)


@pytest.fixture
async def bus(provisioned: Settings, tmp_path: Path) -> AsyncIterator[Bus]:
    """As in the single-broker fault tests: batches of 100, so a stream makes many of them."""
    b = Bus(provisioned.model_copy(update={"router_max_batch": 100}), tmp_path)
    await b.setup()
    yield b
    await b.close()


# -- helpers -------------------------------------------------------------------------------------


async def _submit_partitions(settings: Settings) -> list[dict[str, Any]]:
    """The submit topic's partitions as the cluster's metadata has them (leader, replicas, isr)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        [topic] = await admin.describe_topics([settings.topic_submit()])
    finally:
        await admin.close()
    partitions: list[dict[str, Any]] = topic["partitions"]
    return partitions


async def _wait_full_isr(settings: Settings, timeout_s: float = 60) -> None:
    """Until every submit partition has all three replicas in sync again."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        isr = [len(p["isr"]) for p in await _submit_partitions(settings)]
        if all(n == BROKERS for n in isr):
            return
        assert loop.time() < deadline, f"in-sync replicas per partition still {isr}"
        await asyncio.sleep(0.5)


def _documents(*, cases: int, per_case: int) -> list[dict[str, Any]]:
    """Police receipts in the police's vocabulary, round-robin over cases; the transfer-letter
    number carries (case, sequence), as in ``stream``."""
    return [
        # A receipt answers a transfer: it names one (glbh), or the adapter refuses it.
        receipt(
            ajbh=case,
            ysshh=f"{case}#{seq}",
            jsdw=[TANGCHI],
            glbh=str(uuid.uuid5(uuid.NAMESPACE_URL, case)),
        )
        for seq in range(per_case)
        for case in (f"KMG-2026-{c:04d}" for c in range(cases))
    ]


async def _adapter_load(
    department: DepartmentClient, documents: list[dict[str, Any]], rate_per_s: float
) -> list[str]:
    """Submit through an adapter's API at a steady rate; the message ids answered, in order."""
    ids = []
    for document in documents:
        r = await department.submit(document)
        # Accepted into the adapter's outbox whatever Kafka is doing.
        assert r.status_code == 202, r.text
        ids.append(r.json()["message_id"])
        await asyncio.sleep(1 / rate_per_s)
    return ids


async def _pulled(department: DepartmentClient) -> list[dict[str, Any]]:
    """Every item waiting in a pull department's inbox, oldest first."""
    items: list[dict[str, Any]] = []
    after = 0
    while True:
        page = await department.pull(after=after, limit=500)
        if not page["items"]:
            return items
        items.extend(page["items"])
        after = page["next_cursor"]


async def _until(
    what: str, count: Callable[[], Awaitable[int]], *, at_least: int, timeout_s: float
) -> None:
    """Poll a count until it reaches ``at_least``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while (n := await count()) < at_least:
        assert loop.time() < deadline, f"{what}: {n} after {timeout_s} s, not {at_least}"
        await asyncio.sleep(0.3)


def _split(items: list[Any], parts: int) -> list[list[Any]]:
    """``items`` in ``parts`` consecutive slices of (nearly) equal length."""
    return [items[i * len(items) // parts : (i + 1) * len(items) // parts] for i in range(parts)]


def _letter_seq(transfer_letter_no: str) -> int:
    """The sequence number a stream put into a transfer-letter number (``<case>#<seq>``)."""
    return int(transfer_letter_no.split("#")[1])


def _seq(bus: Bus, env: Envelope) -> int:
    return _letter_seq(bus.payload(env).transfer_letter_no)  # type: ignore[attr-defined]


def _out_of_order(pairs: list[tuple[str, int]]) -> dict[str, list[int]]:
    """The cases whose sequence numbers arrived out of order, with the order seen."""
    seen: dict[str, list[int]] = defaultdict(list)
    for case, seq in pairs:
        seen[case].append(seq)
    return {case: order for case, order in seen.items() if order != sorted(order)}


# -- the tests -----------------------------------------------------------------------------------


@pytest.mark.timeout(300)
async def test_brokers_stopped_and_killed_under_load_lose_nothing_and_stop_nothing(
    bus: Bus, cluster: Cluster, tmp_path: Path
) -> None:
    """Police receipts flow through the Bus harness to an inbox-helper consumer, and through the
    police adapter to the enforcement adapter, while the broker leading the most submit
    partitions is stopped, then, once it is back, while the new busiest one dies (SIGKILL).
    During each outage two brokers are left (min ISR 2): the part of each stream sent only
    once the broker is down arrives before it comes back. At the end every message has arrived
    exactly once, in per-case order, and the router never stopped."""
    outages = ["stopped", "killed"]
    assert {len(p["replicas"]) for p in await _submit_partitions(bus.settings)} == {BROKERS}
    police = await bus.party(POLICE)
    sent = stream(police, cases=10, per_case=30)
    documents = _documents(cases=10, per_case=15)
    # One part of each stream before the outages, one more during each of them.
    sent_parts = _split(sent, len(outages) + 1)
    doc_parts = _split(documents, len(outages) + 1)
    gates = [asyncio.Event() for _ in outages]

    log_file = tmp_path / "router.log"
    router = bus.router_process(log_file=log_file)
    pool = await asyncpg.create_pool(bus.settings.database_url, min_size=1, max_size=4)
    await pool.execute("CREATE TABLE t_live (n serial, message_id uuid, case_id text, seq int)")

    async def handle(conn: asyncpg.Connection, env: Envelope, _: object) -> None:
        await conn.execute(
            "INSERT INTO t_live (message_id, case_id, seq) VALUES ($1, $2, $3)",
            env.message_id,
            env.case_id,
            _seq(bus, env),
        )

    async def live_count() -> int:
        return int(await pool.fetchval("SELECT count(*) FROM t_live"))

    async def pulled_count() -> int:
        return len(await _pulled(tangchi))

    async def bus_stream() -> None:
        for n, part in enumerate(sent_parts):
            if n:
                await gates[n - 1].wait()
            await load_at(bus, part, rate_per_s=30)

    async def adapter_stream() -> list[str]:
        ids = []
        for n, part in enumerate(doc_parts):
            if n:
                await gates[n - 1].wait()
            ids += await _adapter_load(eco, part, rate_per_s=20)
        return ids

    # The recipient's system reads its inbox with the inbox helper all along, outages included.
    live = InboxReader(
        bus.settings, agency_id=BUREAU, consumer_name="bureau-live", handler=handle, pool=pool
    )
    keys = tmp_path / "adapter-keys"
    tasks: list[asyncio.Task[Any]] = []
    try:
        async with (
            live,
            running_adapter(
                police_adapter.build_service, bus.settings, key_dir=keys, webhooks={ECO: None}
            ) as eco_adapter,
            running_adapter(
                enforcement.build_service, bus.settings, key_dir=keys, webhooks={TANGCHI: None}
            ) as tangchi_adapter,
        ):
            eco, tangchi = eco_adapter.department(ECO), tangchi_adapter.department(TANGCHI)
            await logged(log_file, "router.started")
            tasks = [asyncio.create_task(bus_stream()), asyncio.create_task(adapter_stream())]
            await logged(log_file, "router.delivered")
            for n, how in enumerate(outages):
                leaders = Counter(p["leader"] for p in await _submit_partitions(bus.settings))
                victim = int(leaders.most_common(1)[0][0])
                try:
                    await asyncio.to_thread(cluster.stop_broker, victim, how)
                    assert cluster.stopped() == [_part(victim)]
                    gates[n].set()
                    await _until(
                        f"handled by the inbox helper, broker {victim} {how}",
                        live_count,
                        at_least=sum(map(len, sent_parts[: n + 2])),
                        timeout_s=120,
                    )
                    await _until(
                        f"pulled through the adapters, broker {victim} {how}",
                        pulled_count,
                        at_least=sum(map(len, doc_parts[: n + 2])),
                        timeout_s=120,
                    )
                    # All of it went through two brokers: the third is still down.
                    assert cluster.stopped() == [_part(victim)]
                    assert router.poll() is None, "router died:\n" + tail(log_file)
                finally:
                    await asyncio.to_thread(cluster.script, "up")
                assert cluster.stopped() == []
                await _wait_full_isr(bus.settings)
            await asyncio.wait_for(tasks[0], 60)
            adapter_ids = await asyncio.wait_for(tasks[1], 60)
            items = await _pulled(tangchi)
        rows = await pool.fetch("SELECT message_id, case_id, seq FROM t_live ORDER BY n")
        audited = await pool.fetch(
            "SELECT message_id::text, count(*) AS n FROM audit_entries"
            " WHERE event_kind = 'accepted' GROUP BY message_id"
        )

        # Through the adapters: each message pulled once, in per-case order.
        pulled_ids = [str(i["message_id"]) for i in items]
        assert len(pulled_ids) == len(set(pulled_ids)), "an adapter message arrived twice"
        assert set(pulled_ids) == set(adapter_ids), "adapter messages lost"
        pulled = [(i["document"]["ajbh"], _letter_seq(i["document"]["ysshh"])) for i in items]
        assert _out_of_order(pulled) == {}
        # The inbox helper handled each message once, in per-case order...
        assert len(rows) == len(sent) == len({r["message_id"] for r in rows})
        assert _out_of_order([(r["case_id"], r["seq"]) for r in rows]) == {}
        # ...and the inbox topic itself holds each delivery once, in per-case order.
        raw = await bus.inbox(BUREAU, want=len(sent), timeout_s=60, settle_s=2)
        delivered = bus.envelopes(raw)
        ids = [e.message_id for e in delivered]
        assert len(ids) == len(set(ids)), f"{len(ids) - len(set(ids))} deliveries seen twice"
        lost = {e.message_id for e in sent} - set(ids)
        assert not lost, f"{len(lost)} messages lost"
        assert _out_of_order([(e.case_id, _seq(bus, e)) for e in delivered]) == {}
        # One audit entry for each message of either stream.
        expected = {str(e.message_id) for e in sent} | set(adapter_ids)
        assert {r["message_id"] for r in audited} == expected
        assert {r["n"] for r in audited} == {1}

        assert router.poll() is None, "router died:\n" + tail(log_file)
        router.send_signal(signal.SIGTERM)
        assert await wait_exit(router, 30) == 0
    finally:
        for task in tasks:
            task.cancel()
        stop(router)
        await pool.close()


@pytest.mark.timeout(300)
async def test_two_routers_split_the_partitions_and_survive_one_killed(
    bus: Bus, tmp_path: Path
) -> None:
    police = await bus.party(POLICE)
    await two_routers_one_killed(bus, tmp_path, stream(police, cases=10, per_case=30))


@pytest.mark.parametrize(
    "failpoint", ["router.after_audit", "router.mid_produce", "router.after_commit"]
)
@pytest.mark.timeout(300)
async def test_router_killed_mid_batch_on_the_cluster_loses_nothing_and_delivers_nothing_twice(
    bus: Bus, tmp_path: Path, failpoint: str
) -> None:
    police = await bus.party(POLICE)
    await router_killed_at(bus, tmp_path, stream(police, cases=20, per_case=20), failpoint)
