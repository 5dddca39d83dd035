"""A hanging transaction on the router group's offsets, made on purpose.

What the fault loops caught about once in ninety clean broker restarts: the router's
transaction had committed offsets for the group, the transaction coordinator finished it, and
its marker never reached the group's ``__consumer_offsets`` partition. The group coordinator
then answers UNSTABLE_OFFSET_COMMIT for those submit partitions for good, and a router that
must read their offset waits forever. Kafka's own ``kafka-transactions.sh find-hanging``
lists it.

Here the same state is made deterministically: with the broker's transaction verification
switched off for a moment (it is what refuses offsets a transaction did not add), the router's
producer id commits transactional offsets that no transaction coordinator knows of. The
results are the same pending offsets, the same answer and the same listing by Kafka's tool.

- A router that knows the outcome of its own last transaction with the group's offsets
  settles its hanging one with that outcome, and routing goes on exactly once.
- A router that does not know (the transaction was a previous process's) does not guess: it
  says so and waits; the runbook's tool (Kafka's TransactionsCommand, run from the local
  broker's Maven classpath) finds the transaction and aborts it, and routing goes on.
Counts are raw, on read_committed consumers.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.structs import TopicPartition
from buskit import Bus
from faultkit import check_exactly_once_in_order, logged, stop, stream
from test_router_eos import _delivered

from bus import failpoints
from bus.router import eos
from bus.router.eos import _FencedTxnOffsetCommitRequest
from bus.router.hanging import settle_offsets
from bus.settings import REPO_ROOT, Settings

POLICE = "ygh.police.bureau"
BUREAU = "ygh.enforcement.bureau"
VERIFICATION = "transaction.partition.verification.enable"
FAST = {"CASEBUS_ROUTER_HANGING_OFFSETS_AFTER_S": "2"}

pytestmark = pytest.mark.slow


@pytest.fixture
async def bus(provisioned: Settings, tmp_path: Path) -> AsyncIterator[Bus]:
    b = Bus(provisioned.model_copy(update={"router_max_batch": 25}), tmp_path)
    await b.setup()
    yield b
    await b.close()


class GroupReader:
    """Reads the router group's committed offsets stably, without joining the group, and
    writes transactional offsets to its coordinator."""

    def __init__(self, consumer: AIOKafkaConsumer, bus: Bus) -> None:
        self.consumer = consumer
        self.bus = bus
        self.made: dict[str, list[TopicPartition]] = {}  # transactional id -> its partitions

    async def clean_up(self) -> None:
        """Abort what a failed test left hanging, so that the shared broker keeps none."""
        for transactional_id, partitions in self.made.items():
            if await self.pending(partitions):
                await settle_offsets(
                    transactional_id=transactional_id,
                    group_id=self.consumer._coordinator.group_id,
                    outcome="abort",
                    client_options=self.bus.settings.kafka_client_options(),
                )

    def submit_partitions(self) -> list[TopicPartition]:
        topic = self.bus.settings.topic_submit(POLICE)
        parts = self.consumer.partitions_for_topic(topic) or set()
        assert parts, f"{topic} has no partitions"
        return [TopicPartition(topic, p) for p in sorted(parts)]

    async def committed(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        found = await eos.committed_once(self.consumer, tps)
        return {tp: om.offset for tp, om in found.items()}

    async def offsets_partition(self) -> str:
        """The ``__consumer_offsets`` partition that holds the group: Kafka's
        ``Utils.abs(groupId.hashCode()) % partitions`` (Math.abs, and 0 for MIN_VALUE; not the
        partitioner's sign-bit mask), with Java's String.hashCode."""
        units = self.consumer._coordinator.group_id.encode("utf-16-be")
        h = 0
        for i in range(0, len(units), 2):
            h = (31 * h + int.from_bytes(units[i : i + 2], "big")) & 0xFFFFFFFF
        await self.consumer._client.force_metadata_update()
        count = len(self.consumer._client.cluster.partitions_for_topic("__consumer_offsets") or ())
        assert count, "the broker's metadata has no __consumer_offsets"
        signed = h - (1 << 32) if h >= 1 << 31 else h
        return str((0 if signed == -(1 << 31) else abs(signed)) % count)  # Utils.abs

    async def pending(self, tps: list[TopicPartition]) -> bool:
        try:
            await self.committed(tps)
        except eos.UnstableOffsetCommitError:
            return True
        return False

    async def commit_unverified(
        self,
        *,
        transactional_id: str,
        producer_id: int,
        producer_epoch: int,
        offsets: dict[TopicPartition, int],
    ) -> None:
        """TxnOffsetCommit for a producer id with no AddOffsetsToTxn before it, accepted only
        while the broker's transaction verification is off: a transaction's offsets whose
        marker never comes."""
        coordinator = self.consumer._coordinator
        await coordinator.ensure_coordinator_known()
        by_topic: dict[str, list[tuple[int, int, int, str, dict[int, bytes]]]] = {}
        for tp, offset in sorted(offsets.items()):
            by_topic.setdefault(tp.topic, []).append((tp.partition, offset, -1, "", {}))
        self.made[transactional_id] = sorted(offsets)
        request = _FencedTxnOffsetCommitRequest(
            transactional_id=transactional_id,
            group_id=coordinator.group_id,
            producer_id=producer_id,
            producer_epoch=producer_epoch,
            generation_id=-1,
            member_id="",
            group_instance_id=None,
            topics=[(t, parts, {}) for t, parts in by_topic.items()],
            tags={},
        )
        async with _verification_off(self.bus):
            for _ in range(100):  # the broker applies the config change a moment later
                response = await self.consumer._client.send(coordinator.coordinator_id, request)
                codes = {code for _, parts, _ in response.errors for _, code, _ in parts}
                if codes == {0}:
                    return
                await asyncio.sleep(0.1)
        raise AssertionError(f"the broker kept refusing the offsets: error codes {codes}")


@asynccontextmanager
async def _verification_off(bus: Bus) -> AsyncIterator[None]:
    """Broker 1 without transaction verification, then back to its configured default (the
    AlterConfigs with no entry removes every dynamic override of the broker)."""
    admin = AIOKafkaAdminClient(**bus.settings.kafka_client_options())
    await admin.start()
    try:
        await admin.alter_configs(
            [ConfigResource(ConfigResourceType.BROKER, "1", {VERIFICATION: "false"})]
        )
        try:
            yield
        finally:
            await admin.alter_configs([ConfigResource(ConfigResourceType.BROKER, "1", {})])
    finally:
        await admin.close()


@asynccontextmanager
async def _group_reader(bus: Bus) -> AsyncIterator[GroupReader]:
    eos.install()
    consumer = AIOKafkaConsumer(
        **bus.settings.kafka_client_options(),
        group_id=f"{bus.settings.topic_prefix}.router",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        reader = GroupReader(consumer, bus)
        try:
            yield reader
        finally:
            await reader.clean_up()
    finally:
        await consumer.stop()


async def _probe_partition(bus: Bus) -> TopicPartition:
    """A partition nobody routes: the witness of how the hanging offsets were ended (a commit
    applies its offset 42, an abort drops it)."""
    topic = f"{bus.settings.topic_prefix}.hanging-probe"
    admin = AIOKafkaAdminClient(**bus.settings.kafka_client_options())
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        await admin.close()
    return TopicPartition(topic, 0)


def _events(log_file: Path, event: str) -> list[dict[str, object]]:
    return [
        json.loads(line)
        for line in log_file.read_text().splitlines()
        if line.startswith("{") and f'"{event}"' in line
    ]


@pytest.mark.timeout(300)
async def test_a_hanging_transaction_of_its_own_is_settled_with_its_own_outcome(
    bus: Bus, tmp_path: Path
) -> None:
    police = await bus.party(POLICE)
    first = stream(police, cases=3, per_case=5)
    await bus.submit(*first)
    probe = await _probe_partition(bus)
    log_file = tmp_path / "router.log"
    router = bus.router_process(log_file=log_file, extra_env=FAST)
    try:
        await _delivered(log_file, len(first))
        [ready] = _events(log_file, "router.producer_ready")
        async with _group_reader(bus) as reader:
            submit = reader.submit_partitions()
            before = await reader.committed(submit)
            assert before, "the router committed no offset"
            # The router is idle; its last transaction with the group's offsets committed.
            await reader.commit_unverified(
                transactional_id=str(ready["transactional_id"]),
                producer_id=int(ready["producer_id"]),  # type: ignore[call-overload]
                producer_epoch=int(ready["producer_epoch"]),  # type: ignore[call-overload]
                offsets={**before, probe: 42},
            )
            assert await reader.pending([*submit, probe]), "no hanging transaction was made"
            await logged(log_file, "router.hanging_offsets_settled", timeout_s=60)
            after = await reader.committed([*submit, probe])
        assert after == {**before, probe: 42}  # ended as a commit: its offsets apply
        [settled] = _events(log_file, "router.hanging_offsets_settled")
        assert (settled["outcome"], settled["producer_id"]) == ("commit", ready["producer_id"])
        second = stream(police, cases=3, per_case=5, start=5)
        await bus.submit(*second)
        await check_exactly_once_in_order(bus, first + second)
        assert router.poll() is None
    finally:
        stop(router)


def _kafka_transactions(bus: Bus, *args: str) -> str:
    done = subprocess.run(
        [
            str(REPO_ROOT / "deploy" / "local" / "kafka-transactions"),
            "--bootstrap-server",
            bus.settings.kafka_bootstrap.split(",")[0],
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.timeout(400)
async def test_a_hanging_transaction_of_unknown_outcome_waits_for_the_operator(
    bus: Bus, tmp_path: Path
) -> None:
    probe = await _probe_partition(bus)
    police = await bus.party(POLICE)
    sent = stream(police, cases=3, per_case=5)
    await bus.submit(*sent)
    async with _group_reader(bus) as reader:
        # A previous router process under the same id left offsets pending; this process
        # cannot know whether that transaction committed.
        producer_id = await _hang_as_previous_process(bus, reader, probe)
        log_file = tmp_path / "router.log"
        router = bus.router_process(log_file=log_file, extra_env=FAST)
        try:
            await logged(log_file, "router.hanging_offsets_fate_unknown", timeout_s=60)
            await asyncio.sleep(3)  # past another due time: still no guess, no routing
            assert not _events(log_file, "router.hanging_offsets_settled")
            assert not _events(log_file, "router.delivered")
            assert await reader.pending([probe])
            [unknown] = _events(log_file, "router.hanging_offsets_fate_unknown")
            assert unknown["producer_id"] == producer_id
            # The runbook (CasebusRouterOffsetsStuck): Kafka's own tool finds it on the
            # group's offsets partition (find-hanging lists only those older than a minute)...
            partition = await reader.offsets_partition()
            producers = _kafka_transactions(
                bus, "describe-producers", "--topic", "__consumer_offsets", "--partition", partition
            )
            rows = [
                line.split()
                for line in producers.splitlines()
                if line.split()[:1] == [str(producer_id)] and line.split()[5] != "None"
            ]
            assert len(rows) == 1, f"producer {producer_id} on partition {partition}:\n{producers}"
            start_offset = rows[0][5]
            # ... and aborts it (here nothing had been routed under those offsets).
            _kafka_transactions(
                bus,
                "abort",
                "--topic",
                "__consumer_offsets",
                "--partition",
                partition,
                "--start-offset",
                start_offset,
            )
            await check_exactly_once_in_order(bus, sent)
            assert await reader.committed([probe]) == {}  # ended as an abort: 42 dropped
            assert router.poll() is None
        finally:
            stop(router)


def _producer_of(bus: Bus, transactional_id: str) -> tuple[int, int]:
    """The producer id and epoch Kafka's transaction coordinator holds for the id."""
    out = _kafka_transactions(bus, "describe", "--transactional-id", transactional_id)
    header, row = (line.split() for line in out.strip().splitlines()[:2])
    fields = dict(zip(header, row, strict=False))
    return int(fields["ProducerId"]), int(fields["ProducerEpoch"])


@pytest.mark.timeout(300)
async def test_a_router_rewinding_onto_its_own_hanging_offsets_settles_them(
    bus: Bus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The path the caught stall took: a batch failed (before its offsets were added), and the
    rewind that follows must read offsets a committed transaction left hanging."""
    police = await bus.party(POLICE)
    probe = await _probe_partition(bus)
    first = stream(police, cases=3, per_case=5)
    second = stream(police, cases=3, per_case=5, start=5)
    async with bus.router(router_hanging_offsets_after_s=2), _group_reader(bus) as reader:
        await bus.submit(*first)
        await bus.inbox(BUREAU, want=len(first), timeout_s=60)
        submit = reader.submit_partitions()
        before = await reader.committed(submit)
        producer_id, epoch = _producer_of(bus, f"{bus.settings.topic_prefix}.router.router-0")
        await reader.commit_unverified(
            transactional_id=f"{bus.settings.topic_prefix}.router.router-0",
            producer_id=producer_id,
            producer_epoch=epoch,
            offsets={**before, probe: 42},
        )
        assert await reader.pending([probe]), "no hanging transaction was made"
        # The next batch fails in its produce, before its offsets: the router rewinds.
        monkeypatch.setattr(failpoints, "_ARMED", {"router.produce_fails": 1})
        monkeypatch.setattr(failpoints, "_SEEN", {})
        await bus.submit(*second)
        await check_exactly_once_in_order(bus, first + second)
        assert failpoints._SEEN.get("router.produce_fails", 0) >= 1, "the batch never failed"
        assert (await reader.committed([probe]))[probe] == 42  # ended as a commit


async def _hang_as_previous_process(bus: Bus, reader: GroupReader, probe: TopicPartition) -> int:
    """Offsets left pending by a previous router process under router-0's id: the submit
    partitions at 0 (where routing starts anyway) and the probe at 42. Its producer id."""
    previous = AIOKafkaProducer(
        **bus.settings.kafka_client_options(),
        transactional_id=f"{bus.settings.topic_prefix}.router.router-0",
    )
    await previous.start()
    producer_id = int(previous._txn_manager.producer_id)
    producer_epoch = int(previous._txn_manager.producer_epoch)
    await previous.stop()
    await reader.commit_unverified(
        transactional_id=f"{bus.settings.topic_prefix}.router.router-0",
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        offsets={**dict.fromkeys(reader.submit_partitions(), 0), probe: 42},
    )
    return producer_id


@pytest.mark.timeout(300)
async def test_the_operator_settles_a_delivered_one_as_a_commit_with_casebus(
    bus: Bus, tmp_path: Path
) -> None:
    """What Kafka's tool cannot do (it only aborts): ``casebus router settle-offsets --outcome
    commit`` ends the hanging transaction as a commit, and its offsets apply."""
    probe = await _probe_partition(bus)
    async with _group_reader(bus) as reader:
        await _hang_as_previous_process(bus, reader, probe)
        assert await reader.pending([probe])
        s = bus.settings
        env = s.to_env(os.environ)
        done = subprocess.run(
            [
                str(Path(sys.executable).parent / "casebus"),
                "router",
                "settle-offsets",
                "--outcome",
                "commit",
                "--id",
                "router-0",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        assert done.stdout.startswith(f"commit: group {s.topic_prefix}.router"), done.stdout
        assert (await reader.committed([probe]))[probe] == 42
        assert not await reader.pending(reader.submit_partitions())
    police = await bus.party(POLICE)
    sent = stream(police, cases=3, per_case=5)
    await bus.submit(*sent)
    router = bus.router_process(log_file=tmp_path / "router.log")
    try:
        await check_exactly_once_in_order(bus, sent)
    finally:
        stop(router)
