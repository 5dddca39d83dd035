"""The criminal-transfer chain (两法衔接) end to end, through the adapters' HTTP APIs only.

Enforcement, police and procuratorate adapters run against the real broker and database with the
router in-process; the enforcement bureau and the police are fake departments taking webhooks,
the procuratorate pulls. The procuratorate's timeline of each scenario lists every step, and each
step's evidence bundle verifies offline with the bus's public key alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from adapterkit import BUREAU, case_no, wait_kind
from buskit import Bus
from keykit import ALGORITHM
from slakit import JumpingClock

from adapters import enforcement, police, regulators
from adapters._framework.fake_department import FakeDepartment, RunningAdapter, running_adapter
from adapters.enforcement.criminal import CRIMINAL_RECEIVES, CRIMINAL_SENDS
from adapters.enforcement.testing import FakeBureau
from adapters.police.testing import FakePolice, filing_decision, jurisdiction_forward, receipt
from adapters.police.testing import reconsideration_decision as police_reconsideration
from adapters.procuratorate.testing import running_procuratorate, supervision_notice
from bus.audit.evidence import verify_bundle
from bus.samples import sample_envelope, sample_payload
from bus.signing import write_keypair
from bus.sim import documents as docs
from bus.sim.documents import ALL_DOCUMENTS
from bus.sla.app import run_sla_engine
from bus.sla.clock import Clock

pytestmark = [pytest.mark.integration, pytest.mark.slow]

POLICE = "ygh.police.bureau"
ECO = "kmg.police.eco"
PROCURATORATE = "ygh.procuratorate"
COURT = "ygh.court"
PLANNING = "ygh.regulator.planning"


CHECKED = ("criminal.transfer", "court.execution_application")
"""Kinds with statutory checks at the bureau's adapter (tested on their own)."""


def transfer(
    *, ajbh: str, ysshh: str, jsdw: list[str], documents: tuple[str, ...] = ALL_DOCUMENTS
) -> dict[str, Any]:
    """The simulation's 涉嫌犯罪案件移送, its art. 6 manifest cut down to ``documents``."""
    doc = docs.transfer(ajbh=ajbh, ysshh=ysshh, jsdw=jsdw, now=datetime.now(UTC))
    kept = [i for i, item in enumerate(doc["yscl"]) if item["wslx"] in documents]
    doc["yscl"] = [doc["yscl"][i] for i in kept]
    doc["fj"] = [doc["fj"][i] for i in kept]
    return doc


@dataclass
class Chain:
    bus: Bus
    bureau: FakeDepartment
    police: FakeDepartment
    eco: FakeDepartment
    enf: RunningAdapter
    pol: RunningAdapter
    proc: RunningAdapter


@contextlib.asynccontextmanager
async def chain(bus: Bus, tmp_path: Path) -> AsyncIterator[Chain]:
    keys = tmp_path / "keys"
    async with (
        FakeBureau(secret=b"bureau") as bureau,
        FakePolice(secret=b"police") as pol_fake,
        FakePolice(secret=b"eco") as eco_fake,
        bus.router(),
        running_adapter(
            enforcement.build_service, bus.settings, key_dir=keys, webhooks={BUREAU: bureau}
        ) as enf,
        running_adapter(
            police.build_service,
            bus.settings,
            key_dir=keys,
            webhooks={POLICE: pol_fake, ECO: eco_fake},
        ) as pol,
        running_procuratorate(bus.settings, key_dir=keys, webhooks={PROCURATORATE: None}) as proc,
    ):
        yield Chain(bus, bureau, pol_fake, eco_fake, enf, pol, proc)


async def wait_pulled(
    adapter: RunningAdapter, agency: str, code: str, timeout_s: float = 40
) -> list[dict[str, Any]]:
    """Documents of ``code`` waiting in ``agency``'s pull inbox."""
    for _ in range(int(timeout_s * 5)):
        items = (await adapter.department(agency).pull(limit=500))["items"]
        found = [i["document"] for i in items if i["document"]["ywlx"] == code]
        if found:
            return found
        await asyncio.sleep(0.2)
    raise AssertionError(f"no {code} for {agency} after {timeout_s}s")


async def submit(adapter: RunningAdapter, agency: str, doc: dict[str, Any]) -> str:
    r = await adapter.department(agency).submit(doc)
    assert r.status_code == 202, r.text
    return str(r.json()["message_id"])


async def timeline(c: Chain, ajbh: str, kinds: list[str], timeout_s: float = 30) -> dict[str, Any]:
    """The procuratorate's timeline once it lists ``kinds`` and every step has its bundle."""
    dept = c.proc.department(PROCURATORATE)
    body: dict[str, Any] = {}
    for _ in range(int(timeout_s * 4)):
        r = await dept.client.get(f"/v1/cases/{ajbh}/timeline", headers=dept.headers)
        assert r.status_code == 200, r.text
        body = r.json()
        steps = body["steps"]
        if [s["kind"] for s in steps] == kinds and all(s["evidence"] for s in steps):
            return body
        await asyncio.sleep(0.25)
    raise AssertionError(f"timeline never became {kinds}: {[s['kind'] for s in body['steps']]}")


async def verify_steps(c: Chain, body: dict[str, Any]) -> None:
    for step in body["steps"]:
        verdict = await verify_bundle(step["evidence"], log_key=c.bus.log_key)
        assert verdict.message_id == step["message_id"]
        assert verdict.leaf_index == step["audit_index"]
        assert verdict.sender == step["sender"]


async def test_transfer_receipt_filing_and_evidence_handover(bus: Bus, tmp_path: Path) -> None:
    ajbh, ysshh = case_no(), f"阳城执移〔2026〕{uuid.uuid4().hex[:6]}号"
    async with chain(bus, tmp_path) as c:
        sent = await submit(c.enf, BUREAU, transfer(ajbh=ajbh, ysshh=ysshh, jsdw=[POLICE]))
        [got] = await wait_kind(c.police, "涉嫌犯罪案件移送")
        assert got["xxbh"] == sent and got["ysshh"] == ysshh
        assert [d["wslx"] for d in got["yscl"]] == list(ALL_DOCUMENTS)
        assert got["dsr"][0]["js"] == "涉嫌犯罪单位"

        await submit(c.pol, POLICE, receipt(ajbh=ajbh, ysshh=ysshh, jsdw=[BUREAU], glbh=sent))
        [signed] = await wait_kind(c.bureau, "移送回执")
        assert signed["ysshh"] == ysshh and signed["fsdw"] == POLICE

        decision = filing_decision(
            ajbh=ajbh, ysshh=ysshh, jsdw=[BUREAU], filed=True, jdsh="阳公立〔2026〕1号", glbh=sent
        )
        await submit(c.pol, POLICE, decision)
        [filed] = await wait_kind(c.bureau, "立案决定")
        assert filed["jd"] == "立案" and filed["xsajbh"] == "刑阳公立〔2026〕1号"

        await submit(
            c.enf,
            BUREAU,
            docs.evidence_handover(
                ajbh=ajbh,
                ysshh=ysshh,
                xsajbh=filed["xsajbh"],
                jsdw=[POLICE],
                now=datetime.now(UTC),
                glbh=sent,
            ),
        )
        [items] = await wait_kind(c.police, "移交涉案物品")
        assert items["wp"][0]["ms"] == "挖掘机" and items["wp"][0]["lx"] == "涉案物品"

        body = await timeline(
            c,
            ajbh,
            [
                "criminal.transfer",
                "criminal.receipt",
                "criminal.filing_decision",
                "criminal.evidence_handover",
            ],
        )
        assert body["steps"][0]["recipients"] == [POLICE]
        assert body["steps"][1]["sender"] == POLICE
        states = [{d["policy_id"]: d["state"] for d in s["deadlines"]} for s in body["steps"]]
        assert states[0]["criminal.receipt"] == "met"
        assert states[1]["criminal.filing_decision"] == "met"
        assert states[2]["criminal.evidence_handover"] == "met"
        await verify_steps(c, body)
        # The police never got a copy meant for the court, and the court nothing at all.
        assert await bus.inbox(COURT, want=1, timeout_s=2) == []


async def test_refusal_reconsideration_supervision_then_filing(bus: Bus, tmp_path: Path) -> None:
    ajbh, ysshh = case_no(), f"阳城执移〔2026〕{uuid.uuid4().hex[:6]}号"
    async with chain(bus, tmp_path) as c:
        sent = await submit(c.enf, BUREAU, transfer(ajbh=ajbh, ysshh=ysshh, jsdw=[POLICE]))
        await wait_kind(c.police, "涉嫌犯罪案件移送")
        await submit(c.pol, POLICE, receipt(ajbh=ajbh, ysshh=ysshh, jsdw=[BUREAU], glbh=sent))

        # A refusal without reasons is refused by the adapter, naming the field.
        bare = filing_decision(
            ajbh=ajbh,
            ysshh=ysshh,
            jsdw=[BUREAU],
            filed=False,
            jdsh="阳公不立〔2026〕1号",
            glbh=sent,
        )
        r = await c.pol.department(POLICE).submit(bare)
        assert r.status_code == 422
        assert {(p["field"], p["rule"]) for p in r.json()["problems"]} == {
            ("ly", "reasons_required")
        }

        refusal = filing_decision(
            ajbh=ajbh,
            ysshh=ysshh,
            jsdw=[BUREAU],
            filed=False,
            jdsh="阳公不立〔2026〕1号",
            reasons=["涉案面积未达立案追诉标准"],
            glbh=sent,
        )
        refusal_id = await submit(c.pol, POLICE, refusal)
        [refused] = await wait_kind(c.bureau, "立案决定")
        assert refused["jd"] == "不予立案" and refused["ly"] == ["涉案面积未达立案追诉标准"]
        assert [m["mc"] for m in refused["thcl"]] == ["案卷材料", "涉案物品清单"]

        await submit(
            c.enf,
            BUREAU,
            docs.reconsideration_request(
                ajbh=ajbh,
                ysshh=ysshh,
                fysqh="复议-1",
                jdsh=refused["jdsh"],
                jsdw=[POLICE],
                now=datetime.now(UTC),
                glbh=sent,
            ),
        )
        [asked] = await wait_kind(c.police, "提请复议")
        assert asked["byljdsh"] == "阳公不立〔2026〕1号"
        await submit(
            c.pol,
            POLICE,
            police_reconsideration(
                ajbh=ajbh,
                ysshh=ysshh,
                jsdw=[BUREAU],
                fysqh="复议-1",
                file_case=False,
                jdsh="阳公复〔2026〕1号",
            )
            | {"glbh": sent},
        )
        [kept] = await wait_kind(c.bureau, "复议决定")
        assert kept["jd"] == "维持不予立案"

        request = docs.supervision_request(
            ajbh=ajbh,
            ysshh=ysshh,
            jdsh=refused["jdsh"],
            gajg=POLICE,
            jsdw=[PROCURATORATE],
            now=datetime.now(UTC),
            refusal_id=refusal_id,
            glbh=sent,
        )
        await submit(c.enf, BUREAU, request)
        [asked_supervision] = await wait_pulled(c.proc, PROCURATORATE, "提请立案监督")
        assert asked_supervision["gajg"] == POLICE

        notice = supervision_notice(
            ajbh=ajbh,
            ysshh=ysshh,
            jsdw=[POLICE, BUREAU],
            gajg=POLICE,
            tzsh="阳检立监〔2026〕1号",
            file_case=True,
        )
        await submit(c.proc, PROCURATORATE, notice)
        [told] = await wait_kind(c.police, "立案监督通知")
        assert told["tzlx"] == "通知立案" and told["fsdw"] == PROCURATORATE
        await wait_kind(c.bureau, "立案监督通知")

        filed = filing_decision(
            ajbh=ajbh, ysshh=ysshh, jsdw=[BUREAU], filed=True, jdsh="阳公立〔2026〕2号", glbh=sent
        )
        await submit(c.pol, POLICE, filed)
        await wait_kind(c.bureau, "立案决定", count=2)

        body = await timeline(
            c,
            ajbh,
            [
                "criminal.transfer",
                "criminal.receipt",
                "criminal.filing_decision",
                "criminal.reconsideration_request",
                "criminal.reconsideration_decision",
                "supervision.request",
                "supervision.notice",
                "criminal.filing_decision",
            ],
        )
        await verify_steps(c, body)


async def test_wrong_bureau_forwards_to_the_competent_one_which_files(
    bus: Bus, tmp_path: Path
) -> None:
    ajbh, ysshh = case_no(), f"阳城执移〔2026〕{uuid.uuid4().hex[:6]}号"
    async with chain(bus, tmp_path) as c:
        sent = await submit(c.enf, BUREAU, transfer(ajbh=ajbh, ysshh=ysshh, jsdw=[POLICE]))
        await wait_kind(c.police, "涉嫌犯罪案件移送")
        await submit(c.pol, POLICE, receipt(ajbh=ajbh, ysshh=ysshh, jsdw=[BUREAU], glbh=sent))
        await submit(
            c.pol,
            POLICE,
            jurisdiction_forward(ajbh=ajbh, ysshh=ysshh, jsdw=[BUREAU, ECO], gxdw=ECO, glbh=sent),
        )
        [moved] = await wait_kind(c.eco, "移送管辖")
        assert moved["gxdw"] == ECO and moved["fsdw"] == POLICE
        [notice] = await wait_kind(c.bureau, "移送管辖")  # the written notice to the sender
        assert notice["gxdw"] == ECO

        await submit(
            c.pol,
            ECO,
            filing_decision(
                ajbh=ajbh,
                ysshh=ysshh,
                jsdw=[BUREAU],
                filed=True,
                jdsh="昆公经立〔2026〕1号",
                glbh=sent,
            ),
        )
        [filed] = await wait_kind(c.bureau, "立案决定")
        assert filed["fsdw"] == ECO and filed["jd"] == "立案"

        body = await timeline(
            c,
            ajbh,
            [
                "criminal.transfer",
                "criminal.receipt",
                "criminal.jurisdiction_forward",
                "criminal.filing_decision",
            ],
        )
        assert body["steps"][2]["recipients"] == [BUREAU, ECO]
        await verify_steps(c, body)


async def test_a_transfer_missing_art_6_documents_is_refused_listing_each(
    bus: Bus, tmp_path: Path
) -> None:
    async with running_adapter(
        enforcement.build_service, bus.settings, key_dir=tmp_path / "keys", webhooks={BUREAU: None}
    ) as enf:
        ajbh = case_no()
        doc = transfer(
            ajbh=ajbh, ysshh="阳城执移〔2026〕0001号", jsdw=[POLICE], documents=("移送书",)
        )
        r = await enf.department(BUREAU).submit(doc)
        assert r.status_code == 422, r.text
        missing = [p for p in r.json()["problems"] if p["rule"] == "mandatory_document_missing"]
        assert [p["value"] for p in missing] == ["调查报告", "涉案物品清单", "检验报告或鉴定结论"]
        assert all(p["field"] == "yscl" and "第六条" in p["message_zh"] for p in missing)

        # A case without any inspection or appraisal says so and needs no such report.
        doc = transfer(
            ajbh=ajbh, ysshh="阳城执移〔2026〕0002号", jsdw=[POLICE], documents=ALL_DOCUMENTS[:3]
        )
        doc["wjyjd"] = True
        r = await enf.department(BUREAU).submit(doc)
        assert r.status_code == 202, r.text

        # Without the transfer letter the manifest itself is refused.
        doc = transfer(
            ajbh=ajbh, ysshh="阳城执移〔2026〕0003号", jsdw=[POLICE], documents=ALL_DOCUMENTS[1:]
        )
        r = await enf.department(BUREAU).submit(doc)
        assert r.status_code == 422
        assert "transfer_letter_missing" in {p["rule"] for p in r.json()["problems"]}


async def test_a_regulator_cannot_send_criminal_kinds(bus: Bus, tmp_path: Path) -> None:
    ajbh = case_no()
    async with (
        FakeDepartment(secret=b"planning") as planning,
        bus.router(),
        running_adapter(
            regulators.build_service,
            bus.settings,
            key_dir=tmp_path / "adapter-keys",
            webhooks={PLANNING: planning},
        ) as regs,
    ):
        # The regulators' adapter knows no criminal kind ...
        doc = transfer(ajbh=ajbh, ysshh="规划移〔2026〕1号", jsdw=[POLICE])
        r = await regs.department(PLANNING).submit(doc)
        assert r.status_code == 422
        assert r.json()["problems"][0]["rule"] == "unknown_kind"
        # ... and the router refuses one sent around it, answering unauthorized_route.
        party = await bus.party(PLANNING)
        envelope = sample_envelope(
            party, "criminal.transfer", random.Random(7), recipients=[POLICE], case_id=ajbh
        )
        await bus.submit(envelope)
        records = await bus.inbox(PLANNING, want=1, timeout_s=20)
        nacks = [e for e in bus.envelopes(records) if e.kind == "bus.nack"]
        assert nacks and bus.payload(nacks[0]).code == "unauthorized_route"  # type: ignore[attr-defined]
        assert await bus.inbox(POLICE, want=1, timeout_s=2) == []


@contextlib.asynccontextmanager
async def sla_engine(bus: Bus, tmp_path: Path, clock: Clock) -> AsyncIterator[None]:
    """The SLA engine in this process, on ``clock``."""
    key = write_keypair("casebus.sla", tmp_path / "sla-key", algorithm=ALGORITHM).private_key
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_sla_engine(
            bus.settings,
            key_file=key,
            clock=clock,
            handle_signals=False,
            stop_event=stop,
            scheduler_poll_s=0.1,
            relay_poll_s=0.1,
        )
    )
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def test_a_bureau_that_never_decides_is_reported_to_all_three(
    bus: Bus, tmp_path: Path
) -> None:
    ajbh, ysshh = case_no(), f"阳城执移〔2026〕{uuid.uuid4().hex[:6]}号"
    # The engine's clock stands still while the transfer and its receipt go through, however
    # long a busy machine takes (the receipt is on time), then jumps past the 3-day review.
    clock = JumpingClock(datetime.now(UTC))
    async with chain(bus, tmp_path) as c, sla_engine(bus, tmp_path, clock):
        sent = await submit(c.enf, BUREAU, transfer(ajbh=ajbh, ysshh=ysshh, jsdw=[POLICE]))
        await wait_kind(c.police, "涉嫌犯罪案件移送")
        signed = await submit(
            c.pol, POLICE, receipt(ajbh=ajbh, ysshh=ysshh, jsdw=[BUREAU], glbh=sent)
        )
        dept = c.proc.department(PROCURATORATE)
        await _wait_deadline(dept, ajbh, signed, "criminal.filing_decision", "open")
        # ... and the police never decide.
        clock.at += timedelta(days=5)
        [breach_bureau] = await wait_kind(c.bureau, "超期通报", timeout_s=60)
        assert breach_bureau["clbh"] == "criminal.filing_decision"
        assert breach_bureau["zrdw"] == POLICE
        assert breach_bureau["qdxx"] == signed
        [breach_police] = await wait_kind(c.police, "超期通报", timeout_s=30)
        assert breach_police["clbh"] == "criminal.filing_decision"
        assert breach_police["ddd"] == BUREAU

        steps = await _wait_deadline(dept, ajbh, signed, "criminal.filing_decision", "breached")
        receipt_deadlines = {d["policy_id"]: d["state"] for d in steps[sent]["deadlines"]}
        assert receipt_deadlines.get("criminal.receipt") == "met"


async def _wait_deadline(
    dept: Any, ajbh: str, message_id: str, policy_id: str, state: str
) -> dict[str, dict[str, Any]]:
    """The case's timeline steps, once ``message_id``'s ``policy_id`` deadline is ``state``
    (as the procuratorate sees it)."""
    states: dict[str, str] = {}
    for _ in range(240):
        r = await dept.client.get(f"/v1/cases/{ajbh}/timeline", headers=dept.headers)
        steps = {s["message_id"]: s for s in r.json()["steps"]}
        if message_id in steps:
            states = {d["policy_id"]: d["state"] for d in steps[message_id]["deadlines"]}
            if states.get(policy_id) == state:
                return steps
        await asyncio.sleep(0.25)
    raise AssertionError(f"{message_id}'s {policy_id} never became {state}: {states}")


@pytest.mark.parametrize("kind", sorted(set(CRIMINAL_SENDS + CRIMINAL_RECEIVES) - set(CHECKED)))
def test_every_chain_kind_round_trips_through_the_bureau_vocabulary(kind: str) -> None:
    payload = sample_payload(kind, random.Random(kind)).model_dump(mode="json")
    doc = enforcement.VOCABULARY.document({"kind": kind}, payload)
    assert doc["ywlx"] == enforcement.VOCABULARY.code(kind) != kind
    _, back, problems = enforcement.VOCABULARY.split_submission(kind, doc)
    assert problems == [] and back == payload
