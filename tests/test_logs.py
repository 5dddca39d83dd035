"""Tests for bus.logs: a person at a terminal gets quiet, readable output; services and
``--log-format json`` get JSON lines.

The end-to-end cases run ``casebus topics ensure`` (what ``make demo`` runs before the demo) on a
pseudo-terminal against the real broker, with a fresh topic prefix so topics really get created
and logged.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import time
from pathlib import Path

import pytest

from bus.errors import ConfigError
from bus.logs import LogChoice, choose_logging

# --- the choice ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flag", "setting_format", "setting_level", "is_terminal", "expected"),
    [
        # a person at a terminal: readable, warnings and worse
        (None, None, None, True, LogChoice("console", "warning")),
        # a service (no terminal): JSON lines at info
        (None, None, None, False, LogChoice("json", "info")),
        # whatever was asked for explicitly wins
        ("json", None, None, True, LogChoice("json", "info")),
        ("console", None, None, False, LogChoice("console", "info")),
        (None, "json", None, True, LogChoice("json", "info")),
        (None, "console", None, False, LogChoice("console", "info")),
        (None, None, "debug", True, LogChoice("console", "debug")),
        ("json", "console", "error", False, LogChoice("json", "error")),
    ],
)
def test_the_log_format_and_level_follow_who_is_watching(
    flag: str | None,
    setting_format: str | None,
    setting_level: str | None,
    is_terminal: bool,
    expected: LogChoice,
) -> None:
    got = choose_logging(
        flag=flag,
        setting_format=setting_format,  # type: ignore[arg-type]
        setting_level=setting_level,  # type: ignore[arg-type]
        is_terminal=is_terminal,
    )
    assert got == expected


def test_an_unknown_log_format_names_the_option() -> None:
    with pytest.raises(ConfigError, match="--log-format 'yaml'"):
        choose_logging(flag="yaml", setting_format=None, setting_level=None, is_terminal=True)


# --- the commands ----------------------------------------------------------------------------

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _on_a_terminal(argv: list[str], env: dict[str, str], *, timeout_s: float = 90) -> list[str]:
    """Run ``argv`` with stdin, stdout and stderr on a pseudo-terminal; its lines, uncoloured."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(argv, stdin=follower, stdout=follower, stderr=follower, env=env)
    os.close(follower)
    out = bytearray()
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.5)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(leader)
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
    assert proc.returncode == 0, out.decode(errors="replace")
    text = _ANSI.sub("", out.decode("utf-8", errors="replace"))
    return [line for line in text.replace("\r\n", "\n").split("\n") if line.strip()]


def _json_lines(lines: list[str]) -> list[dict[str, object]]:
    return [json.loads(line) for line in lines if line.lstrip().startswith("{")]


def test_make_demo_set_up_steps_are_quiet_and_readable_on_a_terminal(
    casebus_exe: Path, cli_env: dict[str, str]
) -> None:
    lines = _on_a_terminal([str(casebus_exe), "topics", "ensure"], cli_env)
    created = [line for line in lines if line.startswith("created ")]
    assert len(created) > 3  # topics were created, so topics.created was logged at info ...
    assert _json_lines(lines) == []  # ... and not shown: a person sees what the command says
    assert not any("topics.created" in line for line in lines)
    assert lines[-1].endswith("already present")


def test_json_stays_with_log_format_json_even_on_a_terminal(
    casebus_exe: Path, cli_env: dict[str, str]
) -> None:
    env = {**cli_env, "CASEBUS_TOPIC_PREFIX": cli_env["CASEBUS_TOPIC_PREFIX"] + ".json"}
    lines = _on_a_terminal([str(casebus_exe), "--log-format", "json", "topics", "ensure"], env)
    events = _json_lines(lines)
    assert events, lines
    assert {e["event"] for e in events} == {"topics.created"}
    assert all(e["level"] == "info" for e in events)


def test_a_service_without_a_terminal_logs_json(casebus_exe: Path, cli_env: dict[str, str]) -> None:
    env = {**cli_env, "CASEBUS_TOPIC_PREFIX": cli_env["CASEBUS_TOPIC_PREFIX"] + ".svc"}
    done = subprocess.run(
        [str(casebus_exe), "topics", "ensure"],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=True,
    )
    events = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    assert events and {e["event"] for e in events} == {"topics.created"}


def test_make_demo_starts_with_the_demo_not_the_set_up_steps() -> None:
    repo = Path(__file__).resolve().parents[1]
    plan = subprocess.run(
        ["make", "-n", "-B", "demo"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "MAKEFLAGS": ""},
    ).stdout
    steps = [s.strip(" \\\n") for s in re.split(r"&&", plan.split("source .casebus/env", 1)[1])]
    set_up = [s for s in steps if " db migrate" in s or " topics ensure" in s]
    assert len(set_up) == 2
    assert all(s.endswith(">/dev/null") for s in set_up), set_up
    assert "--log-format json" not in plan  # a person's run gets the terminal's readable logs
