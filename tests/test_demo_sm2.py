"""``casebus demo --headless --profile sm2`` (what ``make demo ARGS="--profile sm2"`` runs): the
whole fortnight with SM2 keys for every agency and the SLA engine. The demo's summary counts the
signatures the router verified by algorithm, from the audit log, and calls any other algorithm
than the profile's a missing outcome; this test reads that summary and the keys on disk."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from bus.signing import SM2_SM3, load_signer


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_demo_runs_its_fortnight_under_the_sm2_profile(
    provisioned: object, cli_env: dict[str, str], casebus_exe: Path, tmp_path: Path
) -> None:
    env = {
        **cli_env,
        "CASEBUS_CRYPTO_PROFILE": "ed25519",  # the option, not the environment, chooses here
        "CASEBUS_BUS_KEY_FILE": str(tmp_path / "bus" / "casebus.key.pem"),
        "CASEBUS_CHECKPOINT_INTERVAL_S": "1",
    }
    keys = tmp_path / "k"
    proc = subprocess.run(
        [
            *(str(casebus_exe), "demo", "--headless", "--profile", "sm2", "--seed", "11"),
            *("--key-dir", str(keys), "--state-dir", str(tmp_path / "state")),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )
    out = proc.stdout
    assert proc.returncode == 0, (out[-4000:], proc.stderr[-3000:])
    assert "crypto profile sm2" in out
    section = out.split("== signatures the router verified (crypto profile sm2)\n", 1)[1]
    section = section.split("==", 1)[0]
    counts = dict(re.findall(r"^\s+(\S+)\s+(\d+)$", section, re.M))
    assert set(counts) == {SM2_SM3}, section
    assert int(counts[SM2_SM3]) > 50, section
    assert re.search(r"verify_log: OK: \d+ entries", out)
    assert "every expected outcome is present" in out

    # Every agency key and the SLA engine's, as written for the run, is an SM2 key.
    written = sorted(keys.glob("*/*.key.pem"))
    agencies = {p.parent.name for p in written}
    assert {"ygh.enforcement.bureau", "ygh.police.bureau", "ygh.court", "casebus.sla"} <= agencies
    for path in written:
        if path.parent.name == "witnesses":
            continue  # C2SP cosignatures are Ed25519 by definition
        agency = path.name.removesuffix(".key.pem")
        assert load_signer(path, agency_id=agency).algorithm == SM2_SM3, path


def test_an_unknown_profile_is_refused_naming_the_known_ones(casebus_exe: Path) -> None:
    proc = subprocess.run(
        [str(casebus_exe), "demo", "--headless", "--profile", "sm3"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "ed25519, sm2" in proc.stderr
