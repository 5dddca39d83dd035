"""Issue #19 through a real adapter, PostgreSQL and Kafka with ``CASEBUS_CRYPTO_PROFILE=sm2``:
an upload answers its SM3 digest, a submission that leaves ``fj[i].sm3`` out goes onto Kafka as
an envelope v2 carrying each file's SM3 under the signature, which the router delivers as it
is, a wrong ``sm3`` is refused naming the field, and a download carries the digest in
``X-Casebus-SM3``."""

from __future__ import annotations

import hashlib
import random
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from adapterkit import BUREAU, case_no
from buskit import Bus

from adapters import enforcement
from adapters._framework.fake_department import RunningAdapter, running_adapter
from bus.codec import HEADER_SIZE
from bus.signing import InMemoryKeyStore, PublicKeyRecord, verify_envelope
from bus.sim import documents as docs

pytestmark = pytest.mark.integration

POLICE = "ygh.police.bureau"


def sm3(data: bytes) -> str:
    return hashlib.new("sm3", data).hexdigest()


async def upload(adapter: RunningAdapter, name: str, data: bytes) -> dict[str, Any]:
    """Upload ``data`` as BUREAU; the ``fj`` entry to submit, and the answer's sm3 checked."""
    dept = adapter.department(BUREAU)
    r = await dept.client.post(
        "/v1/attachments", content=data, headers=dept.headers | {"Content-Type": "application/pdf"}
    )
    assert r.status_code == 201, r.text
    answer = r.json()
    assert answer["sm3"] == sm3(data) and answer["sha256"] == hashlib.sha256(data).hexdigest()
    return {"mc": name, **answer["fj"]}


def transfer(ajbh: str, fj: list[dict[str, Any]]) -> dict[str, Any]:
    """涉嫌犯罪案件移送 whose art. 6 manifest lists the uploaded files."""
    ysshh = f"阳城执移〔2026〕{uuid.uuid4().hex[:6]}号"
    manifest = [
        {"wslx": kind, "bt": kind, "fjmc": f["mc"], "fjhash": f["hash"]}
        for kind, f in zip(docs.ALL_DOCUMENTS, fj, strict=True)
    ]
    doc = docs.transfer(ajbh=ajbh, ysshh=ysshh, jsdw=[POLICE], now=datetime.now(UTC))
    return doc | {"fj": fj, "yscl": manifest}


async def test_sm2_profile_submissions_carry_and_are_checked_on_sm3(
    bus: Bus, tmp_path: Path
) -> None:
    sm2_settings = bus.settings.model_copy(update={"crypto_profile": "sm2"})
    keys = tmp_path / "keys"
    files = {
        f"{kind}.pdf": random.Random(kind).randbytes(5_000 + 1_000 * i)
        for i, kind in enumerate(docs.ALL_DOCUMENTS)
    }
    async with (
        bus.router(),
        running_adapter(
            enforcement.build_service, sm2_settings, key_dir=keys, webhooks={BUREAU: None}
        ) as enf,
    ):
        fj = [await upload(enf, name, data) for name, data in files.items()]
        assert all("sm3" not in entry for entry in fj)  # the department leaves it out

        # A wrong digest is refused, naming the department's field.
        wrong = [dict(entry) for entry in fj]
        wrong[1]["sm3"] = sm3(b"other bytes")
        refused = await enf.department(BUREAU).submit(transfer(case_no(), wrong))
        assert refused.status_code == 422, refused.text
        problems = refused.json()["problems"]
        assert [(p["field"], p["rule"]) for p in problems] == [
            ("fj[1].sm3", "attachment_sm3_mismatch")
        ]
        assert problems[0]["value"] == sm3(b"other bytes")

        # Left out: the adapter fills each file's SM3 in from its upload, then signs.
        ajbh = case_no()
        r = await enf.department(BUREAU).submit(transfer(ajbh, fj))
        assert r.status_code == 202, r.text
        sent = r.json()["message_id"]

        [record] = await bus.read(bus.settings.topic_submit(BUREAU), want=1)
        value = record.value or b""
        # Only the accepted submission reached Kafka, written as envelope v2.
        assert value[:HEADER_SIZE] == bus.codec.index.envelope_version(2).header
        envelope = bus.codec.decode_envelope(value)
        assert str(envelope.message_id) == sent and envelope.case_id == ajbh
        assert [(a.name, a.sm3) for a in envelope.attachments] == [
            (name, sm3(data)) for name, data in files.items()
        ]
        public_pem = (keys / BUREAU / f"{BUREAU}.pub.pem").read_bytes()
        key = PublicKeyRecord.from_pem(
            public_pem, agency_id=BUREAU, valid_from=datetime(2000, 1, 1, tzinfo=UTC)
        )
        store = InMemoryKeyStore([key])
        assert await verify_envelope(envelope, store, value=value) == key
        # The router takes the v2 envelope and delivers the very bytes to the police.
        delivered = await bus.inbox(POLICE, want=1, timeout_s=60)
        assert [r.value for r in delivered] == [value]

        # The sender reads its file back with the SM3 beside SHA-256's Repr-Digest.
        data = next(iter(files.values()))
        dept = enf.department(BUREAU)
        link = f"/v1/attachments/{hashlib.sha256(data).hexdigest()}"
        got = await dept.client.get(link, headers=dept.headers)
        assert got.status_code == 200, got.text
        assert got.content == data and got.headers["x-casebus-sm3"] == sm3(data)
        part = await dept.client.get(link, headers=dept.headers | {"Range": "bytes=0-9"})
        assert part.status_code == 206 and part.headers["x-casebus-sm3"] == sm3(data)


async def test_ed25519_profile_leaves_sm3_out_and_writes_v1(bus: Bus, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    files = {f"{kind}.pdf": f"{kind} 正文".encode() * 50 for kind in docs.ALL_DOCUMENTS}
    async with running_adapter(
        enforcement.build_service, bus.settings, key_dir=keys, webhooks={BUREAU: None}
    ) as enf:
        fj = [await upload(enf, name, data) for name, data in files.items()]
        r = await enf.department(BUREAU).submit(transfer(case_no(), fj))
        assert r.status_code == 202, r.text
        [record] = await bus.read(bus.settings.topic_submit(BUREAU), want=1)
        value = record.value or b""
        assert value[:HEADER_SIZE] == bus.codec.index.envelope.header
        assert all(a.sm3 is None for a in bus.codec.decode_envelope(value).attachments)
