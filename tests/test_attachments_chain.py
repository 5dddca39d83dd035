"""A criminal transfer carrying real case files, end to end through the adapters' HTTP APIs:
the bureau uploads its art. 6 documents, submits the transfer referring to them, the router
delivers it to the police (webhook) with the procuratorate's copy (pull), and both download the
files through their own adapters with their own tokens — the links are in what they received.
An agency that got nothing is refused, and every fetch is on the record."""

from __future__ import annotations

import asyncio
import hashlib
import random
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from adapterkit import BUREAU, case_no
from buskit import Bus

from adapters import enforcement, police, regulators
from adapters._framework.fake_department import RunningAdapter, running_adapter
from adapters.enforcement.testing import FakeBureau
from adapters.police.testing import FakePolice
from adapters.procuratorate.testing import running_procuratorate
from bus.sim import documents as docs

pytestmark = [pytest.mark.integration, pytest.mark.slow]

POLICE = "ygh.police.bureau"
PROCURATORATE = "ygh.procuratorate"
MARKET = "ygh.regulator.market"
DOCUMENTS = docs.ALL_DOCUMENTS


def pdf(name: str, size: int) -> bytes:
    """A document's bytes: a PDF header and ``size`` bytes in all."""
    head = f"%PDF-1.7\n% {name}\n".encode()
    return (head + random.Random(name).randbytes(size))[:size]


async def upload(adapter: RunningAdapter, agency: str, name: str, data: bytes) -> dict[str, Any]:
    """Upload ``data``; the ``fj`` entry to submit, with its name."""
    dept = adapter.department(agency)
    r = await dept.client.post(
        "/v1/attachments",
        content=data,
        headers=dept.headers | {"Content-Type": "application/pdf"},
    )
    assert r.status_code == 201, r.text
    return {"mc": name, **r.json()["fj"]}


def transfer(*, ajbh: str, ysshh: str, fj: list[dict[str, Any]]) -> dict[str, Any]:
    """The simulation's 涉嫌犯罪案件移送, its art. 6 manifest listing the uploaded files."""
    manifest = [
        {"wslx": kind, "bt": kind, "fjmc": f["mc"], "fjhash": f["hash"]}
        for kind, f in zip(DOCUMENTS, fj, strict=True)
    ]
    doc = docs.transfer(ajbh=ajbh, ysshh=ysshh, jsdw=[POLICE], now=datetime.now(UTC))
    return doc | {"fj": fj, "yscl": manifest}


async def pulled(adapter: RunningAdapter, agency: str, code: str) -> dict[str, Any]:
    for _ in range(200):
        items = (await adapter.department(agency).pull(limit=500))["items"]
        found = [i["document"] for i in items if i["document"]["ywlx"] == code]
        if found:
            return found[0]
        await asyncio.sleep(0.2)
    raise AssertionError(f"no {code} for {agency}")


async def fetch(adapter: RunningAdapter, agency: str, link: str, **headers: str) -> Any:
    dept = adapter.department(agency)
    return await dept.client.get(link, headers=dept.headers | headers)


async def test_a_transfer_carries_its_files_to_the_police_and_the_procuratorate(
    bus: Bus, tmp_path: Path
) -> None:
    ajbh = case_no()
    ysshh = f"阳城执移〔2026〕{uuid.uuid4().hex[:6]}号"
    keys = tmp_path / "keys"
    files = {f"{kind}.pdf": pdf(kind, 300_000 + 70_000 * i) for i, kind in enumerate(DOCUMENTS)}
    async with (
        FakeBureau(secret=b"bureau") as bureau,
        FakePolice(secret=b"police") as police_dept,
        bus.router(),
        running_adapter(
            enforcement.build_service,
            bus.settings,
            key_dir=keys,
            webhooks={BUREAU: bureau},
            own_role=True,
        ) as enf,
        running_adapter(
            police.build_service,
            bus.settings,
            key_dir=keys,
            webhooks={POLICE: police_dept},
            own_role=True,
        ) as pol,
        running_adapter(
            regulators.build_service, bus.settings, key_dir=keys, webhooks={MARKET: None}
        ) as reg,
        running_procuratorate(bus.settings, key_dir=keys, webhooks={PROCURATORATE: None}) as proc,
    ):
        fj = [await upload(enf, BUREAU, name, data) for name, data in files.items()]
        r = await enf.department(BUREAU).submit(transfer(ajbh=ajbh, ysshh=ysshh, fj=fj))
        assert r.status_code == 202, r.text
        sent = r.json()["message_id"]

        [got] = await police_dept.wait_for(1, timeout_s=60)
        assert got["xxbh"] == sent and got["ywlx"] == "涉嫌犯罪案件移送"
        copy = await pulled(proc, PROCURATORATE, "涉嫌犯罪案件移送")
        for document, adapter, agency in ((got, pol, POLICE), (copy, proc, PROCURATORATE)):
            assert [f["mc"] for f in document["fj"]] == list(files)
            for entry in document["fj"]:
                data = files[entry["mc"]]
                assert entry["hash"] == hashlib.sha256(data).hexdigest()
                assert entry["xzdz"] == f"/v1/attachments/{entry['hash']}"
                r = await fetch(adapter, agency, entry["xzdz"])
                assert r.status_code == 200, (agency, r.text)
                assert r.content == data and r.headers["content-type"] == "application/pdf"
            head = await fetch(adapter, agency, document["fj"][0]["xzdz"], Range="bytes=0-8")
            assert head.status_code == 206 and head.content == b"%PDF-1.7\n"

        # The market regulator received nothing of this case: refused, at its own adapter.
        link = got["fj"][0]["xzdz"]
        refused = await fetch(reg, MARKET, link)
        assert refused.status_code == 403, refused.text
        # The police's token is good at the police's adapter only.
        elsewhere = await proc.client.get(link, headers=pol.department(POLICE).headers)
        assert elsewhere.status_code == 403, elsewhere.text
        # The bureau, which sent it, reads its own file back through its adapter.
        own = await fetch(enf, BUREAU, link)
        assert own.status_code == 200 and own.content == files[got["fj"][0]["mc"]]

        owner = await asyncpg.connect(bus.settings.database_url)
        try:
            rows = await owner.fetch(
                "SELECT agency_id, outcome, case_ids FROM attachment_fetches"
                " WHERE sha256 = $1 ORDER BY id",
                bytes.fromhex(got["fj"][0]["hash"]),
            )
            refs = await owner.fetch(
                "SELECT agency_id, role FROM attachment_refs WHERE message_id = $1"
                " GROUP BY agency_id, role ORDER BY agency_id",
                uuid.UUID(sent),
            )
        finally:
            await owner.close()
        assert [(r["agency_id"], r["outcome"]) for r in rows] == [
            (POLICE, "allowed"),
            (POLICE, "allowed"),
            (PROCURATORATE, "allowed"),
            (PROCURATORATE, "allowed"),
            (MARKET, "refused"),
            (BUREAU, "allowed"),
        ]
        assert all(r["case_ids"] == [ajbh] for r in rows)
        assert {(r["agency_id"], r["role"]) for r in refs} >= {
            (BUREAU, "sender"),
            (POLICE, "recipient"),
            (PROCURATORATE, "copy"),
        }
