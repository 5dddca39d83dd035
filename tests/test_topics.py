"""Topic provisioning on the real broker, through the CLI as an operator runs it."""

from __future__ import annotations

import subprocess
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient

from bus.agencies import load_registry
from bus.settings import Settings
from bus.topics import planned_topics


async def test_topics_ensure_creates_every_topic_once(
    settings: Settings, cli_env: dict[str, str], casebus_exe: Path
) -> None:
    first = subprocess.run(
        [str(casebus_exe), "topics", "ensure"],
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert first.returncode == 0, first.stderr
    wanted = planned_topics(settings, load_registry(settings.agencies_file))
    assert f"{len(wanted)} created, 0 already present" in first.stdout

    second = subprocess.run(
        [str(casebus_exe), "topics", "ensure"],
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert second.returncode == 0, second.stderr
    assert f"0 created, {len(wanted)} already present" in second.stdout

    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(wanted)
    finally:
        await admin.close()
    partitions = {d["topic"]: len(d["partitions"]) for d in described}
    assert partitions == {t: settings.topic_partitions for t in wanted}
    assert f"{settings.topic_prefix}.inbox.ygh.procuratorate" in partitions
