"""What the router would refuse, and what the SLA engine could never close, is refused at
submit: a recipient the routing policy forbids is a 422 naming the
recipient and the router's rule, and an answer without ``glbh`` / ``yyxx`` is a 422 naming
``glbh`` and the rule ``reply_needs_original``. Nothing reaches the outbox.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from adapters import enforcement, police
from adapters._framework.fake_department import RunningAdapter, running_adapter
from adapters.enforcement.testing import opinion_request
from adapters.police.testing import filing_decision, receipt
from bus.agencies import load_registry
from bus.agency_db import sync_agencies
from bus.settings import Settings
from bus.sla.policy import load_policies

BUREAU = "ygh.enforcement.bureau"
POLICE = "ygh.police.bureau"
PLANNING = "ygh.regulator.planning"


def test_the_answers_are_the_kinds_that_close_a_deadline_another_kind_opened() -> None:
    replies = load_policies().replies()
    assert replies["criminal.receipt"] == ("criminal.receipt",)
    assert replies["opinion.response"] == ("opinion.response",)
    assert replies["opinion.delegated"] == ("opinion.response",)  # it moves the deadline
    assert "supervision.explanation" in replies["criminal.case_update"]
    assert replies["criminal.jurisdiction_forward"] == ("criminal.filing_decision",)
    # A transfer closes only what it opens itself; a reconsideration request is matched by
    # case and a penalty report by month: neither needs the original's id.
    for kind in (
        "criminal.transfer",
        "court.execution_application",
        "criminal.reconsideration_request",
        "penalty.feedback",
    ):
        assert kind not in replies, kind


def ajbh() -> str:
    return f"阳城执〔2026〕{uuid.uuid4().hex[:8]}号"


@pytest.fixture
async def adapters(
    provisioned: Settings, tmp_path: Path
) -> AsyncIterator[dict[str, RunningAdapter]]:
    conn = await asyncpg.connect(provisioned.database_url)
    try:
        await sync_agencies(conn, load_registry(provisioned.agencies_file))
    finally:
        await conn.close()
    async with (
        running_adapter(
            enforcement.build_service,
            provisioned,
            key_dir=tmp_path / "keys",
            webhooks={BUREAU: None},
        ) as enf,
        running_adapter(
            police.build_service, provisioned, key_dir=tmp_path / "keys", webhooks={POLICE: None}
        ) as pol,
    ):
        yield {"enforcement": enf, "police": pol}


async def outbox_rows(adapter: RunningAdapter, agency: str) -> int:
    count = await adapter.service.pool.fetchval(
        "SELECT count(*) FROM outbox WHERE owner = $1", agency
    )
    assert isinstance(count, int)
    return count


def problems(r: Any) -> list[tuple[str, str]]:
    return [(p["field"], p["rule"]) for p in r.json()["problems"]]


@pytest.mark.integration
async def test_a_recipient_the_routing_policy_forbids_is_refused_at_submit(
    adapters: dict[str, RunningAdapter],
) -> None:
    enf = adapters["enforcement"]
    bureau = enf.department(BUREAU)
    # An opinion request goes to a regulator, never to the police: the router's rule, here.
    r = await bureau.submit(opinion_request(ajbh=ajbh(), qqbh="q", jsdw=[PLANNING, POLICE]))
    assert r.status_code == 422, r.text
    [problem] = r.json()["problems"]
    assert (problem["field"], problem["rule"], problem["value"]) == (
        "jsdw[1]",
        "unauthorized_route",
        POLICE,
    )
    assert POLICE in problem["message"] and problem["message_zh"]
    # Every problem at once: an unknown recipient too.
    r = await bureau.submit(opinion_request(ajbh=ajbh(), qqbh="q", jsdw=["ygh.nobody", POLICE]))
    assert problems(r) == [("jsdw[0]", "unknown_agency"), ("jsdw[1]", "unauthorized_route")]
    assert await outbox_rows(enf, BUREAU) == 0
    # The allowed route still goes.
    r = await bureau.submit(opinion_request(ajbh=ajbh(), qqbh="q", jsdw=[PLANNING]))
    assert r.status_code == 202, r.text
    assert await outbox_rows(enf, BUREAU) == 1


@pytest.mark.integration
async def test_an_answer_without_the_original_id_is_refused_at_submit(
    adapters: dict[str, RunningAdapter],
) -> None:
    pol = adapters["police"]
    desk = pol.department(POLICE)
    case = ajbh()
    r = await desk.submit(receipt(ajbh=case, ysshh="移1", jsdw=[BUREAU]))
    assert r.status_code == 422, r.text
    [problem] = r.json()["problems"]
    assert (problem["field"], problem["rule"]) == ("glbh", "reply_needs_original")
    assert "criminal.receipt" in problem["message"] and "yyxx" in problem["message"]
    # Listed with the other problems of the same document, not instead of them.
    refusal = filing_decision(ajbh=case, ysshh="移1", jsdw=[BUREAU], filed=False, jdsh="1")
    r = await desk.submit(refusal)  # a refusal without reasons, and no glbh
    assert r.status_code == 422, r.text
    assert ("glbh", "reply_needs_original") in problems(r) and len(problems(r)) == 2
    assert await outbox_rows(pol, POLICE) == 0
    # ... and the API description says so, on the field and on the endpoint.
    api = (await pol.client.get("/openapi.json")).json()
    submit = api["paths"]["/v1/submissions"]["post"]
    glbh = submit["requestBody"]["content"]["application/json"]["schema"]["properties"]["glbh"]
    assert "reply_needs_original" in glbh["description"]
    assert "移送回执 (`criminal.receipt`, closes criminal.receipt)" in glbh["description"]
    assert "reply_needs_original" in submit["description"]
    assert "unauthorized_route" in submit["description"]
    original = str(uuid.uuid4())
    for thread in ({"glbh": original}, {"yyxx": original}):
        r = await desk.submit(receipt(ajbh=case, ysshh="移1", jsdw=[BUREAU]) | thread)
        assert r.status_code == 202, r.text
    assert await outbox_rows(pol, POLICE) == 2
