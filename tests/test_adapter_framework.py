"""The adapter framework: vocabulary mapping, the HTTP API's checks, delivery and durability.

Integration tests run the regulators and enforcement adapters in-process against the real broker
and database, with fake departments as real HTTP servers on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import typer
from adapterkit import BUREAU, case_no, regulators_and_bureau, wait_kind
from buskit import Bus
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from keykit import ALGORITHM
from prometheus_client import REGISTRY

from adapters import enforcement, regulators
from adapters._framework.auth import create_token, revoke_token, token_agency
from adapters._framework.fake_department import free_socket, running_adapter
from adapters._framework.outbound import answer_id, sign_webhook
from adapters._framework.vocabulary import Vocabulary
from adapters._framework.webhooks import CircuitBreaker
from adapters.enforcement.testing import FakeBureau, opinion_request
from adapters.regulators.mapping import VOCABULARY
from adapters.regulators.testing import FakeRegulator, clue_handover, opinion_response
from bus.errors import ConfigError, OutboxConflictError
from bus.models import validate_payload
from bus.samples import sample_payload
from bus.signing import write_keypair

PLANNING = "ygh.regulator.planning"
LAND = "ygh.regulator.land"


# -- pure logic ----------------------------------------------------------------------------------


def test_problem_paths_are_named_in_the_departments_vocabulary() -> None:
    voc: Vocabulary = VOCABULARY
    assert voc.department_path("penalty.feedback", "decisions[2].amount_fen") == "cfjd[2].fmje"
    assert (
        voc.department_path("penalty.feedback", "decisions[0].party.id_type") == "cfjd[0].dsr.zjlx"
    )
    assert voc.department_path("clue.handover", "supervision_records[1].attachment_sha256") == (
        "jgjl[1].fjhash"
    )
    assert voc.department_path(None, "recipients[0]", envelope=True) == "jsdw[0]"
    assert voc.department_path(None, "attachments[0].sha256", envelope=True) == "fj[0].hash"
    assert voc.department_path("clue.handover", "kind") == "ywlx"


def test_a_document_maps_to_our_fields_and_back_with_enum_values_translated() -> None:
    doc = clue_handover(ajbh="A-1", xsbh="X-1", jsdw=[PLANNING])
    envelope, payload, problems = VOCABULARY.split_submission("clue.handover", doc)
    assert problems == []
    assert envelope["case_id"] == "A-1" and envelope["recipients"] == [PLANNING]
    assert payload["parties"][0]["id_type"] == "RESIDENT_ID_CARD"
    assert payload["supervision_records"][0]["attachment_name"] == "巡查记录.pdf"
    back = VOCABULARY.document({"kind": "clue.handover", "case_id": "A-1"}, payload)
    assert back["ywlx"] == "线索移交" and back["ajbh"] == "A-1"
    assert back["dsr"][0]["zjlx"] == "居民身份证"
    assert back["jgjl"] == doc["jgjl"]


@pytest.mark.parametrize(
    "vocabulary", [regulators.VOCABULARY, enforcement.VOCABULARY], ids=["regulators", "enforcement"]
)
@given(seed=st.integers(0, 2**32))
@hsettings(max_examples=40, deadline=None)
def test_every_payload_field_survives_the_trip_to_a_department_and_back(
    vocabulary: Vocabulary, seed: int
) -> None:
    rng = random.Random(seed)
    for kind in vocabulary.kinds():
        model = sample_payload(kind, rng)
        document = vocabulary.document({"kind": kind}, model.model_dump(mode="json"))
        assert document["ywlx"] == vocabulary.code(kind)
        _, payload, problems = vocabulary.split_submission(kind, document)
        assert problems == []
        assert validate_payload(kind, payload) == model, kind


def test_unknown_fields_are_problems_at_any_depth() -> None:
    doc = {"ajbh": "A", "xsbh": "X", "zzz": 1, "dsr": [{"xm": "张某", "qq": 2}]}
    _, _, problems = VOCABULARY.split_submission("clue.handover", doc)
    assert sorted(p.path for p in problems) == ["dsr[0].qq", "zzz"]
    assert {p.rule for p in problems} == {"extra_forbidden"}


def test_the_webhook_signature_covers_timestamp_and_body() -> None:
    a = sign_webhook(b"k", "1700000000", b"{}")
    assert a.startswith("sha256=") and len(a) == 7 + 64
    assert a != sign_webhook(b"k", "1700000001", b"{}")
    assert a != sign_webhook(b"k", "1700000000", b"{ }")
    assert a != sign_webhook(b"other", "1700000000", b"{}")


def test_the_circuit_breaker_opens_after_consecutive_failures_and_retries_after_a_pause() -> None:
    breaker = CircuitBreaker(failures=3, open_s=10)
    for t in range(2):
        breaker.failure(t)
    assert breaker.allows(2)
    breaker.failure(2)
    assert breaker.is_open and not breaker.allows(5) and breaker.allows(12.5)
    breaker.success()
    assert not breaker.is_open and breaker.allows(12.6)


def test_the_cli_reads_each_webhook_secret_next_to_the_agency_key(tmp_path: Path) -> None:
    from bus.cli.adapter import _config

    secret = tmp_path / f"{PLANNING}.webhook-secret"
    secret.write_bytes(b"s3cret\n")
    secret.chmod(0o600)
    config = _config(
        "regulators",
        [PLANNING, LAND],
        tmp_path,
        [f"{PLANNING}=https://gh.example.gov.cn/casebus"],
        1024 * 1024,
        60.0,
    )
    planning, land = config.agencies
    assert planning.mode == "webhook" and planning.webhook_secret == b"s3cret"
    assert planning.key_file == tmp_path / f"{PLANNING}.key.pem"
    assert land.mode == "pull" and land.webhook_url is None
    with pytest.raises(ConfigError, match=f"cannot open webhook HMAC secret .*{LAND}"):
        _config("regulators", [LAND], tmp_path, [f"{LAND}=https://x.example"], 1024 * 1024, 60.0)
    with pytest.raises(typer.BadParameter):
        _config("regulators", [LAND], tmp_path, ["not-a-pair"], 1024 * 1024, 60.0)


# -- integration --------------------------------------------------------------------------------


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


@pytest.mark.integration
async def test_settling_answers_once_and_refuses_an_answer_already_queued_otherwise(
    bus: Bus, tmp_path: Path
) -> None:
    """Settling writes the delivery's state and its bus.ack together; if an answer with the
    ack's fixed id is already in the outbox with other bytes, nothing changes and the conflict
    is raised, as writing the answer in the delivery's locked transaction always raised it."""
    async with running_adapter(
        regulators.build_service, bus.settings, key_dir=tmp_path / "keys", webhooks={PLANNING: None}
    ) as regs:
        pool = regs.service.pool
        first, second = uuid.uuid4(), uuid.uuid4()
        for i, message_id in enumerate((first, second)):
            await pool.execute(
                "INSERT INTO adapter_deliveries (agency_id, message_id, case_id, kind, sender,"
                " correlation_id, document, needs_ack)"
                " VALUES ($1, $2, $3, 'opinion.request', $4, $5, '{}'::jsonb, true)",
                PLANNING,
                message_id,
                f"{case_no()}-{i}",
                BUREAU,
                str(message_id),
            )
        settle = regs.service.settler.settle
        assert await settle(pool, PLANNING, first, "accepted") is True
        assert await settle(pool, PLANNING, first, "accepted") is False
        ack = answer_id(PLANNING, "bus.ack", first)
        assert await pool.fetchval("SELECT count(*) FROM outbox WHERE message_id = $1", ack) == 1

        squatter = answer_id(PLANNING, "bus.ack", second)
        await pool.execute(
            "INSERT INTO outbox (owner, message_id, case_id, topic, key, value, headers)"
            " VALUES ($1, $2, 'c', 't', 'k', 'other bytes', '[]')",
            PLANNING,
            squatter,
        )
        with pytest.raises(OutboxConflictError):
            await settle(pool, PLANNING, second, "accepted")
        state = await pool.fetchval(
            "SELECT state FROM adapter_deliveries WHERE message_id = $1", second
        )
        assert state == "pending"


@pytest.mark.integration
async def test_health_readiness_metrics_and_openapi(bus: Bus, tmp_path: Path) -> None:
    async with running_adapter(
        enforcement.build_service, bus.settings, key_dir=tmp_path / "keys", webhooks={BUREAU: None}
    ) as enf:
        assert (await enf.client.get("/healthz")).status_code == 200
        ready = await enf.client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["checks"] == {
            "postgresql": True,
            "kafka": True,
        }
        metrics = await enf.client.get("/metrics")
        assert "casebus_adapter_requests_total" in metrics.text
        counted = [("/v1/inbox", "401"), ("/healthz", "200"), ("/v1/submissions", "401")]
        before = [_requests(route, status) for route, status in counted]
        assert (await enf.client.get("/v1/inbox")).status_code == 401
        assert (await enf.client.get("/healthz")).status_code == 200
        assert (await enf.client.post("/v1/submissions", json={})).status_code == 401
        assert [_requests(route, status) for route, status in counted] == [n + 1 for n in before]
        spec = (await enf.client.get("/openapi.json")).json()
        assert {"/v1/submissions", "/v1/inbox", "/v1/inbox/{message_id}/ack"} <= set(spec["paths"])


def _requests(route: str, status: str) -> float:
    """The enforcement adapter's request count of ``route`` with ``status`` so far."""
    labels = {"adapter": "enforcement", "route": route, "status": status}
    return REGISTRY.get_sample_value("casebus_adapter_requests_total", labels) or 0.0


@pytest.mark.integration
@pytest.mark.slow
async def test_kafka_down_a_submission_is_still_accepted_and_delivered_once_kafka_answers(
    bus: Bus, tmp_path: Path
) -> None:
    dead = bus.settings.model_copy(update={"kafka_bootstrap": "127.0.0.1:1"})
    ajbh = case_no()
    async with running_adapter(
        regulators.build_service,
        bus.settings,
        key_dir=tmp_path / "keys",
        webhooks={PLANNING: None},
        relay_settings=dead,
    ) as regs:
        r = await regs.department(PLANNING).submit(
            clue_handover(ajbh=ajbh, xsbh="X-1", jsdw=[BUREAU])
        )
        assert r.status_code == 202, r.text
        message_id = r.json()["message_id"]
        ready = await regs.client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["kafka"] is False
        await asyncio.sleep(1.0)
        row = await regs.service.pool.fetchrow(
            "SELECT published_at, attempts FROM outbox WHERE message_id = $1",
            uuid.UUID(message_id),
        )
        assert row["published_at"] is None
    async with (
        bus.router(),
        running_adapter(
            regulators.build_service,
            bus.settings,
            key_dir=tmp_path / "keys2",
            webhooks={PLANNING: None},
        ),
    ):
        records = await bus.inbox(BUREAU, want=1, timeout_s=40)
        assert [str(e.message_id) for e in bus.envelopes(records)] == [message_id]


@pytest.mark.integration
@pytest.mark.slow
async def test_webhook_outage_every_message_arrives_once_in_case_order_and_acks_are_audited(
    bus: Bus, tmp_path: Path
) -> None:
    cases = {case_no(): 3, case_no(): 2}
    async with (
        FakeRegulator(secret=b"planning-secret") as planning,
        regulators_and_bureau(
            bus, tmp_path, {PLANNING: planning}, bureau=None, breaker_failures=3, max_wait_s=0.5
        ) as (regs, enf),
    ):
        planning.failing = True
        sent: dict[str, list[str]] = {}
        for ajbh, n in cases.items():
            for i in range(n):
                r = await enf.department(BUREAU).submit(
                    opinion_request(ajbh=ajbh, qqbh=f"{ajbh}-{i}", jsdw=[PLANNING])
                )
                assert r.status_code == 202, r.text
                sent.setdefault(ajbh, []).append(r.json()["message_id"])
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        for _ in range(300):
            if planning.attempts >= 3:
                break
            await asyncio.sleep(0.1)
        assert planning.attempts >= 3 and planning.received == []
        await asyncio.sleep(1.5)  # down a while: backoff, the open circuit, the late alert
        metrics = (await regs.client.get("/metrics")).text
        late = [
            line
            for line in metrics.splitlines()
            if line.startswith("casebus_adapter_deliveries_late{") and PLANNING in line
        ]
        assert late and float(late[0].rsplit(" ", 1)[1]) >= 1, late
        planning.failing = False

        docs = await wait_kind(planning, "意见征询", count=5)
        await asyncio.sleep(0.5)
        docs = [d for d in planning.received if d["ywlx"] == "意见征询"]
        assert len(docs) == 5 and len({d["xxbh"] for d in docs}) == 5
        for ajbh, ids in sent.items():
            assert [d["xxbh"] for d in docs if d["ajbh"] == ajbh] == ids
        assert planning.bad_signatures == 0

        acks = [answer_id(PLANNING, "bus.ack", uuid.UUID(m)) for ids in sent.values() for m in ids]
        conn = await asyncpg.connect(bus.settings.database_url)
        try:
            audited: set[uuid.UUID] = set()
            while len(audited) < len(acks) and loop.time() < deadline + 30:
                rows = await conn.fetch(
                    "SELECT message_id FROM audit_entries"
                    " WHERE event_kind = 'accepted' AND message_id = ANY($1::uuid[])",
                    acks,
                )
                audited = {r["message_id"] for r in rows}
                await asyncio.sleep(0.2)
        finally:
            await conn.close()
        assert audited == set(acks)
        assert regs.service.started


@pytest.mark.integration
@pytest.mark.slow
async def test_a_department_rejection_answers_the_sender_with_a_nack(
    bus: Bus, tmp_path: Path
) -> None:
    ajbh = case_no()
    async with (
        FakeRegulator(
            secret=b"s", reject=lambda d: "材料不全" if d["ywlx"] == "意见征询" else None
        ) as planning,
        FakeBureau(secret=b"b") as bureau,
        regulators_and_bureau(bus, tmp_path, {PLANNING: planning, LAND: None}, bureau=bureau) as (
            regs,
            enf,
        ),
    ):
        for to in (PLANNING, LAND):
            r = await enf.department(BUREAU).submit(
                opinion_request(ajbh=ajbh, qqbh=f"q-{to}", jsdw=[to])
            )
            assert r.status_code == 202
        land = regs.department(LAND)
        [item] = await land.wait_pull(1)
        # The pull channel refuses settling out of case order, and unknown ids.
        assert (await land.ack(str(uuid.uuid4()))).status_code == 404
        rejected = await land.reject(item["message_id"], "不属于本部门职责")
        assert rejected.status_code == 200 and rejected.json()["state"] == "rejected"
        assert (await land.ack(item["message_id"])).status_code == 409
        nacks = await wait_kind(bureau, "拒收通知", count=2)
        assert sorted(n["jsfdw"] for n in nacks) == sorted([PLANNING, LAND])
        assert {n["jsdm"] for n in nacks} == {"rejected_by_department"}
        reasons = {n["jsfdw"]: n["yy"][0]["sm"] for n in nacks}
        assert reasons == {PLANNING: "材料不全", LAND: "不属于本部门职责"}


@pytest.mark.integration
@pytest.mark.slow
async def test_pull_settles_a_cases_messages_in_order(bus: Bus, tmp_path: Path) -> None:
    ajbh = case_no()
    async with (
        regulators_and_bureau(bus, tmp_path, {LAND: None}, bureau=None) as (regs, enf),
    ):
        ids = []
        for i in range(2):
            r = await enf.department(BUREAU).submit(
                opinion_request(ajbh=ajbh, qqbh=f"q-{i}", jsdw=[LAND])
            )
            ids.append(r.json()["message_id"])
        land = regs.department(LAND)
        items = await land.wait_pull(2)
        assert [i["message_id"] for i in items] == ids
        assert (await land.ack(ids[1])).status_code == 409
        assert (await land.ack(ids[0])).status_code == 200
        assert (await land.ack(ids[0])).json()["changed"] is False
        assert (await land.ack(ids[1])).status_code == 200
        page = await land.pull(after=items[-1]["cursor"])
        assert page["items"] == [] and json.dumps(page)


@pytest.mark.integration
@pytest.mark.slow
async def test_a_slow_department_is_retried_until_it_answers_in_time(
    bus: Bus, tmp_path: Path
) -> None:
    ajbh = case_no()
    async with (
        FakeRegulator(secret=b"planning-secret") as planning,
        regulators_and_bureau(
            bus, tmp_path, {PLANNING: planning}, bureau=None, webhook_timeout_s=0.3
        ) as (_, enf),
    ):
        planning.delay_s = 1.0
        ids = []
        for i in range(2):
            r = await enf.department(BUREAU).submit(
                opinion_request(ajbh=ajbh, qqbh=f"q-{i}", jsdw=[PLANNING])
            )
            ids.append(r.json()["message_id"])
        for _ in range(300):
            if planning.attempts >= 2:
                break
            await asyncio.sleep(0.1)
        assert planning.attempts >= 2
        planning.delay_s = 0.0
        for _ in range(400):
            arrived = [d["xxbh"] for d in planning.received if d["ywlx"] == "意见征询"]
            if set(ids) <= set(arrived):
                break
            await asyncio.sleep(0.1)
        # Timed-out attempts may have reached the department as well (at least once: the
        # department deduplicates by xxbh), but first arrivals keep the case's order.
        first = list(dict.fromkeys(arrived))
        assert first == ids


@pytest.mark.integration
@pytest.mark.slow
async def test_the_cli_issues_tokens_and_serves_an_adapter(
    bus: Bus, tmp_path: Path, cli_env: dict[str, str], casebus_exe: Path
) -> None:
    issued = await asyncio.create_subprocess_exec(
        str(casebus_exe),
        "adapter",
        "token",
        "--agency",
        PLANNING,
        "--label",
        "规划局业务系统",
        env=cli_env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await issued.communicate()
    assert issued.returncode == 0, err.decode()
    token = out.decode().strip()
    conn = await asyncpg.connect(bus.settings.database_url)
    try:
        assert await token_agency(conn, token) == PLANNING
    finally:
        await conn.close()

    keys = tmp_path / "cli-keys"
    write_keypair(PLANNING, keys, algorithm=ALGORITHM)
    # The adapter connects as casebus_adapter, which may not register keys: the operator does.
    added = await asyncio.create_subprocess_exec(
        str(casebus_exe),
        "agency",
        "key",
        "add",
        "--agency",
        PLANNING,
        "--public-key",
        str(keys / f"{PLANNING}.pub.pem"),
        env=cli_env,
        stderr=asyncio.subprocess.PIPE,
    )
    assert await added.wait() == 0, (await added.stderr.read()).decode()  # type: ignore[union-attr]
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()
    server = await asyncio.create_subprocess_exec(
        str(casebus_exe),
        "adapter",
        "regulators",
        "--agency",
        PLANNING,
        "--key-dir",
        str(keys),
        "--port",
        str(port),
        env=cli_env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            for _ in range(150):
                try:
                    if (await client.get("/readyz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
            r = await client.post(
                "/v1/submissions",
                json=clue_handover(ajbh=case_no(), xsbh="X-cli", jsdw=[BUREAU]),
                headers={"Authorization": f"Bearer {token}"},
            )
            assert r.status_code == 202, r.text
    finally:
        server.terminate()
        assert await asyncio.wait_for(server.wait(), 30) is not None


@pytest.mark.integration
@pytest.mark.slow
async def test_a_department_refusing_our_signature_is_retried_not_taken_as_a_rejection(
    bus: Bus, tmp_path: Path
) -> None:
    async with (
        FakeRegulator(secret=b"right") as planning,
        regulators_and_bureau(bus, tmp_path, {PLANNING: planning}, bureau=None) as (_, enf),
    ):
        planning.secret = b"rotated"  # the department rotated its secret, we did not yet
        r = await enf.department(BUREAU).submit(
            opinion_request(ajbh=case_no(), qqbh="q-1", jsdw=[PLANNING])
        )
        for _ in range(300):
            if planning.bad_signatures >= 2:
                break
            await asyncio.sleep(0.1)
        assert planning.bad_signatures >= 2 and planning.received == []
        planning.secret = b"right"
        [doc] = await wait_kind(planning, "意见征询")
        assert doc["xxbh"] == r.json()["message_id"]
        assert planning.rejected == []


@pytest.mark.integration
@pytest.mark.slow
async def test_pending_deliveries_survive_an_adapter_restart_and_arrive_once(
    bus: Bus, tmp_path: Path
) -> None:
    ajbh = case_no()
    async with (
        FakeRegulator(secret=b"planning-secret") as planning,
        bus.router(),
        running_adapter(
            enforcement.build_service,
            bus.settings,
            key_dir=tmp_path / "keys",
            webhooks={BUREAU: None},
        ) as enf,
    ):
        planning.failing = True
        async with running_adapter(
            regulators.build_service,
            bus.settings,
            key_dir=tmp_path / "keys",
            webhooks={PLANNING: planning},
        ) as regs:
            ids = []
            for i in range(3):
                r = await enf.department(BUREAU).submit(
                    opinion_request(ajbh=ajbh, qqbh=f"q-{i}", jsdw=[PLANNING])
                )
                ids.append(r.json()["message_id"])
            for _ in range(300):
                stored = await regs.service.pool.fetchval(
                    "SELECT count(*) FROM adapter_deliveries WHERE kind = 'opinion.request'"
                )
                if stored == 3:
                    break
                await asyncio.sleep(0.1)
            assert stored == 3 and planning.received == []
        planning.failing = False
        async with running_adapter(
            regulators.build_service,
            bus.settings,
            key_dir=tmp_path / "keys",
            webhooks={PLANNING: planning},
        ):
            docs = await wait_kind(planning, "意见征询", count=3)
            await asyncio.sleep(1.0)
            docs = [d for d in planning.received if d["ywlx"] == "意见征询"]
            assert [d["xxbh"] for d in docs] == ids
