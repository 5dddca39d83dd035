"""What the router would refuse, and what the SLA engine could never close, is refused at
submit: a recipient the routing policy forbids is a 422 naming the
recipient and the router's rule, and an answer without ``glbh`` / ``yyxx`` is a 422 naming
``glbh`` and the rule ``reply_needs_original``. Nothing reaches the outbox.

A token the adapter found active before is not looked up again before a submission: the one
statement that queues it checks the token is still active, and a refusal for anything else
looks it up first, so a revoked token is refused as before and nothing is written.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from adapterkit import adapters_in_process
from asyncpg.connection import LoggedQuery

from adapters import enforcement, police, regulators
from adapters._framework.auth import create_token, hash_token, revoke_token
from adapters._framework.fake_department import RunningAdapter, running_adapter
from adapters.enforcement.testing import opinion_request
from adapters.police.testing import filing_decision, receipt
from adapters.regulators.testing import clue_handover
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


# -- a token seen before ------------------------------------------------------------------------

REQUEST: ContextVar[str | None] = ContextVar("REQUEST", default=None)
"""Which request of the test a statement was sent for. asyncpg calls its query loggers in the
context of the task that sent the statement, so the adapter's background loops (relay, pull
lateness), started before any request, are never counted."""


class Statements:
    """The statements an adapter's pool sends to PostgreSQL, by request (:data:`REQUEST`)."""

    def __init__(self) -> None:
        self.sent: dict[str, list[str]] = defaultdict(list)

    def __call__(self, record: LoggedQuery) -> None:
        label = REQUEST.get()
        if label is not None:
            self.sent[label].append(record.query)

    async def of(self, label: str, request: Awaitable[httpx.Response]) -> httpx.Response:
        """``request``'s answer, its statements counted under ``label``."""
        reset = REQUEST.set(label)
        try:
            return await request
        finally:
            REQUEST.reset(reset)
            await asyncio.sleep(0)  # the loggers are called soon after, not at once


@pytest.fixture
async def bureau(provisioned: Settings, tmp_path: Path) -> AsyncIterator[RunningAdapter]:
    """The enforcement adapter as deployed (its own role) with one connection in its pool, so
    that a query logger added to it sees every statement, and a small body limit."""
    conn = await asyncpg.connect(provisioned.database_url)
    try:
        await sync_agencies(conn, load_registry(provisioned.agencies_file))
    finally:
        await conn.close()
    async with running_adapter(
        enforcement.build_service,
        provisioned,
        key_dir=tmp_path / "keys",
        webhooks={BUREAU: None},
        own_role=True,
        db_pool_max_size=1,
        max_body_bytes=4096,
    ) as enf:
        yield enf


async def written(pool: asyncpg.Pool, agency: str) -> tuple[int, int]:
    """How many outbox rows and idempotency records ``agency`` has, counted raw."""
    row = await pool.fetchrow(
        "SELECT (SELECT count(*) FROM outbox WHERE owner = $1),"
        " (SELECT count(*) FROM adapter_submissions WHERE agency_id = $1)",
        agency,
    )
    assert row is not None
    return int(row[0]), int(row[1])


async def operator_pool(settings: Settings) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
    assert pool is not None
    return pool


def request_for(planning: str = PLANNING) -> dict[str, Any]:
    return opinion_request(ajbh=ajbh(), qqbh=f"q-{uuid.uuid4().hex[:6]}", jsdw=[planning])


@pytest.mark.integration
async def test_a_fresh_submission_with_a_token_seen_before_is_one_statement(
    bureau: RunningAdapter,
) -> None:
    """The first submission looks the token (and the key) up, then queues: two statements.
    After it, the token's agency is known, and the one statement that queues the submission
    checks the token is still active."""
    statements = Statements()
    async with bureau.service.pool.acquire() as conn:  # the pool's only connection
        conn.add_query_logger(statements)
    dept = bureau.department(BUREAU)
    first = await statements.of("first", dept.submit(request_for(), idempotency_key="k-1"))
    second = await statements.of("second", dept.submit(request_for(), idempotency_key="k-2"))
    keyless = await statements.of("keyless", dept.submit(request_for()))
    assert [r.status_code for r in (first, second, keyless)] == [202, 202, 202], first.text
    assert len(statements.sent["first"]) == 2, statements.sent["first"]
    for label in ("second", "keyless"):
        [queued] = statements.sent[label]
        assert "INSERT INTO outbox" in queued and "adapter_tokens" in queued
    assert await written(bureau.service.pool, BUREAU) == (3, 2)


@pytest.mark.integration
async def test_a_token_revoked_after_it_was_seen_is_refused_and_writes_nothing(
    bureau: RunningAdapter, provisioned: Settings
) -> None:
    """Revocation is immediate for a known token too: the statement that would queue the
    submission finds it revoked, writes nothing, and the answer is today's 401. A request
    refused for anything else before that statement is answered 401 first, as a token looked
    up first would be, whatever is wrong with it."""
    pool = bureau.service.pool
    known = bureau.service.submitter.tokens
    operator = await operator_pool(provisioned)
    try:
        dept = bureau.department(BUREAU)
        assert (await dept.submit(request_for(), idempotency_key="k-1")).status_code == 202
        assert known.get(hash_token(dept.token)) == BUREAU
        before = await written(pool, BUREAU)
        assert await revoke_token(operator, dept.token)
        for attempt in range(2):  # known, then looked up (forgotten at the first 401)
            refused = await dept.submit(request_for(), idempotency_key=f"k-2-{attempt}")
            assert refused.status_code == 401, refused.text
            assert [p["rule"] for p in refused.json()["problems"]] == ["invalid_token"]
            assert refused.headers["WWW-Authenticate"] == "Bearer"
            assert known.get(hash_token(dept.token)) is None
        assert await written(pool, BUREAU) == before

        json_type = {"Content-Type": "application/json"}
        good = json.dumps(request_for()).encode()
        wrongs: dict[str, tuple[bytes, dict[str, str], int]] = {
            "body": (json.dumps({**request_for(), "ywlx": "线索移交"}).encode(), {}, 422),
            "not JSON": (b"{not json", {}, 400),
            "key too long": (good, {"Idempotency-Key": "k" * 201}, 422),
            "key empty": (good, {"Idempotency-Key": ""}, 400),
            "size": (good + b" " * 4096, {}, 413),
            "sender": (json.dumps({**request_for(), "fsdw": POLICE}).encode(), {}, 403),
        }
        for what, (body, headers, status) in wrongs.items():
            token = await create_token(operator, BUREAU)
            auth = {"Authorization": f"Bearer {token}", **json_type}
            warm = await bureau.client.post("/v1/submissions", json=request_for(), headers=auth)
            assert warm.status_code == 202, warm.text
            post = bureau.client.post("/v1/submissions", content=body, headers=auth | headers)
            assert (await post).status_code == status, what  # active: refused for itself
            assert known.get(hash_token(token)) == BUREAU
            assert await revoke_token(operator, token)
            before = await written(pool, BUREAU)
            post = bureau.client.post("/v1/submissions", content=body, headers=auth | headers)
            refused = await post
            assert refused.status_code == 401, (what, refused.text)
            assert [p["rule"] for p in refused.json()["problems"]] == ["invalid_token"], what
            assert known.get(hash_token(token)) is None, what
            assert await written(pool, BUREAU) == before, what
    finally:
        await operator.close()


@pytest.mark.integration
async def test_an_idempotency_key_answers_alike_for_a_token_seen_before(
    bureau: RunningAdapter,
) -> None:
    """Without the lookup before it, the queuing statement tells a key recorded before: the
    same body answers its message again (200), another body 409, and nothing more is queued."""
    pool = bureau.service.pool
    dept = bureau.department(BUREAU)
    assert (await dept.submit(request_for())).status_code == 202  # the token is known now
    assert bureau.service.submitter.tokens.get(hash_token(dept.token)) == BUREAU
    doc = request_for()
    first = await dept.submit(doc, idempotency_key="k-1")
    assert first.status_code == 202, first.text
    again = await dept.submit(doc, idempotency_key="k-1")
    assert again.status_code == 200 and again.json() == first.json()
    other = await dept.submit({**doc, "qqbh": "q-other"}, idempotency_key="k-1")
    assert other.status_code == 409, other.text
    assert problems(other) == [("Idempotency-Key", "idempotency_key_reused")]
    # A body refused for itself under a key used before answers as when the key is looked up
    # first: 409 for another body, not the 422.
    unreadable = await dept.submit({**doc, "jsdw": "not a list"}, idempotency_key="k-1")
    assert unreadable.status_code == 409, unreadable.text
    message_id = uuid.UUID(first.json()["message_id"])
    queued = await pool.fetchval("SELECT count(*) FROM outbox WHERE message_id = $1", message_id)
    recorded = await pool.fetchval(
        "SELECT count(*) FROM adapter_submissions WHERE agency_id = $1 AND idempotency_key = $2",
        BUREAU,
        "k-1",
    )
    assert (queued, recorded) == (1, 1)
    assert await written(pool, BUREAU) == (2, 1)


@pytest.mark.integration
async def test_a_submission_with_files_checks_a_token_seen_before_in_its_transaction(
    settings: Settings, tmp_path: Path
) -> None:
    """A document carrying files of the bus's store is queued in a transaction with the
    sender's references to them: a revoked known token leaves none of the three written, and
    a file the check refuses is still answered 401 first."""
    kinds = {"regulators": (regulators, (PLANNING,))}
    async with adapters_in_process(settings, tmp_path, kinds) as running:
        client, pool = running.clients[PLANNING], running.pool
        data = b"%PDF-1.7 patrol record " + uuid.uuid4().bytes

        def auth(token: str) -> dict[str, str]:
            return {"Authorization": f"Bearer {token}"}

        upload = await client.post(
            "/v1/attachments",
            content=data,
            headers=auth(running.tokens[PLANNING]) | {"Content-Type": "application/pdf"},
        )
        ref = upload.json()["fj"]

        def clue(**changed: Any) -> dict[str, Any]:
            doc = clue_handover(
                ajbh=ajbh(), xsbh=uuid.uuid4().hex[:6], jsdw=[BUREAU], records={"巡查.pdf": data}
            )
            return doc | {"fj": [{"mc": "巡查.pdf", **ref, **changed}]}

        async def rows() -> tuple[int, int, int]:
            refs = await pool.fetchval(
                "SELECT count(*) FROM attachment_refs WHERE agency_id = $1", PLANNING
            )
            return (*await written(pool, PLANNING), int(refs))

        for wrong in ({}, {"dx": ref["dx"] + 1}):  # nothing wrong, a wrong size
            token = await create_token(pool, PLANNING)
            warm = await client.post("/v1/submissions", json=clue(), headers=auth(token))
            known = await client.post("/v1/submissions", json=clue(), headers=auth(token))
            assert (warm.status_code, known.status_code) == (202, 202), known.text
            if wrong:
                refused = await client.post(
                    "/v1/submissions", json=clue(**wrong), headers=auth(token)
                )
                assert problems(refused) == [("fj[0].dx", "attachment_size_mismatch")]
            before = await rows()
            assert await revoke_token(pool, token)
            submitted = clue(**wrong)
            refused = await client.post("/v1/submissions", json=submitted, headers=auth(token))
            assert refused.status_code == 401, (wrong, refused.text)
            assert problems(refused) == [("Authorization", "invalid_token")]
            assert await rows() == before, wrong
        assert (await rows())[2] == 4  # one reference for each document accepted
