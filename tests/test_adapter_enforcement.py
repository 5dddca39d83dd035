"""The enforcement adapter end to end: the bureau's case system and regulators, through the bus."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from adapterkit import BUREAU, case_no, regulators_and_bureau, wait_kind
from buskit import Bus

from adapters import enforcement
from adapters._framework.fake_department import running_adapter
from adapters._framework.outbound import answer_id
from adapters.enforcement.testing import (
    FakeBureau,
    opinion_request,
    penalty_decision,
    penalty_feedback,
)
from adapters.regulators.testing import FakeRegulator, opinion_response
from bus.models import SlaWarning

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PLANNING = "ygh.regulator.planning"
MARKET = "ygh.regulator.market"
ENVIRONMENT = "ygh.regulator.environment"


async def test_the_bureau_asks_for_an_appraisal_and_gets_the_answer(
    bus: Bus, tmp_path: Path
) -> None:
    ajbh, qqbh = case_no(), "阳城执征〔2026〕12号"
    async with (
        FakeRegulator(secret=b"planning") as planning,
        FakeBureau(secret=b"bureau") as bureau,
        regulators_and_bureau(bus, tmp_path, {PLANNING: planning}, bureau=bureau) as (regs, enf),
    ):
        asked = await enf.department(BUREAU).submit(
            opinion_request(ajbh=ajbh, qqbh=qqbh, jsdw=[PLANNING], yjlx="鉴定"),
            idempotency_key="appraisal-12",
        )
        assert asked.status_code == 202, asked.text
        request_id = asked.json()["message_id"]

        [request] = await wait_kind(planning, "意见征询")
        assert request["xxbh"] == request_id and request["yjlx"] == "鉴定"
        assert request["wt"] == ["是否取得规划许可", "是否可以采取改正措施消除影响"]
        assert request["dfqx"]  # the deadline travels in the document

        answered = await regs.department(PLANNING).submit(
            opinion_response(
                ajbh=ajbh, qqbh=qqbh, dfbh="规划答〔2026〕3号", jsdw=[BUREAU], glbh=request_id
            )
        )
        assert answered.status_code == 202, answered.text
        [answer] = await wait_kind(bureau, "意见答复")
        assert answer["qqbh"] == qqbh and answer["glbh"] == request_id
        assert answer["dfbh"] == "规划答〔2026〕3号" and answer["fsdw"] == PLANNING
        # The regulator's system took the request: the bureau is told so (bus.ack).
        [ack] = await wait_kind(bureau, "签收确认")
        assert ack["yxxbh"] == request_id
        # ... and the bureau's own answer acknowledgement went back to the regulator.
        records = await bus.inbox(PLANNING, want=3, timeout_s=20, settle_s=1)
        kinds = [e.kind for e in bus.envelopes(records)]
        assert "bus.ack" in kinds
        ack_ids = {e.message_id for e in bus.envelopes(records) if e.kind == "bus.ack"}
        assert answer_id(BUREAU, "bus.ack", uuid.UUID(answered.json()["message_id"])) in ack_ids


async def test_the_bureau_sends_monthly_penalty_feedback_to_each_regulator_concerned(
    bus: Bus, tmp_path: Path
) -> None:
    concerned = {MARKET: [case_no(), case_no()], ENVIRONMENT: [case_no()]}
    fakes = {agency: FakeRegulator(secret=agency.encode()) for agency in concerned}
    async with (
        fakes[MARKET],
        fakes[ENVIRONMENT],
        regulators_and_bureau(bus, tmp_path, dict(fakes), bureau=None) as (_, enf),
    ):
        month = datetime.now(UTC).strftime("%Y%m")
        for agency, cases in concerned.items():
            decisions = [penalty_decision(c, i) for i, c in enumerate(cases, start=1)]
            r = await enf.department(BUREAU).submit(
                penalty_feedback(
                    ajbh=f"反馈-{month}-{agency}",
                    bgbh=f"阳城执反〔{month}〕{agency}",
                    jsdw=[agency],
                    decisions=decisions,
                )
            )
            assert r.status_code == 202, r.text
        for agency, cases in concerned.items():
            [report] = await wait_kind(fakes[agency], "处罚情况反馈")
            assert [d["ajbh"] for d in report["cfjd"]] == cases
            first = report["cfjd"][0]
            assert first["cflx"] == "罚款" and first["zxzt"] == "执行完毕"
            assert first["qzcs"] == ["扣押"] and first["fmje"] == 500_000
            assert first["dsr"]["zjlx"] == "统一社会信用代码"


async def test_the_bureau_receives_sla_warnings_in_its_own_terms(bus: Bus, tmp_path: Path) -> None:
    ajbh = case_no()
    sla = await bus.party("casebus.sla")
    async with (
        FakeBureau(secret=b"bureau") as bureau,
        bus.router(),
        running_adapter(
            enforcement.build_service,
            bus.settings,
            key_dir=tmp_path / "keys",
            webhooks={BUREAU: bureau},
        ),
    ):
        now = datetime.now(UTC)
        warning = SlaWarning(
            policy_id="opinion.response",
            deadline_id="d-1",
            case_id=ajbh,
            opened_by=uuid.uuid4(),
            due_at=now + timedelta(days=1),
            owner_agency=PLANNING,
            waiting_agency=BUREAU,
            occurred_at=now,
        )
        await bus.submit(sla.envelope(warning, recipients=[BUREAU], case_id=ajbh))
        [doc] = await wait_kind(bureau, "期限预警")
        assert doc["ajbh"] == ajbh and doc["zrdw"] == PLANNING and doc["ddd"] == BUREAU
