"""deploy/local keeps the logs of the broker's last starts, not only the previous one.

A broker-restart fault test starts the broker dozens of times; the one run that stalled in a
50-run fault loop could not be read afterwards, because each start had moved only the
last log aside. ``keep_server_log`` keeps eight generations, newest as ``server.log.1``.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from bus.settings import REPO_ROOT


def _keep(logs: Path) -> None:
    lib = REPO_ROOT / "deploy" / "local" / "_lib.sh"
    subprocess.run(
        ["bash", "-c", f'source "{lib}"; keep_server_log "{logs}"'],
        check=True,
        capture_output=True,
        timeout=30,
    )


def test_each_start_keeps_the_earlier_logs_newest_first_up_to_eight(tmp_path: Path) -> None:
    for start in range(1, 12):
        (tmp_path / "server.log").write_text(f"start {start}\n")
        _keep(tmp_path)
    kept = sorted(p.name for p in tmp_path.iterdir())
    assert kept == [f"server.log.{n}" for n in range(1, 9)], kept
    assert (tmp_path / "server.log.1").read_text() == "start 11\n"
    assert (tmp_path / "server.log.8").read_text() == "start 4\n"


def test_nothing_to_keep_is_not_an_error(tmp_path: Path) -> None:
    _keep(tmp_path)
    assert list(tmp_path.iterdir()) == []
