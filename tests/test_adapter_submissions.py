"""The adapter framework's inbound side: what ``POST /v1/submissions`` refuses, and in which
order (token, then size, then Idempotency-Key); tokens scoped to one agency; bad input listed
in the department's terms; and an Idempotency-Key's answers, requests racing on it included.

Integration tests run the regulators adapter in-process against the real broker and database.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from adapterkit import BUREAU, LAND, PLANNING, case_no
from buskit import Bus

from adapters import regulators
from adapters._framework.auth import create_token, revoke_token
from adapters._framework.fake_department import running_adapter
from adapters.regulators.testing import clue_handover, opinion_response


def fields(response: Any) -> set[str]:
    return {p["field"] for p in response.json()["problems"]}


@pytest.mark.integration
async def test_tokens_are_required_and_scoped_to_one_agency(bus: Bus, tmp_path: Path) -> None:
    async with running_adapter(
        regulators.build_service,
        bus.settings,
        key_dir=tmp_path / "keys",
        webhooks={PLANNING: None, LAND: None},
    ) as regs:
        doc = clue_handover(ajbh=case_no(), xsbh="X-1", jsdw=[BUREAU])
        none = await regs.client.post("/v1/submissions", json=doc)
        assert none.status_code == 401 and fields(none) == {"Authorization"}
        wrong = await regs.client.post(
            "/v1/submissions", json=doc, headers={"Authorization": "Bearer cbt_nonsense"}
        )
        assert wrong.status_code == 401
        # LAND's token cannot submit as PLANNING.
        posing = await regs.department(LAND).submit({**doc, "fsdw": PLANNING})
        assert posing.status_code == 403 and fields(posing) == {"fsdw"}
        # A valid token of an agency this adapter does not serve.
        other = await create_token(regs.service.pool, BUREAU)
        foreign = await regs.client.post(
            "/v1/submissions", json=doc, headers={"Authorization": f"Bearer {other}"}
        )
        assert foreign.status_code == 403
        # Only the hash of a token is stored.
        stored = await regs.service.pool.fetch("SELECT token_sha256 FROM adapter_tokens")
        assert all(regs.tokens[PLANNING].encode() not in bytes(r[0]) for r in stored)
        ok = await regs.department(LAND).submit({**doc, "fsdw": LAND})
        assert ok.status_code == 202, ok.text


@pytest.mark.integration
async def test_a_submission_is_refused_in_the_same_order_whatever_its_size(
    bus: Bus, tmp_path: Path
) -> None:
    """A body up to 64 KiB is read before its token is looked up (one connection then serves
    both), a larger one after: either way the token is refused first (401 before 413 and before
    the Idempotency-Key's 422), then the size, and a revoked token is refused at once."""
    async with running_adapter(
        regulators.build_service,
        bus.settings,
        key_dir=tmp_path / "keys",
        webhooks={PLANNING: None},
        max_body_bytes=4096,
    ) as regs:
        dept = regs.department(PLANNING)
        doc = json.dumps(clue_handover(ajbh=case_no(), xsbh="X-1", jsdw=[BUREAU])).encode()
        small, over_limit, over_read_first = doc, doc + b" " * 4096, doc + b" " * (70 * 1024)
        json_type = {"Content-Type": "application/json"}
        long_key = {"Idempotency-Key": "k" * 201}

        async def post(body: bytes, headers: dict[str, str]) -> httpx.Response:
            return await regs.client.post(
                "/v1/submissions", content=body, headers={**json_type, **headers}
            )

        bad = {"Authorization": "Bearer cbt_nonsense"}
        for body in (small, over_limit, over_read_first):
            refused = await post(body, {**bad, **long_key})
            assert refused.status_code == 401, (len(body), refused.text)
            assert [p["rule"] for p in refused.json()["problems"]] == ["invalid_token"]
            assert refused.headers["WWW-Authenticate"] == "Bearer"
            missing = await post(body, long_key)
            assert missing.status_code == 401
            assert [p["rule"] for p in missing.json()["problems"]] == ["missing_token"]
            assert (await post(body, {**dept.headers, **long_key})).status_code == 422
        assert (await post(over_limit, dept.headers)).status_code == 413
        assert (await post(over_read_first, dept.headers)).status_code == 413
        accepted = await post(small, {**dept.headers, "Idempotency-Key": "k-1"})
        assert accepted.status_code == 202, accepted.text
        again = await post(small, {**dept.headers, "Idempotency-Key": "k-1"})
        assert again.status_code == 200 and again.json() == accepted.json()
        assert await revoke_token(regs.service.pool, dept.token)
        revoked = await post(small, dept.headers)
        assert revoked.status_code == 401
        assert [p["rule"] for p in revoked.json()["problems"]] == ["invalid_token"]
        assert await regs.service.pool.fetchval("SELECT count(*) FROM outbox") == 1


@pytest.mark.integration
async def test_bad_input_lists_every_problem_in_the_departments_terms(
    bus: Bus, tmp_path: Path
) -> None:
    async with running_adapter(
        regulators.build_service,
        bus.settings,
        key_dir=tmp_path / "keys",
        webhooks={PLANNING: None},
        max_body_bytes=1024 * 1024,
    ) as regs:
        dept = regs.department(PLANNING)
        doc = clue_handover(ajbh=case_no(), xsbh="X-1", jsdw=[BUREAU])
        del doc["wfss"]
        doc["fxsj"] = "昨天"
        doc["dsr"] = [{"xm": "", "zjlx": "身份证X"}]
        doc["jgjl"][0]["fjhash"] = "ab"
        doc["qtzd"] = "?"
        bad = await dept.submit(doc)
        assert bad.status_code == 422
        found = fields(bad)
        assert {"wfss", "fxsj", "dsr[0].xm", "dsr[0].zjlx", "dsr[0].zjhm"} <= found
        assert {"jgjl[0].fjhash", "qtzd"} <= found
        for problem in bad.json()["problems"]:
            assert problem["rule"] and problem["message"] and problem["message_zh"]

        envelope_gaps = await dept.submit({"ywlx": "意见答复", "jsdw": "not a list"})
        assert envelope_gaps.status_code == 422
        assert {"ajbh", "jsdw", "qqbh", "dfbh", "dfnr", "dfsj", "qfr"} <= fields(envelope_gaps)

        wrong_types = await dept.submit(
            {
                **opinion_response(
                    ajbh=case_no(), qqbh="q", dfbh="d", jsdw=[BUREAU], glbh=str(uuid.uuid4())
                ),
                "jl": 5,
            }
        )
        assert wrong_types.status_code == 422 and "jl" in fields(wrong_types)

        unknown_kind = await dept.submit({"ywlx": "意见征询", "ajbh": "A", "jsdw": [BUREAU]})
        assert unknown_kind.status_code == 422 and fields(unknown_kind) == {"ywlx"}

        not_json = await regs.client.post(
            "/v1/submissions",
            content=b"{not json",
            headers={**dept.headers, "Content-Type": "application/json"},
        )
        assert not_json.status_code == 400

        huge = await regs.client.post(
            "/v1/submissions",
            content=b"{" + b" " * (1024 * 1024 + 10) + b"}",
            headers={**dept.headers, "Content-Type": "application/json"},
        )
        assert huge.status_code == 413
        count = await regs.service.pool.fetchval("SELECT count(*) FROM outbox")
        assert count == 0


@pytest.mark.integration
async def test_an_idempotency_key_answers_the_same_id_and_refuses_another_body(
    bus: Bus, tmp_path: Path
) -> None:
    async with running_adapter(
        regulators.build_service, bus.settings, key_dir=tmp_path / "keys", webhooks={PLANNING: None}
    ) as regs:
        dept = regs.department(PLANNING)
        doc = clue_handover(ajbh=case_no(), xsbh="X-1", jsdw=[BUREAU])
        first = await dept.submit(doc, idempotency_key="k-1")
        again = await dept.submit(doc, idempotency_key="k-1")
        assert first.status_code == 202 and again.status_code == 200
        assert first.json() == again.json()
        other = await dept.submit({**doc, "xsbh": "X-2"}, idempotency_key="k-1")
        assert other.status_code == 409 and fields(other) == {"Idempotency-Key"}
        concurrent = await asyncio.gather(
            *(dept.submit(doc, idempotency_key="k-2") for _ in range(5))
        )
        assert len({r.json()["message_id"] for r in concurrent}) == 1
        assert await regs.service.pool.fetchval("SELECT count(*) FROM outbox") == 2


@pytest.mark.integration
async def test_a_key_committed_by_a_racing_request_answers_its_message_and_queues_nothing(
    bus: Bus, tmp_path: Path
) -> None:
    """The submission's one statement waits on a concurrent request's uncommitted record of
    the same key; once that commits, it queues nothing and answers that request's message
    (same body) or 409 (another body)."""
    async with running_adapter(
        regulators.build_service, bus.settings, key_dir=tmp_path / "keys", webhooks={PLANNING: None}
    ) as regs:
        dept = regs.department(PLANNING)
        headers = {**dept.headers, "Content-Type": "application/json"}
        for key, same_body in (("race-same", True), ("race-other", False)):
            body = json.dumps(clue_handover(ajbh=case_no(), xsbh="X-1", jsdw=[BUREAU])).encode()
            recorded = body if same_body else body + b" "
            racer_id = uuid.uuid4()
            racer = await asyncpg.connect(bus.settings.database_url)
            try:
                racing = racer.transaction()
                await racing.start()
                await racer.execute(
                    "INSERT INTO adapter_submissions"
                    " (agency_id, idempotency_key, body_sha256, message_id, kind, case_id)"
                    " VALUES ($1, $2, $3, $4, 'clue.handover', 'c')",
                    PLANNING,
                    key,
                    hashlib.sha256(recorded).digest(),
                    racer_id,
                )
                post = asyncio.create_task(
                    regs.client.post(
                        "/v1/submissions", content=body, headers={**headers, "Idempotency-Key": key}
                    )
                )
                await _until_waiting_on_a_lock(regs.service.pool, racer)
                await racing.commit()
                answer = await post
            finally:
                await racer.close()
            if same_body:
                assert answer.status_code == 200, answer.text
                assert answer.json() == {"message_id": str(racer_id)}
            else:
                assert answer.status_code == 409 and fields(answer) == {"Idempotency-Key"}
        assert await regs.service.pool.fetchval("SELECT count(*) FROM outbox") == 0


async def _until_waiting_on_a_lock(pool: asyncpg.Pool, holder: asyncpg.Connection) -> None:
    """Until a session waits for a lock ``holder`` holds."""
    holder_pid = holder.get_server_pid()
    for _ in range(500):
        waiting = await pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))",
            holder_pid,
        )
        if waiting:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("no session came to wait for the racing transaction's lock")
