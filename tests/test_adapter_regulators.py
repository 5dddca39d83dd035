"""The regulators adapter end to end: regulators' systems and the bureau's, through the bus.

Only the adapters' HTTP APIs and the fake departments' webhooks are driven; a router runs
in-process against the real broker and database.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from adapterkit import BUREAU, case_no, regulators_and_bureau, wait_kind
from buskit import Bus

from adapters.enforcement.testing import FakeBureau, clue_receipt, opinion_request
from adapters.regulators.testing import (
    FakeRegulator,
    clue_handover,
    opinion_delegated,
    opinion_response,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PLANNING = "ygh.regulator.planning"
LAND = "ygh.regulator.land"


async def test_a_regulator_hands_over_a_clue_and_the_bureau_receipts_it(
    bus: Bus, tmp_path: Path
) -> None:
    ajbh, xsbh = case_no(), "规划线索〔2026〕001号"
    async with (
        FakeRegulator(secret=b"planning-secret") as planning,
        FakeBureau(secret=b"bureau-secret") as bureau,
        regulators_and_bureau(bus, tmp_path, {PLANNING: planning, LAND: None}, bureau=bureau) as (
            regs,
            enf,
        ),
    ):
        sent = await regs.department(PLANNING).submit(
            clue_handover(ajbh=ajbh, xsbh=xsbh, jsdw=[BUREAU]), idempotency_key="clue-1"
        )
        assert sent.status_code == 202, sent.text
        clue_id = sent.json()["message_id"]

        [clue] = await wait_kind(bureau, "线索移交")
        assert clue["xxbh"] == clue_id
        assert clue["fsdw"] == PLANNING and clue["ajbh"] == ajbh and clue["xsbh"] == xsbh
        assert clue["dsr"][0]["zjlx"] == "居民身份证"
        record = clue["jgjl"][0]
        [attached] = [a for a in clue["fj"] if a["mc"] == record["fjmc"]]
        assert attached["hash"] == record["fjhash"]

        receipt = await enf.department(BUREAU).submit(
            clue_receipt(ajbh=ajbh, xsbh=xsbh, jsdw=[PLANNING], glbh=clue_id)
        )
        assert receipt.status_code == 202, receipt.text

        [got] = await wait_kind(planning, "线索签收")
        assert got["clyj" if "clyj" in got else "qsjg"] == "接收"
        assert got["glbh"] == clue_id and got["xsbh"] == xsbh
        # The bureau's system accepted the clue: the regulator sees the bus.ack of it.
        [ack] = await wait_kind(planning, "签收确认")
        assert ack["yxxbh"] == clue_id and ack["qsdw"] == BUREAU


async def test_a_regulator_answers_that_it_delegated_to_a_qualified_institution(
    bus: Bus, tmp_path: Path
) -> None:
    ajbh = case_no()
    async with (
        FakeBureau(secret=b"bureau-secret") as bureau,
        regulators_and_bureau(
            bus,
            tmp_path,
            {LAND: None},  # this regulator's system pulls
            bureau=bureau,
        ) as (regs, enf),
    ):
        asked = await enf.department(BUREAU).submit(
            opinion_request(ajbh=ajbh, qqbh="意见征询〔2026〕7号", jsdw=[LAND], yjlx="鉴定")
        )
        assert asked.status_code == 202, asked.text
        request_id = asked.json()["message_id"]

        land = regs.department(LAND)
        items = await land.wait_pull(1)
        [item] = [i for i in items if i["document"]["ywlx"] == "意见征询"]
        assert item["message_id"] == request_id
        assert (
            item["document"]["yjlx"] == "鉴定" and item["document"]["qqbh"] == "意见征询〔2026〕7号"
        )
        assert (await land.ack(request_id)).status_code == 200

        delegated = await land.submit(
            opinion_delegated(ajbh=ajbh, qqbh="意见征询〔2026〕7号", jsdw=[BUREAU], glbh=request_id)
        )
        assert delegated.status_code == 202, delegated.text
        [doc] = await wait_kind(bureau, "委托机构办理")
        assert doc["jgmc"] == "云南省建设工程质量检测中心" and doc["glbh"] == request_id
        [ack] = await wait_kind(bureau, "签收确认")
        assert ack["yxxbh"] == request_id and ack["qsdw"] == LAND


async def test_one_adapter_serves_several_regulators_each_with_its_own_key(
    bus: Bus, tmp_path: Path
) -> None:
    async with (
        FakeBureau(secret=b"bureau-secret") as bureau,
        regulators_and_bureau(bus, tmp_path, {PLANNING: None, LAND: None}, bureau=bureau) as (
            regs,
            _,
        ),
    ):
        for agency in (PLANNING, LAND):
            r = await regs.department(agency).submit(
                opinion_response(
                    ajbh=case_no(),
                    qqbh="q-1",
                    dfbh=f"答复-{agency}",
                    jsdw=[BUREAU],
                    glbh=str(uuid.uuid4()),  # a request sent before this test
                )
            )
            assert r.status_code == 202, r.text
        docs = await wait_kind(bureau, "意见答复", count=2)
        assert sorted(d["fsdw"] for d in docs) == sorted([PLANNING, LAND])
