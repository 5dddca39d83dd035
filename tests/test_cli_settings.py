"""The commands take their defaults from Settings: a ``CASEBUS_*`` variable is read (and
checked) in one place, and a flag still overrides it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from bus.cli import app
from bus.cli._app import load_group
from bus.settings import Settings
from bus.signing import write_keypair
from bus.sla.app import DEFAULT_SLA_KEY_FILE
from bus.sla.calendar import DEFAULT_HOLIDAYS_OVERRIDE_PATH
from bus.sla.policy import DEFAULT_POLICIES_PATH

_OWN_ENVVARS: set[str] = set()
"""Groups still reading variables through typer: none."""


@pytest.fixture(autouse=True)
def _no_casebus_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("CASEBUS_"):
            monkeypatch.delenv(name)


def _envvars(command: Any) -> dict[str, str]:
    """Every option of a command and its sub-commands that reads a variable itself (typer
    carries its own click, so these are looked at by shape, not by class)."""
    found = {p.name: p.envvar for p in command.params if getattr(p, "envvar", None)}
    for sub in getattr(command, "commands", {}).values():
        found |= _envvars(sub)
    return found


@pytest.mark.parametrize(
    "group", ["acl", "adapter", "audit", "console", "demo", "schemas", "sla", "witness"]
)
def test_no_option_reads_a_variable_of_its_own(group: str) -> None:
    assert group not in _OWN_ENVVARS
    assert _envvars(load_group(group)) == {}


def test_the_check_sees_an_option_with_its_own_variable() -> None:
    # The check can fail: a sub-command's option with a variable of its own is found.
    probe = typer.Typer()

    @probe.command("one")
    def one(port: int = typer.Option(1, envvar="CASEBUS_PROBE_PORT")) -> None: ...

    @probe.command("two")
    def two() -> None: ...

    assert _envvars(typer.main.get_group(probe)) == {"port": "CASEBUS_PROBE_PORT"}


def test_the_light_path_s_defaults_are_the_settings_defaults() -> None:
    # `casebus sla due` knows these without loading the settings when no variable is set.
    defaults = Settings()
    assert defaults.sla_policies_file == DEFAULT_POLICIES_PATH
    assert defaults.sla_holidays_override_file == DEFAULT_HOLIDAYS_OVERRIDE_PATH
    assert defaults.sla_key_file == DEFAULT_SLA_KEY_FILE


def _copy_of_the_policies(tmp_path: Path) -> Path:
    text = DEFAULT_POLICIES_PATH.read_text(encoding="utf-8")
    out = tmp_path / "policies.yaml"
    out.write_text(text, encoding="utf-8")
    return out


def test_sla_policies_reads_the_policy_file_setting_and_the_flag_overrides_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    runner = CliRunner()
    everything = runner.invoke(app, ["sla", "policies"])
    assert everything.exit_code == 0, everything.output
    monkeypatch.setenv("CASEBUS_SLA_POLICIES_FILE", str(tmp_path / "missing.yaml"))
    refused = runner.invoke(app, ["sla", "policies"])
    assert refused.exit_code == 2
    assert "missing.yaml" in refused.output
    copy = _copy_of_the_policies(tmp_path)
    flagged = runner.invoke(app, ["sla", "policies", "--policies", str(copy)])
    assert flagged.exit_code == 0, flagged.output
    assert flagged.output == everything.output


def test_witness_vkey_takes_its_name_and_key_from_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    key = write_keypair("w", tmp_path).private_key
    runner = CliRunner()
    missing = runner.invoke(app, ["witness", "vkey"])
    assert missing.exit_code == 2
    assert "CASEBUS_WITNESS_NAME" in missing.output
    monkeypatch.setenv("CASEBUS_WITNESS_NAME", "ygh.court/witness")
    monkeypatch.setenv("CASEBUS_WITNESS_KEY_FILE", str(key))
    from_env = runner.invoke(app, ["witness", "vkey"])
    assert from_env.exit_code == 0, from_env.output
    assert from_env.output.startswith("ygh.court/witness+")
    flagged = runner.invoke(app, ["witness", "vkey", "--name", "other.example/witness"])
    assert flagged.output.startswith("other.example/witness+")


def test_a_bad_command_setting_stops_the_command_naming_its_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CASEBUS_WITNESS_PORT", "seventy")
    result = CliRunner().invoke(app, ["witness", "vkey"])
    assert result.exit_code == 2
    assert "CASEBUS_WITNESS_PORT='seventy'" in result.output


def test_schemas_check_refuses_a_schema_dir_setting_that_is_no_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CASEBUS_SCHEMA_DIR", str(tmp_path / "nowhere"))
    result = CliRunner().invoke(app, ["schemas", "check"])
    assert result.exit_code == 2
    assert "CASEBUS_SCHEMA_DIR=" in result.output


def test_help_still_names_the_variable_an_option_defaults_from() -> None:
    result = CliRunner().invoke(app, ["console", "--help"], terminal_width=200)
    assert result.exit_code == 0
    assert "CASEBUS_CONSOLE_PORT" in result.output


def test_sla_run_reads_its_key_and_policy_files_from_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    runner = CliRunner()
    monkeypatch.setenv("CASEBUS_SLA_KEY_FILE", str(tmp_path / "no-key.pem"))
    no_key = runner.invoke(app, ["sla", "run"])
    assert no_key.exit_code == 2
    assert f"--key-file {tmp_path / 'no-key.pem'} does not exist" in no_key.output
    key = write_keypair("casebus.sla", tmp_path).private_key
    monkeypatch.setenv("CASEBUS_SLA_KEY_FILE", str(key))
    monkeypatch.setenv("CASEBUS_SLA_POLICIES_FILE", str(tmp_path / "no-policies.yaml"))
    # The policies are read before anything is connected to: the setting's file is refused.
    no_policies = runner.invoke(app, ["sla", "run"])
    assert no_policies.exit_code == 2
    assert "no-policies.yaml" in no_policies.output
