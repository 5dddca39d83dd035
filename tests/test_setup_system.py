"""Tests for deploy/setup-system: what a fresh machine gets installed, and that a set-up machine
gets nothing; plus that `make demo`, `make test` and .ci/run all run it.

The script runs against stub ``dpkg-query``, ``id``, ``sudo``, ``apt-get``, ``npm`` (and
``mvn``) on a PATH of their own, which record what they were asked, so nothing is installed for
real.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "deploy" / "setup-system"
APT = [
    "postgresql",
    "maven",
    "openjdk-17-jdk-headless",
    "openssl",
    "chromium",
    "fonts-noto-cjk",
    "nodejs",
    "npm",
    "openssh-client",
]


def _all_but(*missing: str) -> list[str]:
    """Installed packages; those missing must have no stand-in (``mvn``, ``chromium``) on the
    stub PATH (the script also accepts, say, a PostgreSQL found under /usr/lib/postgresql)."""
    return [p for p in APT if p not in missing]


def _npm_pins() -> list[str]:
    match = re.search(r"^NPM_WANTS=\((.*)\)$", SCRIPT.read_text(encoding="utf-8"), re.M)
    assert match, "NPM_WANTS not found in deploy/setup-system"
    return re.findall(r'"([^"]+)"', match.group(1))


def _maven_pins() -> list[str]:
    match = re.search(r"^MVN_WANTS=\((.*)\)$", SCRIPT.read_text(encoding="utf-8"), re.M)
    assert match, "MVN_WANTS not found in deploy/setup-system"
    return re.findall(r'"([^"]+)"', match.group(1))


def _stub(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text(f"#!/bin/sh\n{body}\n", encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


class Machine:
    """A pretend machine: which Debian packages are installed, who we are, whether sudo exists."""

    def __init__(self, tmp: Path, *, installed: list[str], uid: int, sudo: bool) -> None:
        self.bin = tmp / "bin"
        self.bin.mkdir()
        self.calls = tmp / "calls"
        self.node_dir = tmp / "node"
        statuses = "".join(
            f"{'installed' if p in installed else 'not-installed'} {p}\\n" for p in APT
        )
        _stub(self.bin, "dpkg-query", f"printf '{statuses}'")
        _stub(self.bin, "id", f"echo {uid}")
        _stub(self.bin, "apt-get", f'echo "apt-get $*" >> {self.calls}')
        _stub(self.bin, "npm", f'echo "npm $*" >> {self.calls}')
        self.m2 = tmp / "m2"
        self.go_version("go1.26.8")
        if sudo:
            _stub(self.bin, "sudo", f'echo "sudo $1" >> {self.calls}; exec "$@"')
        for tool in ("env", "mkdir"):  # what the script and the sudo stub need for real
            (self.bin / tool).symlink_to(f"/usr/bin/{tool}")

    def go_version(self, version: str) -> None:
        """The ``go`` on PATH, answering ``go env GOVERSION`` (and ``go version``)."""
        _stub(self.bin, "go", f"echo {version}")

    def give_downloads(self) -> None:
        """The npm packages and the Maven jars, as a set-up machine has them."""
        self.give_maven_jars()
        self.give_npm_packages()

    def give_maven_jars(self) -> None:
        for gav in _maven_pins():
            group, artifact, version = gav.split(":")
            folder = self.m2.joinpath(*group.split("."), artifact, version)
            folder.mkdir(parents=True)
            (folder / f"{artifact}-{version}.jar").write_bytes(b"PK")

    def give_npm_packages(self) -> None:
        for spec in _npm_pins():
            name, _, version = spec.rpartition("@")
            folder = self.node_dir / "node_modules" / name
            folder.mkdir(parents=True)
            (folder / "package.json").write_text(
                f'{{\n  "name": "{name}",\n  "version": "{version}"\n}}\n', encoding="utf-8"
            )

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {"PATH": str(self.bin), "HOME": str(self.node_dir.parent), "LANG": "C.UTF-8"}
        env["CASEBUS_NODE_DIR"] = str(self.node_dir)
        env["CASEBUS_M2_REPO"] = str(self.m2)
        return subprocess.run(
            ["/bin/bash", str(SCRIPT), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    def recorded(self) -> list[str]:
        return self.calls.read_text(encoding="utf-8").splitlines() if self.calls.exists() else []


def test_a_machine_with_everything_installs_nothing(tmp_path: Path) -> None:
    machine = Machine(tmp_path, installed=APT, uid=1000, sudo=True)
    machine.give_downloads()
    done = machine.run()
    assert done.returncode == 0, done.stderr
    assert machine.recorded() == []
    assert machine.run("--check").returncode == 0


def test_a_missing_browser_and_cjk_font_are_installed_with_sudo(tmp_path: Path) -> None:
    machine = Machine(
        tmp_path, installed=_all_but("chromium", "fonts-noto-cjk"), uid=1000, sudo=True
    )
    machine.give_downloads()
    done = machine.run()
    assert done.returncode == 0, done.stderr
    assert machine.recorded() == [
        "sudo env",
        "apt-get update -qq",
        "sudo env",
        "apt-get install -y -qq chromium fonts-noto-cjk",
    ]


def test_root_installs_without_sudo(tmp_path: Path) -> None:
    machine = Machine(tmp_path, installed=_all_but("maven"), uid=0, sudo=False)
    machine.give_downloads()
    done = machine.run()
    assert done.returncode == 0, done.stderr
    assert machine.recorded() == ["apt-get update -qq", "apt-get install -y -qq maven"]


def test_without_root_or_sudo_it_says_what_to_run_and_fails(tmp_path: Path) -> None:
    machine = Machine(tmp_path, installed=_all_but("maven"), uid=1000, sudo=False)
    machine.give_downloads()
    done = machine.run()
    assert done.returncode == 1
    assert "apt-get install -y maven" in done.stderr
    assert machine.recorded() == []


def test_the_asyncapi_parser_goes_to_the_cache_folder_not_the_repository(
    tmp_path: Path,
) -> None:
    machine = Machine(tmp_path, installed=APT, uid=1000, sudo=True)
    machine.give_maven_jars()
    check = machine.run("--check")
    assert check.returncode == 1
    assert check.stdout.split("\n")[:-1] == [f"npm {spec}" for spec in _npm_pins()]
    done = machine.run()
    assert done.returncode == 0, done.stderr
    assert machine.recorded() == [
        f"npm install --prefix {machine.node_dir} --no-audit --no-fund --loglevel=error "
        + " ".join(_npm_pins())
    ]


def test_bouncycastle_for_the_docs_java_goes_to_the_maven_cache(tmp_path: Path) -> None:
    machine = Machine(tmp_path, installed=APT, uid=1000, sudo=True)
    machine.give_npm_packages()
    # maven is installed: its mvn (a stub here; not on PATH by default, as it would stand in for
    # the maven package in the other tests)
    _stub(machine.bin, "mvn", f'echo "mvn $*" >> {machine.calls}')
    check = machine.run("--check")
    assert check.returncode == 1
    assert check.stdout.split("\n")[:-1] == [f"maven {gav}" for gav in _maven_pins()]
    assert any(gav.startswith("org.bouncycastle:") for gav in _maven_pins())
    done = machine.run()
    assert done.returncode == 0, done.stderr
    assert machine.recorded() == [
        f"mvn -q -B -Dmaven.repo.local={machine.m2} dependency:get -Dartifact={gav}"
        for gav in _maven_pins()
    ]


@pytest.mark.parametrize("target", ["demo", "test", "test-fast", "lint"])
def test_make_targets_run_the_system_set_up_first(target: str) -> None:
    plan = subprocess.run(
        ["make", "--no-print-directory", "-n", "-B", target],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        # Under `make test` (as in CI) pytest inherits MAKELEVEL, and a sub-make then announces
        # "Entering directory" before its plan: run as a make of our own.
        env={k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")},
    ).stdout.splitlines()
    assert plan[0] == "deploy/setup-system", plan[:3]


def test_ci_runs_the_same_set_up_script() -> None:
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert "\ndeploy/setup-system\n" in ci
    assert "apt-get" not in ci, "package installs belong in deploy/setup-system only"


def test_a_go_too_old_for_the_interop_tests_is_named_and_fails(tmp_path: Path) -> None:
    machine = Machine(tmp_path, installed=_all_but(), uid=0, sudo=False)
    machine.give_downloads()
    machine.go_version("go1.19.8")  # Debian 12's golang-go
    checked = machine.run("--check")
    assert checked.returncode == 1 and checked.stdout.splitlines() == ["go 1.25+"], checked
    done = machine.run()
    assert done.returncode == 1, done
    assert "Go 1.25 or later is needed" in done.stderr and "go1.19.8" in done.stderr, done.stderr
    assert machine.recorded() == []  # it installs nothing it cannot install well
