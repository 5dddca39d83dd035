"""The police adapter: its vocabulary, and what it refuses before anything reaches the bus."""

from __future__ import annotations

import random
import uuid
from pathlib import Path
from typing import Any

import pytest
from buskit import Bus

from adapters import police
from adapters._framework.fake_department import running_adapter
from adapters.police.testing import filing_decision, jurisdiction_forward
from bus.samples import sample_payload
from bus.settings import Settings

POLICE = "ygh.police.bureau"
BUREAU = "ygh.enforcement.bureau"


@pytest.mark.parametrize("kind", sorted({*police.SENDS, *police.RECEIVES}))
def test_every_kind_round_trips_through_the_police_vocabulary(kind: str) -> None:
    payload = sample_payload(kind, random.Random(kind)).model_dump(mode="json")
    head = {"kind": kind, "case_id": "阳城执〔2026〕1号", "sender": BUREAU, "recipients": [POLICE]}
    doc = police.VOCABULARY.document(head, payload)
    assert doc["ywlx"] == police.VOCABULARY.code(kind) != kind
    envelope, back, problems = police.VOCABULARY.split_submission(kind, doc)
    assert problems == []
    assert back == payload
    assert envelope == {"case_id": head["case_id"], "sender": BUREAU, "recipients": [POLICE]}


def test_a_transfer_reaches_the_police_with_its_manifest_in_police_terms() -> None:
    payload = sample_payload("criminal.transfer", random.Random(3)).model_dump(mode="json")
    doc = police.VOCABULARY.document({"kind": "criminal.transfer"}, payload)
    assert doc["ywlx"] == "涉嫌犯罪案件移送"
    assert {d["wslx"] for d in doc["yscl"]} >= {"移送书"}
    assert doc["dsr"][0]["js"] in {"犯罪嫌疑人", "涉嫌犯罪单位", "直接负责的主管人员", "法定代表人"}


@pytest.mark.integration
async def test_the_police_adapter_refuses_what_the_police_may_not_send(
    provisioned: Settings, tmp_path: Path
) -> None:
    bus = Bus(provisioned, tmp_path)
    await bus.setup()  # registers the agencies
    await bus.close()
    async with running_adapter(
        police.build_service, provisioned, key_dir=tmp_path / "keys", webhooks={POLICE: None}
    ) as pol:
        dept = pol.department(POLICE)
        r = await dept.submit({"ywlx": "涉嫌犯罪案件移送", "ajbh": "x", "jsdw": [BUREAU]})
        assert r.status_code == 422
        [problem] = r.json()["problems"]
        assert problem["rule"] == "unknown_kind" and "立案决定" in problem["message_zh"]

        transfer = str(uuid.uuid4())  # the transfer these documents answer
        bare: dict[str, Any] = filing_decision(
            ajbh="阳城执〔2026〕1号",
            ysshh="移1",
            jsdw=[BUREAU],
            filed=False,
            jdsh="不立1",
            glbh=transfer,
        )
        r = await dept.submit(bare)
        assert r.status_code == 422
        assert [(p["field"], p["rule"]) for p in r.json()["problems"]] == [
            ("ly", "reasons_required")
        ]

        moved = jurisdiction_forward(
            ajbh="阳城执〔2026〕1号", ysshh="移1", jsdw=[BUREAU], gxdw="昆明经侦", glbh=transfer
        )
        r = await dept.submit(moved)
        assert r.status_code == 422
        assert [p["field"] for p in r.json()["problems"]] == ["gxdw"]

        ok = filing_decision(
            ajbh="阳城执〔2026〕1号",
            ysshh="移1",
            jsdw=[BUREAU],
            filed=True,
            jdsh="立1",
            glbh=transfer,
        )
        r = await dept.submit(ok, idempotency_key="filing-1")
        assert r.status_code == 202, r.text
