"""Tests for the CLI's start-up: light commands do not import the heavy half of the bus.

``casebus --help`` and ``casebus sla due`` used to import FastAPI, uvicorn, aiokafka and every
adapter (1.8 s). Time is not measured here (a loaded machine would make that flaky: see
``bench/cli_startup.py`` for the figures); instead ``python -X importtime`` lists every module a
command imported, and the heavy ones must not be among them. ``casebus sla due`` also goes
without structlog, rich, prometheus_client, asyncio and pydantic-settings (together more than
a third of its start-up), each loaded only by the rare case that needs it.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from bus.cli import app
from bus.cli._app import GROUPS
from bus.config_files import safe_load_yaml
from bus.settings import REPO_ROOT, load_settings
from bus.sla.calendar import DEFAULT_HOLIDAYS_OVERRIDE_PATH
from bus.sla.policy import DEFAULT_POLICIES_PATH

HEAVY = ("fastapi", "starlette", "uvicorn", "aiokafka", "asyncpg", "adapters")
"""Top-level packages a light command must not import."""

LIGHT = [
    ["--help"],
    ["sla", "--help"],
    ["sla", "due", "--help"],
    ["sla", "due", "court.acceptance", "--start", "2026-09-29T10:00:00+08:00"],
    ["sla", "policies"],
]

SLA_DUE_SKIPS = ("structlog", "rich", "prometheus_client", "asyncio", "pydantic_settings")
"""Top-level packages ``casebus sla due`` and ``sla policies`` do without (when no
``CASEBUS_*`` variable asks for the settings to be read)."""

NOT_BEFORE_HELP = ("structlog", "prometheus_client", "asyncio", "pydantic_settings", "yaml")
"""What ``--help`` needs even less (typer draws the help page with rich)."""

UNKNOWN_YEAR_DUE = ["sla", "due", "court.acceptance", "--start", "2099-09-29T10:00:00+08:00"]
"""A year neither chinesecalendar nor the override file knows: it logs a warning and counts
weekends only (so it is due on 2099-10-06, not after a National Day week)."""


def _clean_env(**extra: str) -> dict[str, str]:
    """This environment without any ``CASEBUS_*`` variable (as a person's shell), plus extra."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.upper().startswith("CASEBUS_") and k != "PYTHONPROFILEIMPORTTIME"
    }
    return env | extra


def _imported(
    casebus_exe: Path, args: list[str], env: dict[str, str] | None = None
) -> tuple[str, set[str]]:
    """Run ``casebus ARGS`` under ``-X importtime``: its stdout and every module it imported."""
    if env is None:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPROFILEIMPORTTIME"}
    done = subprocess.run(
        [sys.executable, "-X", "importtime", str(casebus_exe), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    modules = {
        line.rsplit("|", 1)[1].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:") and line.count("|") == 2
    }
    assert "bus.cli" in modules, "no importtime report: the check would prove nothing"
    return done.stdout, modules


def _top_level(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return sorted({m.split(".")[0] for m in modules} & set(names))


@pytest.mark.parametrize("args", LIGHT, ids=" ".join)
def test_light_commands_do_not_import_the_web_stack_kafka_or_adapters(
    casebus_exe: Path, args: list[str]
) -> None:
    _, modules = _imported(casebus_exe, args)
    heavy = sorted(m for m in modules if m.split(".")[0] in HEAVY)
    assert heavy == []


def test_sla_due_still_answers(casebus_exe: Path) -> None:
    out, _ = _imported(casebus_exe, LIGHT[3])
    assert out.strip() == "2026-10-12T23:59:59+08:00"


def test_the_importtime_check_sees_a_heavy_command(casebus_exe: Path) -> None:
    # The check can fail: a command that needs FastAPI shows it in the report.
    _, modules = _imported(casebus_exe, ["console", "--help"])
    assert "fastapi" in modules


@pytest.mark.parametrize("args", [LIGHT[3], ["sla", "policies"]], ids=" ".join)
def test_sla_due_goes_without_logging_metrics_asyncio_and_settings(
    casebus_exe: Path, args: list[str]
) -> None:
    _, modules = _imported(casebus_exe, args, _clean_env())
    assert _top_level(modules, SLA_DUE_SKIPS) == []


def test_help_goes_without_them_too(casebus_exe: Path) -> None:
    _, modules = _imported(casebus_exe, ["--help"], _clean_env())
    assert _top_level(modules, NOT_BEFORE_HELP) == []


def test_an_unknown_year_still_logs_and_counts_loading_what_it_needs(casebus_exe: Path) -> None:
    # The check sees structlog and prometheus_client when they are used; and the warning is
    # rendered as configured (JSON lines without a terminal) although logging was set up
    # before structlog was loaded.
    env = _clean_env()
    out, modules = _imported(casebus_exe, UNKNOWN_YEAR_DUE, env)
    assert out.strip() == "2099-10-06T23:59:59+08:00"
    assert {"structlog", "prometheus_client"} <= modules
    done = subprocess.run(
        [str(casebus_exe), *UNKNOWN_YEAR_DUE], env=env, capture_output=True, text=True, check=True
    )
    (line,) = done.stderr.splitlines()
    event = json.loads(line)
    assert event["event"] == "sla.calendar.unknown_year"
    assert (event["level"], event["year"], event["counting"]) == ("warning", 2099, "weekends_only")
    assert "timestamp" in event


def test_the_level_chosen_still_holds_for_structlog_loaded_later(casebus_exe: Path) -> None:
    env = _clean_env(CASEBUS_LOG_LEVEL="error")
    done = subprocess.run(
        [str(casebus_exe), *UNKNOWN_YEAR_DUE], env=env, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "2099-10-06T23:59:59+08:00"
    assert done.stderr == ""  # the warning is below the level asked for


def test_a_casebus_setting_is_still_read_and_checked(casebus_exe: Path) -> None:
    # With a CASEBUS_* variable set, the settings are loaded as before (pydantic-settings) ...
    _, modules = _imported(casebus_exe, LIGHT[3], _clean_env(CASEBUS_TOPIC_PREFIX="casebus"))
    assert "pydantic_settings" in modules
    # ... and a bad one still stops every command, a light one too.
    done = subprocess.run(
        [str(casebus_exe), *LIGHT[3]],
        env=_clean_env(casebus_topic_partitions="0"),  # names match ignoring case
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith("invalid settings: CASEBUS_TOPIC_PARTITIONS='0'")


def test_without_casebus_variables_the_settings_are_valid_and_set_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # What lets the root callback skip pydantic-settings when no CASEBUS_* variable is set: the
    # defaults alone pass every check and choose no log format or level.
    for name in list(os.environ):
        if name.upper().startswith("CASEBUS_"):
            monkeypatch.delenv(name)
    assert load_settings().model_fields_set == set()


def test_configure_logging_on_import_configures_structlog_once_it_is_loaded() -> None:
    script = """if True:
        import sys
        from bus.logs import configure_logging_on_import
        configure_logging_on_import(log_format="console", level="info")
        configure_logging_on_import(log_format="json", level="warning")  # the last call wins
        assert "structlog" not in sys.modules
        import structlog
        assert not [f for f in sys.meta_path if type(f).__name__ == "_ConfigureOnImport"]
        structlog.get_logger("t").info("hidden")
        structlog.get_logger("t").warning("shown", n=1)
        print(structlog.__spec__.loader.get_source("structlog") is not None)
    """
    done = subprocess.run(
        [sys.executable, "-c", script], env=_clean_env(), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"  # the wrapped loader still answers what it did
    (line,) = done.stderr.splitlines()
    assert {k: v for k, v in json.loads(line).items() if k != "timestamp"} == {
        "event": "shown",
        "n": 1,
        "level": "warning",
    }


def test_the_sla_engine_still_lists_the_unknown_year_counter_from_the_start() -> None:
    script = (
        "import bus.sla.metrics, prometheus_client; "
        "print(prometheus_client.generate_latest().decode())"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], env=_clean_env(), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "# TYPE casebus_sla_calendar_unknown_year_total counter" in done.stdout


def test_the_sla_default_files_are_still_in_the_checkout() -> None:
    # bus.sla finds the checkout without bus.settings; both must agree.
    assert DEFAULT_POLICIES_PATH == REPO_ROOT / "deploy" / "sla-policies.yaml"
    assert DEFAULT_HOLIDAYS_OVERRIDE_PATH == REPO_ROOT / "deploy" / "holidays-override.yaml"
    assert DEFAULT_POLICIES_PATH.exists() and DEFAULT_HOLIDAYS_OVERRIDE_PATH.exists()


_YAML_FILES = sorted((REPO_ROOT / "deploy").rglob("*.yaml"))


@pytest.mark.parametrize("path", _YAML_FILES, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_yaml_read_with_libyaml_is_what_pyyaml_reads(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    try:
        expected = yaml.safe_load(text)
    except yaml.YAMLError as e:  # several documents in one file: refused alike, same words
        with pytest.raises(yaml.YAMLError) as got:
            safe_load_yaml(text)
        assert str(got.value) == str(e)
    else:
        assert safe_load_yaml(text) == expected


@pytest.mark.parametrize(
    "text",
    ["policies:\n  - id: [unclosed\n", "a: 1\n\tb: 2\n", "key: 'open\n", "- a\nb: c\n"],
)
def test_a_broken_yaml_file_is_reported_in_pyyaml_s_words(text: str) -> None:
    with pytest.raises(yaml.YAMLError) as expected:
        yaml.safe_load(text)
    with pytest.raises(yaml.YAMLError) as got:
        safe_load_yaml(text)
    assert str(got.value) == str(expected.value)


def test_every_command_module_is_mounted_with_its_own_help_line() -> None:
    cli = Path(__file__).resolve().parents[1] / "bus" / "cli"
    modules = {p.stem for p in cli.glob("*.py") if not p.stem.startswith("_")}
    assert {g.module.rsplit(".", 1)[1] for g in GROUPS.values()} == modules
    for name, group in GROUPS.items():
        sub = importlib.import_module(group.module).app
        assert isinstance(sub, typer.Typer)
        assert sub.info.help == group.help, f"GROUPS[{name!r}].help differs from {group.module}"


@pytest.mark.parametrize("name", sorted(GROUPS))
def test_each_group_loads_and_shows_its_help(name: str) -> None:
    result = CliRunner().invoke(app, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert f"casebus {name}" in result.output
