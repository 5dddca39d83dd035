"""The procuratorate adapter: the 以罚代刑 screening, statistics, the audited queries and proofs."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from adapterkit import BUREAU, wait_kind
from buskit import Bus
from test_criminal_chain import transfer

from adapters import enforcement, police
from adapters._framework.fake_department import running_adapter
from adapters.enforcement.testing import FakeBureau, penalty_decision, penalty_feedback
from adapters.police.testing import FakePolice
from adapters.procuratorate.store import record_event
from adapters.procuratorate.testing import running_procuratorate
from bus.agencies import load_registry
from bus.agency_db import sync_agencies
from bus.sla.calendar import SHANGHAI

pytestmark = [pytest.mark.integration, pytest.mark.slow]

POLICE = "ygh.police.bureau"
PROCURATORATE = "ygh.procuratorate"
MARKET = "ygh.regulator.market"


def _feedback_payload(case_id: str, n: int, *, suspected: bool) -> dict[str, Any]:
    """A penalty.feedback payload in the bus's names (as the store keeps it)."""
    return {
        "report_no": f"阳城执反〔2026〕{n:04d}",
        "period_start": "2026-11-01",
        "period_end": "2026-11-27",
        "decisions": [
            {
                "case_id": case_id,
                "decision_no": f"阳城执罚决字〔2026〕{n:04d}号",
                "decided_on": "2026-11-20",
                "penalty_type": "FINE",
                "amount_fen": 500_000,
                "suspected_crime": suspected,
            }
        ],
    }


async def test_penalty_feedback_reaches_the_procuratorate_and_a_flagged_penalty_is_screened(
    bus: Bus, tmp_path: Path
) -> None:
    """The bureau reports a penalty on a case it flagged as a suspected crime, to the market
    regulator only; the procuratorate gets its copy through the bus and screens it."""
    keys = tmp_path / "keys"
    async with (
        FakeBureau(secret=b"bureau") as bureau,
        bus.router(),
        running_adapter(
            enforcement.build_service,
            bus.settings,
            key_dir=keys,
            webhooks={BUREAU: bureau},
        ) as enf,
        running_procuratorate(bus.settings, key_dir=keys, webhooks={PROCURATORATE: None}) as proc,
    ):
        ajbh = f"阳城执〔2026〕以罚代刑{uuid.uuid4().hex[:6]}号"
        decision = penalty_decision(ajbh, 1)
        decision["sxfz"] = True
        doc = penalty_feedback(
            ajbh=ajbh, bgbh="阳城执反〔2026〕1", jsdw=[MARKET], decisions=[decision]
        )
        r = await enf.department(BUREAU).submit(doc)
        assert r.status_code == 202, r.text
        pool = proc.service.pool
        for _ in range(150):
            kept = await pool.fetchval(
                "SELECT count(*) FROM procuratorate_events WHERE kind = 'penalty.feedback'"
            )
            if kept:
                break
            await asyncio.sleep(0.2)
        assert kept == 1
        dept = proc.department(PROCURATORATE)
        r = await dept.client.get("/v1/screening/penalty-instead-of-transfer", headers=dept.headers)
        assert r.status_code == 200, r.text
        assert [f["case_id"] for f in r.json()["penalty_instead_of_transfer"]] == [ajbh]


async def test_screening_finds_the_planted_case_and_not_the_transferred_one(
    bus: Bus, tmp_path: Path
) -> None:
    planted = f"阳城执〔2026〕以罚代刑{uuid.uuid4().hex[:4]}号"
    transferred = f"阳城执〔2026〕已移送{uuid.uuid4().hex[:4]}号"
    keys = tmp_path / "keys"
    async with (
        FakePolice(secret=b"police") as pol_fake,
        bus.router(),
        running_adapter(
            enforcement.build_service, bus.settings, key_dir=keys, webhooks={BUREAU: None}
        ) as enf,
        running_adapter(
            police.build_service, bus.settings, key_dir=keys, webhooks={POLICE: pol_fake}
        ),
        running_procuratorate(bus.settings, key_dir=keys, webhooks={PROCURATORATE: None}) as proc,
    ):
        # The transferred case goes through the bus; the procuratorate keeps its copy.
        doc = transfer(ajbh=transferred, ysshh="阳城执移〔2026〕0099号", jsdw=[POLICE])
        r = await enf.department(BUREAU).submit(doc)
        assert r.status_code == 202, r.text
        await wait_kind(pol_fake, "涉嫌犯罪案件移送")
        pool = proc.service.pool
        for _ in range(100):
            kept = await pool.fetchval(
                "SELECT count(*) FROM procuratorate_events WHERE case_id = $1", transferred
            )
            if kept:
                break
            await asyncio.sleep(0.2)
        assert kept == 1

        # An obstructed transfer reported to the procuratorate shows among the signals.
        report = {
            "ywlx": "移送受阻报告",
            "ajbh": transferred,
            "jsdw": [PROCURATORATE],
            "bgbh": "阳城执报〔2026〕1号",
            "ysshh": "阳城执移〔2026〕0099号",
            "szlx": "不出具回执",
            "zadw": POLICE,
            "qkms": "移送后三日未签收回执",
            "szsj": datetime.now(UTC).isoformat(),
            "bgsj": datetime.now(UTC).isoformat(),
        }
        r = await enf.department(BUREAU).submit(report)
        assert r.status_code == 202, r.text
        for _ in range(100):
            kept = await pool.fetchval(
                "SELECT count(*) FROM procuratorate_events WHERE case_id = $1", transferred
            )
            if kept == 2:
                break
            await asyncio.sleep(0.2)
        assert kept == 2

        # 200 ordinary reports (and the two flagged ones) go straight into the store, as its
        # reader would write them: sending 200 through the bus only makes this test slow. The
        # test above shows the same path through the bus.
        now = datetime.now(UTC)
        rows = [(f"阳城执〔2026〕普通{n:04d}号", n, False) for n in range(200)]
        rows += [(planted, 900, True), (transferred, 901, True)]
        for case_id, n, suspected in rows:
            await record_event(
                pool,
                PROCURATORATE,
                message_id=uuid.uuid4(),
                kind="penalty.feedback",
                case_id=f"反馈-{n}",
                sender=BUREAU,
                recipients=[MARKET],
                sent_at=now,
                payload=_feedback_payload(case_id, n, suspected=suspected),
            )

        dept = proc.department(PROCURATORATE)
        r = await dept.client.get("/v1/screening/penalty-instead-of-transfer", headers=dept.headers)
        assert r.status_code == 200, r.text
        found = r.json()["penalty_instead_of_transfer"]
        assert [f["case_id"] for f in found] == [planted]
        assert found[0]["sender"] == BUREAU and found[0]["decision_no"].endswith("0900号")
        assert r.headers["X-Casebus-Query-Audit-Index"].isdigit()
        [obstructed] = r.json()["obstruction_reports"]
        assert obstructed["obstruction_type"] == "NO_RECEIPT"
        assert obstructed["obstructing_agency_id"] == POLICE

        today = datetime.now(SHANGHAI).date()  # statistics count months in Asia/Shanghai
        r = await dept.client.get(
            "/v1/statistics",
            params={"from": (today - timedelta(days=1)).isoformat(), "to": today.isoformat()},
            headers=dept.headers,
        )
        assert r.status_code == 200, r.text
        [row] = [x for x in r.json()["rows"] if x["agency"] == BUREAU]
        assert row["transfers"] == 1 and row["refusals"] == 0

        # Unauthenticated: refused, but still on the record.
        r = await dept.client.get("/v1/screening/penalty-instead-of-transfer")
        assert r.status_code == 401

        # The proofs are mounted, and every query above is in the audit log.
        for _ in range(50):  # the router signs a checkpoint every half second
            r = await dept.client.get("/v1/audit/checkpoints/latest", headers=dept.headers)
            if r.status_code == 200:
                break
            await asyncio.sleep(0.2)
        assert r.status_code == 200, r.text
        leaves = await _query_leaves(pool)
        seen = [(q["agency"], q["path"]) for q in leaves]
        assert list(dict.fromkeys(seen)) == [
            (PROCURATORATE, "/v1/screening/penalty-instead-of-transfer"),
            (PROCURATORATE, "/v1/statistics"),
            ("anonymous", "/v1/screening/penalty-instead-of-transfer"),
            (PROCURATORATE, "/v1/audit/checkpoints/latest"),
        ]
        assert leaves[1]["params"]["to"] == today.isoformat()


async def _query_leaves(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        "SELECT leaf FROM audit_entries WHERE event_kind = 'query' ORDER BY idx"
    )
    return [json.loads(bytes(r["leaf"])) for r in rows]


async def test_statistics_over_the_whole_calendar_answer_rather_than_fail(
    provisioned: Any, tmp_path: Path
) -> None:
    conn = await asyncpg.connect(provisioned.database_url)
    try:
        await sync_agencies(conn, load_registry(provisioned.agencies_file))
    finally:
        await conn.close()
    async with running_procuratorate(
        provisioned, key_dir=tmp_path / "keys", webhooks={PROCURATORATE: None}
    ) as proc:
        dept = proc.department(PROCURATORATE)
        for start, end in (("0001-01-01", "9999-12-31"), ("9999-12-31", "9999-12-31")):
            r = await proc.client.get(
                "/v1/statistics", params={"from": start, "to": end}, headers=dept.headers
            )
            assert r.status_code == 200, r.text
            assert r.json()["rows"] == []
