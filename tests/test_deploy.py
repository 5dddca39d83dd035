"""The deployment files say what the design promises (checked structurally: no Docker here)."""

from __future__ import annotations

import os
from pathlib import Path

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


def _secure_brokers() -> dict[str, dict[str, object]]:
    """Each broker's environment with compose.secure.yaml laid over compose.yaml, as compose
    merges them (key by key)."""
    base = yaml.safe_load((REPO_ROOT / "deploy" / "compose.yaml").read_text())["services"]
    over = yaml.safe_load((REPO_ROOT / "deploy" / "compose.secure.yaml").read_text())["services"]
    return {
        name: {**base[name]["environment"], **over[name]["environment"]}
        for name in base
        if name.startswith("kafka-")
    }


def test_compose_secure_leaves_no_plaintext_listener_and_enforces_acls() -> None:
    brokers = _secure_brokers()
    assert set(brokers) == {"kafka-1", "kafka-2", "kafka-3"}
    for name, env in brokers.items():
        protocols = dict(
            p.split(":", 1) for p in str(env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"]).split(",")
        )
        assert set(protocols.values()) <= {"SSL", "SASL_SSL"}, name
        for key in ("KAFKA_LISTENERS", "KAFKA_ADVERTISED_LISTENERS"):
            listeners = [entry.split("://")[0] for entry in str(env[key]).split(",")]
            assert all(listener in protocols for listener in listeners), (name, key)
        clients = [e for e in str(env["KAFKA_ADVERTISED_LISTENERS"]).split(",") if "127.0.0.1" in e]
        assert len(clients) == 1 and protocols[clients[0].split("://")[0]] == "SASL_SSL"
        assert protocols[str(env["KAFKA_INTER_BROKER_LISTENER_NAME"])] == "SSL"
        assert protocols[str(env["KAFKA_CONTROLLER_LISTENER_NAMES"])] == "SSL"
        assert env["KAFKA_SSL_CLIENT_AUTH"] == "required"
        assert env["KAFKA_SASL_ENABLED_MECHANISMS"] == "SCRAM-SHA-512"
        assert env["KAFKA_AUTHORIZER_CLASS_NAME"].endswith("StandardAuthorizer")  # type: ignore[union-attr]
        assert env["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"] == "false"
        assert env["KAFKA_SUPER_USERS"] == "User:admin;User:CN=casebus-broker"
        # Passwords come from files the image reads (*_CREDENTIALS), never from a variable.
        assert not [k for k in env if "PASSWORD" in k], name


def test_compose_secure_holds_no_secret_and_mounts_what_compose_secrets_makes(
    tmp_path: Path,
) -> None:
    import re
    import subprocess

    text = (REPO_ROOT / "deploy" / "compose.secure.yaml").read_text()
    assert not re.search(r"(?i)password\s*[:=]\s*['\"]?\w", text)
    secrets = tmp_path / "secrets"
    made = subprocess.run(
        [str(REPO_ROOT / "deploy" / "local" / "secure" / "compose-secrets.sh"), str(secrets)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert made.returncode == 0, made.stderr
    over = yaml.safe_load(text)["services"]
    for name, env in _secure_brokers().items():
        assert (
            "${CASEBUS_COMPOSE_SECRETS:-../.casebus/compose-secure}/broker:/etc/kafka/secrets:ro"
            in over[name]["volumes"]
        )
        for key, value in env.items():
            if key.endswith(("_FILENAME", "_CREDENTIALS")):
                assert (secrets / "broker" / str(value)).is_file(), (name, key)
        jaas = str(env["KAFKA_OPTS"]).split("=", 1)[1].removeprefix("/etc/kafka/secrets/")
        assert "ScramLoginModule required" in (secrets / "broker" / jaas).read_text()
    users = {p.stem for p in (secrets / "users").glob("*.password")}
    assert {"admin", "casebus.router", "casebus.sla", "ygh.police.bureau"} <= users
    for path in secrets.rglob("*"):
        if path.is_file():
            assert path.stat().st_mode & 0o077 == 0, path
    # The passwords stayed in their files: the script printed none of them.
    for path in (secrets / "users").glob("*.password"):
        assert path.read_text().strip() not in made.stdout + made.stderr
    script = REPO_ROOT / "deploy" / "local" / "secure" / "compose-users.sh"
    assert (
        "./local/secure/compose-users.sh:/casebus/compose-users.sh:ro"
        in over["kafka-users"]["volumes"]
    )
    assert os.access(script, os.X_OK)
