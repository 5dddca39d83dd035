"""Tests for the CLI's start-up: light commands do not import the heavy half of the bus.

``casebus --help`` and ``casebus sla due`` used to import FastAPI, uvicorn, aiokafka and every
adapter (1.8 s). Time is not measured here (a loaded machine would make that flaky); instead
``python -X importtime`` lists every module a command imported, and the heavy ones must not
be among them.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from bus.cli import app
from bus.cli._app import GROUPS

HEAVY = ("fastapi", "starlette", "uvicorn", "aiokafka", "asyncpg", "adapters")
"""Top-level packages a light command must not import."""

LIGHT = [
    ["--help"],
    ["sla", "--help"],
    ["sla", "due", "--help"],
    ["sla", "due", "court.acceptance", "--start", "2026-09-29T10:00:00+08:00"],
    ["sla", "policies"],
]


def _imported(casebus_exe: Path, args: list[str]) -> tuple[str, set[str]]:
    """Run ``casebus ARGS`` under ``-X importtime``: its stdout and every module it imported."""
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
