"""``casebus sla status``: open and breached deadlines by default, the history with ``--met`` and
``--all``, limited to a range of due dates with ``--since`` / ``--until``."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import datetime, timedelta

import asyncpg
import pytest
from typer.testing import CliRunner

from bus.cli.sla import app as sla_app
from bus.settings import Settings
from bus.sla.calendar import SHANGHAI
from bus.sla.deadline import Deadline
from bus.sla.store import DeadlineStore

pytestmark = pytest.mark.integration

POLICE = "ygh.police.bureau"
BUREAU = "ygh.enforcement.bureau"


def at(day: int, hour: int = 12) -> datetime:
    return datetime(2026, 11, day, hour, tzinfo=SHANGHAI)


def deadline(case: str, due: datetime, **changes: object) -> Deadline:
    opened = uuid.uuid4()
    base = Deadline(
        id=uuid.uuid4(),
        policy_id="criminal.receipt",
        case_id=case,
        correlation_id=str(opened),
        opened_by=opened,
        opened_kind="criminal.transfer",
        opened_at=due - timedelta(days=1),
        start_at=due - timedelta(days=1),
        due_at=due,
        owner_agency=POLICE,
        waiting_agency=BUREAU,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def closed(when: datetime) -> dict[str, object]:
    return {"closed_at": when, "closed_by": uuid.uuid4(), "closed_kind": "criminal.receipt"}


@pytest.fixture
async def history(pool: asyncpg.Pool) -> None:
    rows = [
        deadline("OPEN-1", at(20)),
        deadline("BREACHED-1", at(3), state="breached", breach_emitted_at=at(3)),
        deadline("MET-EARLY", at(5), state="met", **closed(at(5, 9))),
        deadline("MET-LATER", at(12), state="met", **closed(at(11))),
        deadline("LATE-1", at(6), state="breached", breach_emitted_at=at(7), **closed(at(7))),
    ]
    async with pool.acquire() as conn:
        await DeadlineStore().insert_many(conn, rows)


def status(settings: Settings, *args: str) -> tuple[int, list[str], str]:
    env = {"CASEBUS_DATABASE_URL": settings.database_url, "CASEBUS_CLOCK": "real"}
    result = CliRunner().invoke(sla_app, ["status", *args], env=env)
    cases = [line.split()[2] for line in result.stdout.splitlines()[1:]]
    return result.exit_code, cases, result.output


def test_status_shows_unclosed_by_default_and_the_history_on_request(
    settings: Settings, history: None
) -> None:
    code, cases, _ = status(settings)
    assert code == 0 and cases == ["BREACHED-1", "OPEN-1"]
    code, cases, out = status(settings, "--met")
    assert code == 0 and cases == ["MET-EARLY", "MET-LATER"]
    assert "closed 2026-11-05 09:00, 3h 00m early" in out
    code, cases, out = status(settings, "--all")
    assert cases == ["BREACHED-1", "MET-EARLY", "LATE-1", "MET-LATER", "OPEN-1"]
    assert "closed 2026-11-07 12:00, 1d 00h late" in out


def test_a_date_range_limits_by_due_date_in_shanghai(settings: Settings, history: None) -> None:
    code, cases, _ = status(settings, "--all", "--since", "2026-11-05", "--until", "2026-11-12")
    assert code == 0 and cases == ["MET-EARLY", "LATE-1", "MET-LATER"]
    code, cases, _ = status(settings, "--met", "--until", "2026-11-05")
    assert cases == ["MET-EARLY"]  # --until includes its whole day
    code, cases, _ = status(settings, "--all", "--since", "2026-11-12T12:00:01+08:00")
    assert cases == ["OPEN-1"]


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--met", "--all"], "--met and --all exclude each other"),
        (["--since", "11/05/2026"], "--since '11/05/2026' is neither a date"),
        (["--until", "2026-11-05T08:00:00"], "--until '2026-11-05T08:00:00' has no UTC offset"),
        (["--since", "2026-11-06", "--until", "2026-11-05"], "is not before --until"),
    ],
)
def test_bad_history_options_are_refused_naming_the_option(
    settings: Settings, args: list[str], said: str
) -> None:
    code, _, out = status(settings, *args)
    assert code == 2 and said in out, out
