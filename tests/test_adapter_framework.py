"""The adapter framework: vocabulary mapping, settling a delivery and the pull channel, the
answers a sender gets, health and metrics, durability while Kafka is down, and the CLI.

What ``POST /v1/submissions`` refuses is in test_adapter_submissions.py; webhook delivery
(signature, circuit breaker, outages, retries, restarts) in test_adapter_webhooks.py.

Integration tests run the regulators and enforcement adapters in-process against the real broker
and database, with fake departments as real HTTP servers on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from pathlib import Path

import asyncpg
import httpx
import pytest
from adapterkit import BUREAU, LAND, PLANNING, case_no, regulators_and_bureau, wait_kind
from buskit import Bus
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from keykit import ALGORITHM
from prometheus_client import REGISTRY

from adapters import enforcement, regulators
from adapters._framework.auth import token_agency
from adapters._framework.fake_department import free_socket, running_adapter
from adapters._framework.outbound import answer_id
from adapters._framework.vocabulary import Vocabulary
from adapters.enforcement.testing import FakeBureau, opinion_request
from adapters.regulators.mapping import VOCABULARY
from adapters.regulators.testing import FakeRegulator, clue_handover
from bus.errors import OutboxConflictError
from bus.models import validate_payload
from bus.samples import sample_payload
from bus.signing import write_keypair

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


# -- integration --------------------------------------------------------------------------------


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
