"""The router process is wired from Settings: its routing policy is CASEBUS_ROUTING_POLICY_FILE."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from bus.settings import REPO_ROOT, Settings


@pytest.mark.timeout(120)
def test_the_router_reads_the_routing_policy_file_setting(
    settings: Settings, casebus_exe: Path, tmp_path: Path
) -> None:
    missing = tmp_path / "routing.yaml"
    elsewhere = settings.model_copy(update={"routing_policy_file": missing})
    done = subprocess.run(
        [str(casebus_exe), "router"],
        env=elsewhere.to_env(os.environ),
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 1, done.stderr[-2000:]
    assert f"{missing}: cannot read routing policy" in done.stderr
    assert settings.routing_policy_file == REPO_ROOT / "deploy" / "routing.yaml"
