"""The demo's fortnight on one clock: the adapters stamp ``sent_at`` on the simulated clock the
SLA engine counts on, so no deadline closes before it opened, the closing times spread over the
simulated days, and the console and ``casebus trace`` show those days, not today's.

Runs the part of the demo's plan where the two clocks used to part (steps opened and closed on
a simulated day after the first) through the real router, SLA engine, adapters, Kafka and
PostgreSQL.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from rich.console import Console

from adapters._framework.auth import create_token
from bus.audit.events import decode_leaf
from bus.console import create_app
from bus.demo import run_days
from bus.settings import Settings
from bus.sim import Fortnight, SteppedClock, running_world
from bus.sim.world import PROCURATORATE
from bus.sla.calendar import SHANGHAI
from bus.trace import case_trace, render_trace

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(240)]

DAYS = 8
ENGINE_LAG = timedelta(seconds=30)
"""Two clocks put a day or more between these instants; one clock, at most the engine's lag.
The SLA engine opens a deadline at its opening message's ``sent_at`` (never later than now), so
a deadline one message opens and closes (criminal.transfer_after_approval) closes exactly when it
opens; before that, ``opened_at`` was when the engine read the message, a second after the close."""


def _day(at: datetime) -> date:
    return at.astimezone(SHANGHAI).date()


async def test_the_fortnight_opens_and_closes_its_deadlines_on_its_own_days(
    provisioned: Settings, tmp_path: Path
) -> None:
    settings = provisioned.model_copy(
        update={"bus_key_file": tmp_path / "bus" / "casebus.key.pem", "checkpoint_interval_s": 1.0}
    )
    since = datetime.now(UTC)
    clock = SteppedClock()
    first_day = _day(clock.now())
    async with running_world(settings, key_dir=tmp_path / "k", clock=clock) as world:
        sim = Fortnight(world, seed=14, days=DAYS)
        flows: list[Awaitable[None]] = [
            sim.transfer_filed(0, evidence=True),
            sim.transfer_forwarded(1),
            sim.clue("ygh.regulator.planning", 2, signed=True, accept=True),
            sim.opinion("ygh.regulator.water", 3, answer_on=6, due_in_days=5, delegate_on=4),
            sim.court_execution(1, accept_on=3, rule_on=6),
            sim.urgent_opinion_answered_late("ygh.regulator.market", answer_on=2),
        ]
        await run_days(sim, flows, console=Console(quiet=True), since=since)
        last_day = _day(clock.now())
        assert (last_day - first_day).days == DAYS - 1

        rows = await world.pool.fetch(
            "SELECT policy_id, case_id, opened_by, opened_kind, opened_at, closed_at"
            " FROM sla_deadlines WHERE created_at >= $1 AND opened_kind <> 'schedule'",
            since,
        )
        cases = {r["case_id"] for r in rows}
        traces = {case: await case_trace(world.pool, case) for case in cases}
        sent = {
            m.message_id: m.sent_at
            for t in traces.values()
            for m in t.messages
            if m.sent_at is not None
        }
        closed = [r for r in rows if r["closed_at"] is not None]
        assert len(closed) >= 10, rows
        for r in rows:
            what = (r["policy_id"], r["case_id"], r["opened_at"], r["closed_at"])
            opening_sent = sent[str(r["opened_by"])]
            # The engine opened it on the clock the adapter stamped the opening message with.
            assert abs(r["opened_at"] - opening_sent) < ENGINE_LAG, (what, opening_sent)
            assert r["opened_at"] <= opening_sent, (what, opening_sent)
            if r["closed_at"] is not None:
                assert r["closed_at"] >= opening_sent, (what, opening_sent)
                # Never closed before it opened, not even by the engine's read lag.
                assert r["closed_at"] >= r["opened_at"], what
                assert first_day <= _day(r["closed_at"]) <= last_day, what

        # The closing times spread over the simulated days, as the flows took their steps.
        closing_days = sorted({_day(r["closed_at"]) for r in closed})
        assert len(closing_days) >= 5, closing_days
        assert (closing_days[-1] - closing_days[0]).days >= DAYS - 3, closing_days
        # The late answer to the urgent request was sent on day 2: a breach turned late close.
        urgent = sim.expected.flows["opinion answered late"]
        [late] = [r for r in closed if r["case_id"] == urgent]
        assert _day(late["closed_at"]) == first_day + timedelta(days=2)

        # `casebus trace` shows the case on its simulated days.
        court = traces[sim.expected.flows["court execution"]]
        shown = set(re.findall(r"\d{4}-\d{2}-\d{2}", render_trace(court)))
        assert {str(first_day + timedelta(days=d)) for d in (1, 3, 6)} <= shown, shown

        # So does the procuratorate's timeline, and the audit log's record of that query.
        dept = world.proc.department(PROCURATORATE)
        case = sim.expected.flows["transfer: wrong bureau, forwarded"]
        r = await dept.client.get(
            f"/v1/cases/{quote(case, safe='')}/timeline", headers=dept.headers
        )
        assert r.status_code == 200, r.text
        steps = {str(_day(datetime.fromisoformat(step["sent_at"]))) for step in r.json()["steps"]}
        assert {str(first_day + timedelta(days=d)) for d in (1, 2, 3)} <= steps, steps
        query = decode_leaf(
            await world.pool.fetchval(
                "SELECT leaf FROM audit_entries WHERE idx = $1",
                int(r.headers["X-Casebus-Query-Audit-Index"]),
            )
        )
        assert _day(datetime.fromisoformat(query["at"])) == last_day, query

        # So does the console: its "closed" column lists the simulated days, not today alone.
        app = create_app(settings, pool=world.pool, clock=world.clock, dead_letter_cache_s=0)
        token = await create_token(world.pool, PROCURATORATE)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://console",
            headers={"Authorization": f"Bearer {token}"},
        ) as client:
            html = (await client.get("/", params={"status": "met"})).text
        body = html.split('<table class="deadlines">', 1)[1].split("</table>", 1)[0]
        closed_column = {
            cells[-1][:10]
            for cells in (re.findall(r"<td>(.*?)</td>", row) for row in body.split("<tr>")[2:])
        }
        assert len(closed_column) >= 4, closed_column
        assert str(last_day) in re.search(r"\d{4}-\d{2}-\d{2}", html.split("<h1", 1)[1]).group(0)  # type: ignore[union-attr]
