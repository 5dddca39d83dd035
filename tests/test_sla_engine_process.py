"""The SLA engine as an operator runs it (``casebus sla run|status``): a crash between a breach
being due and being emitted, the status table, a missing key, and the alert rules."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import asyncpg
import pytest
from buskit import Bus
from slakit import (
    BUREAU,
    POLICE,
    PROC,
    RATE,
    START,
    FixedClock,
    Inboxes,
    day,
    make_engine,
    outbox,
    send,
    store,
)

from bus.party import make_party
from bus.settings import Settings
from bus.sla.clock import AcceleratedClock
from bus.sla.deadline import deadline_id

# --- a crash between "due" and "emitted" --------------------------------------------------------


def _engine_env(bus: Bus, *, start: datetime, failpoints: str = "") -> dict[str, str]:
    # As the owner, not the engine's own role: it registers the test's engine key at start.
    child = {"clock": f"accelerated:{start.isoformat()}:{RATE:g}", "sla_database_url": None}
    env = bus.settings.model_copy(update=child).to_env(os.environ)
    return env | {"CASEBUS_FAILPOINTS": failpoints}


def _engine_process(
    bus: Bus, casebus_exe: Path, sla_key: Path, env: dict[str, str], log: Path
) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [str(casebus_exe), "sla", "run", "--key-file", str(sla_key)],
            env=env,
            stdout=out,
            stderr=out,
        )


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
            p.wait(10)


@pytest.mark.parametrize("point", ["sla.breach.before_commit", "sla.breach.after_commit"])
async def test_a_crash_around_the_breach_emits_it_exactly_once_after_restart(
    bus: Bus,
    sla_key: Path,
    casebus_exe: Path,
    tmp_path: Path,
    processes: list[subprocess.Popen[bytes]],
    point: str,
) -> None:
    bureau = await bus.party(BUREAU)
    clock = AcceleratedClock(START, RATE)  # the test's idea of simulated time
    policy = "criminal.receipt"
    log = tmp_path / "engine.log"
    transfer = send(bureau, "criminal.transfer", random.Random(13), clock)
    async with Inboxes(bus, [BUREAU, POLICE, PROC]) as inboxes, bus.router():
        first = _engine_process(
            bus, casebus_exe, sla_key, _engine_env(bus, start=START, failpoints=f"{point}:1"), log
        )
        processes.append(first)
        await bus.submit(transfer)
        # The receipt is due at the end of 3 March; the engine dies at its breach.
        loop = asyncio.get_running_loop()
        until = loop.time() + 45
        while first.poll() is None:
            assert loop.time() < until, log.read_text()
            await asyncio.sleep(0.1)
        assert first.returncode == -signal.SIGKILL, log.read_text()
        pool = await asyncpg.create_pool(bus.settings.database_url, min_size=1, max_size=2)
        try:
            row = await store.get(pool, deadline_id(policy, transfer.message_id))
            assert row is not None
            emitted = len(await outbox(pool, "sla.breach"))
            if point.endswith("before_commit"):
                assert (row.state, emitted) == ("open", 0)  # rolled back with the crash
            else:
                assert (row.state, emitted) == ("breached", 1)  # committed, not yet published
            restart_at = max(clock.now(), day(4, 0, 0, 0))
            second = _engine_process(
                bus, casebus_exe, sla_key, _engine_env(bus, start=restart_at), log
            )
            processes.append(second)
            await inboxes.until(
                lambda: all(inboxes.sla(a, "sla.breach", policy) for a in (BUREAU, POLICE, PROC)),
                timeout_s=45,
            )
            await asyncio.sleep(2.0)  # time for a second copy to show up, if there were one
            second.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(second.wait, 20) == 0, log.read_text()
            row = await store.get(pool, deadline_id(policy, transfer.message_id))
            breaches = await outbox(pool, "sla.breach")
        finally:
            await pool.close()
    assert row is not None and row.state == "breached"
    [breach] = breaches
    for agency in (BUREAU, POLICE, PROC):
        delivered = inboxes.sla(agency, "sla.breach", policy)
        assert [e.message_id for e in delivered] == [breach.message_id], inboxes.summary()


async def test_status_lists_open_and_breached_deadlines_with_time_left(
    settings: Settings, sla_key: Path, pool: asyncpg.Pool, casebus_exe: Path, tmp_path: Path
) -> None:
    bureau = make_party(BUREAU, tmp_path / "keys")
    clock = FixedClock(START)
    engine = make_engine(settings, sla_key, clock)
    transfer = send(bureau, "criminal.transfer", random.Random(14), clock)
    async with pool.acquire() as conn, conn.transaction():
        await engine.apply(conn, transfer)
    clock = f"accelerated:{day(2, 12, 0, 0).isoformat()}:1"
    env = settings.model_copy(update={"clock": clock}).to_env(os.environ)
    done = subprocess.run(
        [casebus_exe, "sla", "status", "--agency", POLICE], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    header, row = done.stdout.splitlines()
    assert header.split()[:3] == ["DEADLINE", "POLICY", "CASE"]
    assert "criminal.receipt" in row and "open" in row and "2026-03-03 23:59" in row
    assert row.endswith("1d 11h")
    env["CASEBUS_CLOCK"] = f"accelerated:{day(4, 12, 0, 0).isoformat()}:1"
    overdue = subprocess.run(
        [casebus_exe, "sla", "status"], env=env, capture_output=True, text=True
    )
    assert "overdue 0d" not in overdue.stdout and "overdue 12h 00m" in overdue.stdout
    breached = subprocess.run(
        [casebus_exe, "sla", "status", "--breached"], env=env, capture_output=True, text=True
    )
    assert breached.stdout.splitlines()[1:] == []  # the scheduler has not run: still open


# --- running it, and watching it ---------------------------------------------------------------


def test_run_refuses_a_missing_key_file_naming_the_command_that_makes_one(
    casebus_exe: Path, cli_env: dict[str, str], tmp_path: Path
) -> None:
    missing = tmp_path / "keys" / "casebus.sla.key.pem"
    done = subprocess.run(
        [casebus_exe, "sla", "run", "--key-file", str(missing)],
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "casebus keys generate --agency casebus.sla" in done.stderr


def test_alert_rules_are_prometheus_rule_groups_on_metrics_the_engine_exports() -> None:
    import re

    import yaml
    from prometheus_client.metrics import MetricWrapperBase

    from bus.settings import REPO_ROOT
    from bus.sla import metrics

    rules = yaml.safe_load(
        (REPO_ROOT / "deploy" / "prometheus" / "sla-rules.yaml").read_text(encoding="utf-8")
    )
    exported = {
        m.describe()[0].name for m in vars(metrics).values() if isinstance(m, MetricWrapperBase)
    }
    [group] = rules["groups"]
    assert group["name"] and group["rules"]
    for rule in group["rules"]:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
        assert rule["alert"].startswith("CasebusSla") and rule["expr"], rule
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule
        assert rule["annotations"]["summary"], rule
        for name in re.findall(r"casebus_sla_[a-z_]+", rule["expr"]):
            base = re.sub(r"_(total|bucket|count|sum)$", "", name)
            assert base in exported, (rule["alert"], name)
