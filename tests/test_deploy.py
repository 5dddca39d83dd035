"""The deployment files say what the design promises (checked structurally: no Docker here)."""

from __future__ import annotations

import yaml

from bus.settings import REPO_ROOT


def test_compose_runs_three_kraft_brokers_with_rf3_and_min_isr_2() -> None:
    compose = yaml.safe_load((REPO_ROOT / "deploy" / "compose.yaml").read_text())
    brokers = {n: s for n, s in compose["services"].items() if n.startswith("kafka-")}
    assert len(brokers) == 3
    node_ids = set()
    for service in brokers.values():
        env = service["environment"]
        node_ids.add(env["KAFKA_NODE_ID"])
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
        assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == 3
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == 2
        assert env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == 2
        assert len(env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")) == 3
    assert node_ids == {1, 2, 3}
    assert "postgres" in compose["services"]


def test_local_kafka_version_is_the_same_in_the_script_and_the_pom() -> None:
    lib = (REPO_ROOT / "deploy" / "local" / "_lib.sh").read_text()
    pom = (REPO_ROOT / "deploy" / "local" / "kafka" / "pom.xml").read_text()
    version = lib.split("CASEBUS_KAFKA_VERSION:-", 1)[1].split("}", 1)[0]
    assert f"<kafka.version>{version}</kafka.version>" in pom


def test_compose_takes_the_database_password_from_the_environment() -> None:
    compose = yaml.safe_load((REPO_ROOT / "deploy" / "compose.yaml").read_text())
    password = compose["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"]
    assert password.startswith("${CASEBUS_PG_PASSWORD:?")
