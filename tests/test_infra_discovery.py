"""bus.local_infra: the environment's addresses when it names both, else what ``up`` prints.

No broker or database is touched: ``up`` is replaced by a script that prints what it would.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import bus.local_infra as local_infra
from bus.errors import ConfigError
from bus.local_infra import LocalInfra, infra_from_env, parse_exports

UP_OUTPUT = """\
kafka: already running on 127.0.0.1:29092
export CASEBUS_KAFKA_BOOTSTRAP=127.0.0.1:29092
export CASEBUS_DATABASE_URL='postgresql://casebus@127.0.0.1:25432/casebus'
export CASEBUS_ROUTER_DATABASE_URL="postgresql://casebus_router_login@127.0.0.1:25432/casebus"
"""


def test_both_variables_set_are_used_with_the_topic_replication() -> None:
    env = {
        "CASEBUS_KAFKA_BOOTSTRAP": "k:9092",
        "CASEBUS_DATABASE_URL": "postgresql://o@db/x",
        "CASEBUS_TOPIC_REPLICATION": "3",
    }
    assert infra_from_env(env) == LocalInfra("k:9092", "postgresql://o@db/x", 3)


@pytest.mark.parametrize("missing", ["CASEBUS_KAFKA_BOOTSTRAP", "CASEBUS_DATABASE_URL"])
def test_either_variable_unset_finds_nothing(missing: str) -> None:
    env = {"CASEBUS_KAFKA_BOOTSTRAP": "k:9092", "CASEBUS_DATABASE_URL": "postgresql://o@db/x"}
    env[missing] = ""
    assert infra_from_env(env) is None


def test_a_bad_replication_names_its_variable() -> None:
    env = {
        "CASEBUS_KAFKA_BOOTSTRAP": "k:9092",
        "CASEBUS_DATABASE_URL": "postgresql://o@db/x",
        "CASEBUS_TOPIC_REPLICATION": "three",
    }
    with pytest.raises(ConfigError, match="CASEBUS_TOPIC_REPLICATION='three'"):
        infra_from_env(env)


def test_up_s_exports_are_read_without_their_quotes() -> None:
    exports = parse_exports(UP_OUTPUT)
    assert exports == {
        "CASEBUS_KAFKA_BOOTSTRAP": "127.0.0.1:29092",
        "CASEBUS_DATABASE_URL": "postgresql://casebus@127.0.0.1:25432/casebus",
        "CASEBUS_ROUTER_DATABASE_URL": "postgresql://casebus_router_login@127.0.0.1:25432/casebus",
    }


def _fake_up(tmp_path: Path, output: str) -> Path:
    script = tmp_path / "up"
    (tmp_path / "out.txt").write_text(output)
    script.write_text(f"#!/bin/sh\ncat '{tmp_path / 'out.txt'}'\n")
    script.chmod(0o755)
    return script


def _without_addresses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CASEBUS_KAFKA_BOOTSTRAP", raising=False)
    monkeypatch.delenv("CASEBUS_DATABASE_URL", raising=False)
    monkeypatch.delenv("CASEBUS_TOPIC_REPLICATION", raising=False)


def test_without_the_variables_up_is_run_and_its_addresses_returned(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _without_addresses(monkeypatch)
    monkeypatch.setattr(local_infra, "UP", _fake_up(tmp_path, UP_OUTPUT))
    said: list[str] = []
    found = local_infra.local_infra(say=said.append)
    assert found == LocalInfra("127.0.0.1:29092", "postgresql://casebus@127.0.0.1:25432/casebus", 1)
    assert said and "unset" in said[0]
    assert local_infra.local_database_url() == found.database_url


def test_with_the_variables_up_is_not_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CASEBUS_KAFKA_BOOTSTRAP", "k:9092")
    monkeypatch.setenv("CASEBUS_DATABASE_URL", "postgresql://o@db/x")
    monkeypatch.delenv("CASEBUS_TOPIC_REPLICATION", raising=False)
    monkeypatch.setattr(local_infra, "UP", tmp_path / "no-such-script")
    assert local_infra.local_infra() == LocalInfra("k:9092", "postgresql://o@db/x")
    monkeypatch.delenv("CASEBUS_KAFKA_BOOTSTRAP")
    assert local_infra.local_database_url() == "postgresql://o@db/x"  # PostgreSQL alone


def test_up_printing_no_address_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _without_addresses(monkeypatch)
    monkeypatch.setattr(local_infra, "UP", _fake_up(tmp_path, "postgres: failed\n"))
    with pytest.raises(ConfigError, match="printed no CASEBUS_KAFKA_BOOTSTRAP"):
        local_infra.local_infra()
