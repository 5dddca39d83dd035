"""The two test lanes: conftest marks by fixture, the fast lane cannot reach the infrastructure,
and ``make test-fast`` and .ci/run run the lanes without running a test twice."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bus.settings import REPO_ROOT

TESTS = REPO_ROOT / "tests"
_PROBE = """
def test_asks_for_the_infrastructure_at_run_time(request):
    request.getfixturevalue("infra")

def test_takes_a_database(database_url):
    pass

def test_needs_nothing():
    assert 1 + 1 == 2
"""


def _fast_lane(folder: Path) -> subprocess.CompletedProcess[str]:
    """pytest -m "not integration" on ``folder`` with this suite's conftest as a plugin and
    addresses where nothing answers."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASEBUS_")}
    env.update(
        CASEBUS_KAFKA_BOOTSTRAP="127.0.0.1:9",
        CASEBUS_DATABASE_URL="postgresql://nobody@127.0.0.1:9/none",
        PYTHONPATH=os.pathsep.join([str(TESTS), str(REPO_ROOT)]),
    )
    argv = ["-p", "conftest", "-c", os.devnull, "--rootdir", str(folder), "-p", "no:cacheprovider"]
    return subprocess.run(
        [sys.executable, "-m", "pytest", *argv, "-rA", "-m", "not integration", str(folder)],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_test_taking_an_infrastructure_fixture_leaves_the_fast_lane(tmp_path: Path) -> None:
    (tmp_path / "test_probe.py").write_text(_PROBE)
    done = _fast_lane(tmp_path)
    assert "PASSED test_probe.py::test_needs_nothing" in done.stdout, done.stdout
    assert "test_takes_a_database" not in done.stdout
    assert "1 deselected" in done.stdout


def test_the_fast_lane_refuses_infrastructure_asked_for_at_run_time(tmp_path: Path) -> None:
    (tmp_path / "test_probe.py").write_text(_PROBE)
    done = _fast_lane(tmp_path)
    assert done.returncode == 1
    assert "reaches 'infra'" in done.stdout and "without being marked integration" in done.stdout
    assert "ConnectionRefusedError" not in done.stdout, "it connected before it was refused"


def test_make_test_fast_starts_no_infrastructure() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    plan = subprocess.run(
        ["make", "--no-print-directory", "-n", "-B", "test-fast"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout
    assert 'pytest -m "not integration"' in plan
    assert "deploy/local" not in plan and ".casebus/env" not in plan, plan


def test_ci_runs_the_fast_lane_before_the_infrastructure_and_each_test_once() -> None:
    ci = (REPO_ROOT / ".ci" / "run").read_text(encoding="utf-8")
    fast = ci.index("make test-fast")
    assert (
        fast
        < ci.index("make infra")
        < ci.index('make test ARGS="-p no:cacheprovider -m integration')
    )
    assert ci.index("trap ") > fast, "nothing to stop before the infrastructure starts"
    assert ci.count("lane fast") == 1 and ci.count("lane integration") == 1
