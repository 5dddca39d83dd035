"""Settings: a bad value names its variable, on the API and on the command line."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from bus.errors import ConfigError
from bus.settings import load_settings


def test_bad_values_are_reported_with_every_variable_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CASEBUS_TOPIC_PARTITIONS", "many")
    monkeypatch.setenv("CASEBUS_KAFKA_BOOTSTRAP", "no-port-here")
    with pytest.raises(ConfigError) as info:
        load_settings()
    text = str(info.value)
    assert "CASEBUS_TOPIC_PARTITIONS='many'" in text
    assert "CASEBUS_KAFKA_BOOTSTRAP='no-port-here'" in text


def test_topic_names_follow_the_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CASEBUS_TOPIC_PREFIX", "drill")
    s = load_settings()
    assert (s.topic_submit(), s.topic_dead(), s.topic_inbox("ygh.court")) == (
        "drill.submit",
        "drill.dead",
        "drill.inbox.ygh.court",
    )


def test_cli_exits_2_naming_the_bad_variable(casebus_exe: Path) -> None:
    proc = subprocess.run(
        [str(casebus_exe), "db", "migrate"],
        env={"CASEBUS_DATABASE_URL": "mysql://nope", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert "CASEBUS_DATABASE_URL" in proc.stderr
