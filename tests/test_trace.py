"""``casebus trace``: a case's timeline from the audit log and its deadlines, on a small real
scenario (two criminal transfers through the adapters, one the police never decide)."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from rich.console import Console

from bus.demo import run_days
from bus.settings import Settings
from bus.sim import Fortnight, SteppedClock, running_world
from bus.trace import case_trace

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BUREAU = "ygh.enforcement.bureau"
POLICE = "ygh.police.bureau"


async def test_trace_lists_every_step_with_recipients_and_each_deadline_outcome(
    provisioned: Settings, cli_env: dict[str, str], casebus_exe: Path, tmp_path: Path
) -> None:
    bus_key = tmp_path / "bus" / "casebus.key.pem"
    settings = provisioned.model_copy(
        update={"bus_key_file": bus_key, "checkpoint_interval_s": 1.0}
    )
    since = datetime.now(UTC)
    async with running_world(settings, key_dir=tmp_path / "k", clock=SteppedClock()) as world:
        sim = Fortnight(world, seed=3, days=6)
        flows = [sim.transfer_filed(0, evidence=True), sim.transfer_never_decided(0, report_on=5)]
        await run_days(sim, flows, console=Console(quiet=True), since=since)
        filed = sim.expected.flows["transfer: filed and evidence"]
        silent = sim.expected.flows["transfer: never decided"]

        trace = await case_trace(world.pool, filed)
        kinds = [m.kind for m in trace.messages]
        assert [k for k in kinds if k.startswith("criminal.")] == [
            "criminal.transfer",
            "criminal.receipt",
            "criminal.filing_decision",
            "criminal.evidence_handover",
        ], kinds
        # The SLA engine's receipts (sla.met) and the departments' bus.ack are steps too.
        assert "sla.met" in kinds and "bus.ack" in kinds
        assert all(m.event == "accepted" for m in trace.messages)
        indexes = [m.audit_index for m in trace.messages]
        assert indexes == sorted(indexes)
        first = trace.messages[0]
        assert first.sender == BUREAU
        # Named recipient first, then the routing policy's copies.
        assert first.recipients[0] == POLICE and "ygh.procuratorate" in first.recipients
        outcomes = {d.policy_id: d.state for d in trace.deadlines}
        assert outcomes["criminal.receipt"] == "met"
        assert outcomes["criminal.filing_decision"] == "met"
        assert outcomes["criminal.evidence_handover"] == "met"

        silent_trace = await case_trace(world.pool, silent)
        assert {d.policy_id: d.state for d in silent_trace.deadlines}[
            "criminal.filing_decision"
        ] == "breached"
        assert "sla.breach" in [m.kind for m in silent_trace.messages]
        assert "obstruction.report" in [m.kind for m in silent_trace.messages]

    env = {**cli_env, "CASEBUS_BUS_KEY_FILE": str(bus_key)}
    proc = subprocess.run(
        [str(casebus_exe), "trace", silent], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert out.startswith(f"case {silent}: ")
    assert "criminal.transfer" in out and f"{BUREAU} → {POLICE}" in out
    assert "sla.breach" in out and "obstruction.report" in out
    line = next(x for x in out.splitlines() if x.strip().startswith("criminal.filing_decision"))
    assert f"{POLICE} owes {BUREAU}" in line and "BREACHED" in line

    unknown = subprocess.run(
        [str(casebus_exe), "trace", "阳城执〔2026〕不存在号"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert unknown.returncode == 1 and "nothing in the audit log" in unknown.stderr
