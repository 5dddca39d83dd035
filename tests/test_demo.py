"""The README's main job runs end to end (on this test's own topics and database)."""

from __future__ import annotations

import subprocess
from pathlib import Path


async def test_demo_runs_the_clue_handover_through_the_bus_and_proves_it(
    provisioned: object, cli_env: dict[str, str], casebus_exe: Path, tmp_path: Path
) -> None:
    env = {
        **cli_env,
        "CASEBUS_BUS_KEY_FILE": str(tmp_path / "bus" / "casebus.key.pem"),
        "CASEBUS_CHECKPOINT_INTERVAL_S": "1",
    }
    proc = subprocess.run(
        [str(casebus_exe), "demo", "--headless", "--key-dir", str(tmp_path / "keys")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    for step in ("1. ", "2. ", "3. ", "4. ", "5. procuratorate: OK:"):
        assert any(line.startswith(step) for line in lines), (step, proc.stdout)
    assert "signed checkpoint verified" in proc.stdout
