"""The README's main job: ``casebus demo --headless`` runs the simulated fortnight end to end
(on this test's own topics and database) and its summary shows every flow and outcome."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bus.sim import Days, SteppedClock
from bus.sim.report import _EXPECTED_KINDS as EXPECTED_KINDS


def test_the_demo_clock_jumps_forward_only() -> None:
    clock = SteppedClock()
    clock.advance(timedelta(days=2))
    assert clock.now() - datetime.now(UTC) > timedelta(days=1, hours=23)
    with pytest.raises(ValueError):
        clock.advance(timedelta(seconds=-1))


async def test_a_day_ends_only_when_the_flows_it_woke_are_idle_again() -> None:
    days = Days()
    log: list[str] = []

    async def flow() -> None:
        log.append("day 0")
        await days.on(1)
        await asyncio.sleep(0.2)  # work on day 1 the loop must wait for
        log.append("day 1 done")
        await days.on(3)
        log.append("day 3")

    task = days.spawn(flow())
    await days.idle(timeout_s=5)
    assert log == ["day 0"]
    days.begin(1)
    await days.idle(timeout_s=5)  # idle even before the flow ran again would be wrong
    assert log == ["day 0", "day 1 done"]
    days.begin(2)
    await days.idle(timeout_s=5)
    assert not task.done()
    days.begin(3)
    await asyncio.wait_for(task, 5)
    assert log[-1] == "day 3"


def _deadlines(out: str) -> dict[tuple[str, str], tuple[int, int, int]]:
    rows = re.findall(
        r"^\s+(\S+)\s+(\S+)\s+met\s+(\d+)\s+breached\s+(\d+)\s+open\s+(\d+)$", out, re.M
    )
    return {(a, p): (int(m), int(b), int(o)) for a, p, m, b, o in rows}


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_demo_runs_a_simulated_fortnight_and_every_expected_outcome_shows(
    provisioned: object, cli_env: dict[str, str], casebus_exe: Path, tmp_path: Path
) -> None:
    env = {
        **cli_env,
        "CASEBUS_BUS_KEY_FILE": str(tmp_path / "bus" / "casebus.key.pem"),
        "CASEBUS_CHECKPOINT_INTERVAL_S": "1",
    }
    proc = subprocess.run(
        [
            *(str(casebus_exe), "demo", "--headless", "--seed", "7"),
            *("--key-dir", str(tmp_path / "k"), "--state-dir", str(tmp_path / "state")),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )
    out = proc.stdout
    assert proc.returncode == 0, (out[-4000:], proc.stderr[-3000:])
    assert "day 14/14" in out

    counts = dict(re.findall(r"^\s+([a-z_]+\.[a-z_]+)\s+(\d+)$", out, re.M))
    for kind in EXPECTED_KINDS:  # every flow the demo runs, as its own summary lists them
        assert int(counts.get(kind, 0)) > 0, (kind, out)

    deadlines = _deadlines(out)
    breached = {key for key, (_, b, _) in deadlines.items() if b}
    assert ("ygh.police.bureau", "criminal.filing_decision") in breached
    assert ("ygh.enforcement.bureau", "criminal.evidence_handover") in breached
    assert ("ygh.enforcement.bureau", "clue.receipt") in breached
    assert any(p == "opinion.response" and a.startswith("ygh.regulator.") for a, p in breached)
    assert sum(m for m, _, _ in deadlines.values()) > 10

    assert re.search(r"audit log size: [1-9]\d* entries", out)
    assert re.search(r"verify_log: OK: \d+ entries and [1-9]\d* checkpoints verified", out)
    _assert_cosigned_by_both_witnesses(out, tmp_path / "k", tmp_path / "state")
    assert re.search(r"audit monitor: [1-9]\d* tree heads checked, 0 alarms", out)
    [planted] = re.findall(r"penalty instead of transfer: (\S+)", out)
    assert planted.startswith("阳城执罚")
    assert "every expected outcome is present" in out


def _assert_cosigned_by_both_witnesses(out: str, key_dir: Path, state_dir: Path) -> None:
    """The printed checkpoint carries a valid cosignature by the procuratorate's and by the
    court's witness, checked here with their keys, and verify_log held the log to both."""
    from bus.audit.checkpoint import parse_signed_checkpoint
    from bus.audit.cosignature import cosigner_vkey, parse_cosigner_key, verify_cosignature
    from bus.cli.witness import load_witness_key

    witnessed = re.search(r"witnessed up to size (\d+) by 2 of 2 witnesses", out)
    assert witnessed, out
    printed = out.split("the latest checkpoint every witness cosigned:\n", 1)[1]
    lines = []
    for line in printed.splitlines():
        if line.strip() and not line.startswith("    "):
            break  # the next section of the summary
        lines.append(line[4:].rstrip())
    note = "\n".join(lines).strip("\n") + "\n"
    checkpoint, _ = parse_signed_checkpoint(note)
    assert checkpoint.size == int(witnessed.group(1))
    for agency in ("ygh.procuratorate", "ygh.court"):
        name = f"{agency}/witness"
        key = load_witness_key(key_dir / "witnesses" / f"{agency}.witness.key.pem", name)
        verify_cosignature(note, parse_cosigner_key(cosigner_vkey(name, key.public_key())))
        assert (state_dir / "witnesses" / f"{agency}.sqlite").is_file()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_make_demo_headless_from_the_repo(
    provisioned: object, cli_env: dict[str, str], tmp_path: Path
) -> None:
    """The README's command itself, on this test's own topics and database."""
    from bus.settings import REPO_ROOT

    env = {
        **cli_env,
        "CASEBUS_BUS_KEY_FILE": str(tmp_path / "bus" / "casebus.key.pem"),
        "CASEBUS_CHECKPOINT_INTERVAL_S": "1",
        # `make demo` runs deploy/local/up: it must find the infra this run started, which sits
        # elsewhere than the defaults when CI is given its own state dir and ports.
        **{
            k: os.environ[k]
            for k in ("CASEBUS_STATE_DIR", "CASEBUS_KAFKA_PORT", "CASEBUS_PG_PORT")
            if k in os.environ
        },
    }
    proc = subprocess.run(
        [
            *("make", "-C", str(REPO_ROOT), "demo"),
            f"ARGS=--headless --seed 3 --key-dir {tmp_path}/k --state-dir {tmp_path}/state",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert proc.returncode == 0, (proc.stdout[-4000:], proc.stderr[-3000:])
    assert "day 14/14" in proc.stdout
    assert re.search(r"verify_log: OK: \d+ entries", proc.stdout)
