"""``POST /v1/attachments`` and ``GET /v1/attachments/{sha256}`` on the real adapter apps over
the real database: references, idempotence, refused hashes and sizes, ranges, who may download,
and the audit of every fetch."""

from __future__ import annotations

import base64
import hashlib
import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from adapterkit import adapters_in_process
from buskit import signed_ack
from keykit import ALGORITHM
from s3kit import seaweedfs, weed_binary

from adapters import enforcement, police, procuratorate, regulators
from adapters._framework.auth import create_token
from adapters._framework.config import AdapterConfig, AgencyEndpoint
from adapters.regulators.testing import attachment, clue_handover
from bus.agencies import load_registry
from bus.agency_db import sync_agencies
from bus.attachments import S3AttachmentStore, attachment_uri, delivery_role, record_references
from bus.models import Attachment
from bus.party import make_party
from bus.provision import ensure_registered
from bus.settings import Settings
from bus.signing import write_keypair

# The S3 server's fixture may wait minutes for its first build (tests/s3kit.py): the time limit
# counts the test itself only.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(func_only=True)]

BUREAU = "ygh.enforcement.bureau"
POLICE = "ygh.police.bureau"
PROCURATORATE = "ygh.procuratorate"
PLANNING = "ygh.regulator.planning"
MARKET = "ygh.regulator.market"
CASE = "阳城执〔2026〕附件0001号"
MAX_BYTES = 64 * 1024


@dataclass
class Adapters:
    pool: asyncpg.Pool
    clients: dict[str, httpx.AsyncClient]
    """Each agency's own adapter's API."""
    tokens: dict[str, str]

    def headers(self, agency: str, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[agency]}", **extra}

    async def upload(self, agency: str, data: bytes, **headers: str) -> httpx.Response:
        h = self.headers(agency, **{"Content-Type": "application/pdf"} | headers)
        return await self.clients[agency].post("/v1/attachments", content=data, headers=h)

    async def download(self, agency: str, sha256: str, **headers: str) -> httpx.Response:
        url = f"/v1/attachments/{sha256}"
        return await self.clients[agency].get(url, headers=self.headers(agency, **headers))


@pytest.fixture
async def adapters(settings: Settings, tmp_path: Path) -> AsyncIterator[Adapters]:
    """The enforcement, police, procuratorate and regulators adapters (no Kafka parts), each
    connecting as its own role, with a small attachment limit."""
    small = settings.model_copy(update={"attachment_max_bytes": MAX_BYTES})
    kinds = {
        "enforcement": (enforcement, (BUREAU,)),
        "police": (police, (POLICE,)),
        "procuratorate": (procuratorate, (PROCURATORATE,)),
        "regulators": (regulators, (PLANNING, MARKET)),
    }
    async with adapters_in_process(small, tmp_path, kinds) as running:
        yield Adapters(running.pool, running.clients, running.tokens)


def blob(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def digest_header(data: bytes) -> str:
    return f"sha-256=:{base64.b64encode(hashlib.sha256(data).digest()).decode()}:"


def rules(r: httpx.Response) -> list[str]:
    return [p["rule"] for p in r.json()["problems"]]


async def stored_count(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM attachment_blobs"))


async def send_transfer(a: Adapters, tmp_path: Path, data: bytes) -> uuid.UUID:
    """What the adapters record of a message BUREAU sent POLICE with ``data`` attached, the
    procuratorate getting its copy: the sender's references at submit, the others' on delivery."""
    party = make_party(BUREAU, tmp_path / "parties")
    env = signed_ack(party, recipients=[POLICE], case_id=CASE)
    attachment = Attachment(
        name="移送书.pdf",
        media_type="application/pdf",
        size_bytes=len(data),
        sha256=sha(data),
        uri=attachment_uri(sha(data)),
    )
    env = env.model_copy(update={"attachments": [attachment]})
    for agency in (BUREAU, POLICE, PROCURATORATE):
        await record_references(a.pool, env, agency, delivery_role(env, agency))
    return env.message_id


async def fetches(pool: asyncpg.Pool, data: bytes) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        "SELECT agency_id, case_ids, outcome, byte_range FROM attachment_fetches"
        " WHERE sha256 = $1 ORDER BY id",
        hashlib.sha256(data).digest(),
    )
    return [dict(r) for r in rows]


async def test_an_upload_answers_the_reference_and_the_same_bytes_again_the_same(
    adapters: Adapters,
) -> None:
    data = blob(20_000)
    first = await adapters.upload(BUREAU, data)
    assert first.status_code == 201, first.text
    ref = first.json()
    assert ref == {
        "sha256": sha(data),
        "sm3": hashlib.new("sm3", data).hexdigest(),
        "size_bytes": len(data),
        "media_type": "application/pdf",
        "uri": f"casebus://attachments/sha256/{sha(data)}",
        "fj": {"lx": "application/pdf", "dx": len(data), "hash": sha(data), "dz": ref["uri"]},
    }
    assert first.headers["location"] == f"/v1/attachments/{sha(data)}"
    again = await adapters.upload(POLICE, data, **{"Repr-Digest": digest_header(data)})
    assert again.status_code == 200 and again.json() == ref
    assert await stored_count(adapters.pool) == 1


async def test_bytes_that_hash_otherwise_than_declared_are_refused_and_not_stored(
    adapters: Adapters,
) -> None:
    data = blob(10_000, seed=1)
    r = await adapters.upload(BUREAU, data, **{"Repr-Digest": digest_header(b"other bytes")})
    assert r.status_code == 422 and rules(r) == ["digest_mismatch"]
    assert sha(data) in r.json()["problems"][0]["message"]
    bad = await adapters.upload(BUREAU, data, **{"Repr-Digest": "sha-256=:nothex:"})
    assert bad.status_code == 400 and rules(bad) == ["invalid_digest"]
    odd = await adapters.upload(BUREAU, data, **{"Content-Type": "not a media type"})
    assert odd.status_code == 422 and rules(odd) == ["invalid_media_type"]
    assert await stored_count(adapters.pool) == 0


async def test_an_upload_over_the_limit_is_refused_declared_or_streamed(
    adapters: Adapters,
) -> None:
    data = blob(MAX_BYTES + 1, seed=2)
    declared = await adapters.upload(BUREAU, data)
    assert declared.status_code == 413 and rules(declared) == ["attachment_too_large"]

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: counted as it streams
        for i in range(0, len(data), 8192):
            yield data[i : i + 8192]

    streamed = await adapters.clients[BUREAU].post(
        "/v1/attachments", content=chunked(), headers=adapters.headers(BUREAU)
    )
    assert streamed.status_code == 413, streamed.text
    assert await stored_count(adapters.pool) == 0
    assert await adapters.pool.fetchval("SELECT count(*) FROM attachment_chunks") == 0


async def test_the_parties_download_through_their_own_adapters_with_ranges(
    adapters: Adapters, tmp_path: Path
) -> None:
    data = blob(50_000, seed=3)
    assert (await adapters.upload(BUREAU, data)).status_code == 201
    await send_transfer(adapters, tmp_path, data)
    for agency in (BUREAU, POLICE, PROCURATORATE):
        r = await adapters.download(agency, sha(data))
        assert r.status_code == 200, (agency, r.text)
        assert r.content == data
        assert r.headers["content-type"] == "application/pdf"
        assert r.headers["repr-digest"] == digest_header(data)
        assert r.headers["etag"] == f'"{sha(data)}"'
        assert r.headers["accept-ranges"] == "bytes"
    part = await adapters.download(POLICE, sha(data), Range="bytes=1000-1999")
    assert part.status_code == 206 and part.content == data[1000:2000]
    assert part.headers["content-range"] == f"bytes 1000-1999/{len(data)}"
    tail = await adapters.download(POLICE, sha(data), Range="bytes=-10")
    assert tail.status_code == 206 and tail.content == data[-10:]
    beyond = await adapters.download(POLICE, sha(data), Range="bytes=60000-")
    assert beyond.status_code == 416 and beyond.headers["content-range"] == "bytes */50000"

    audited = await fetches(adapters.pool, data)
    assert [(f["agency_id"], f["outcome"]) for f in audited] == [
        (BUREAU, "allowed"),
        (POLICE, "allowed"),
        (PROCURATORATE, "allowed"),
        (POLICE, "allowed"),
        (POLICE, "allowed"),
        (POLICE, "allowed"),
    ]
    assert all(f["case_ids"] == [CASE] for f in audited)
    assert [f["byte_range"] for f in audited[3:]] == [
        "bytes=1000-1999",
        "bytes=-10",
        "bytes=60000-",
    ]


async def test_a_non_party_is_refused_alike_for_real_and_unknown_files_and_audited(
    adapters: Adapters, tmp_path: Path
) -> None:
    data = blob(5_000, seed=4)
    assert (await adapters.upload(BUREAU, data)).status_code == 201
    # Uploading the same bytes does not make the planning bureau a party.
    assert (await adapters.upload(PLANNING, data)).status_code == 200
    await send_transfer(adapters, tmp_path, data)
    unknown = sha(b"no such file")
    for agency in (MARKET, PLANNING):
        known = await adapters.download(agency, sha(data))
        never = await adapters.download(agency, unknown)
        assert known.status_code == never.status_code == 403
        assert known.json() == never.json() and rules(known) == ["not_a_party"]
        assert data not in known.content
    refused = await fetches(adapters.pool, data)
    assert [(f["agency_id"], f["outcome"], f["case_ids"]) for f in refused] == [
        (MARKET, "refused", [CASE]),
        (PLANNING, "refused", [CASE]),
    ]
    # A party's token at another agency's adapter is refused at the door, and not served.
    r = await adapters.clients[BUREAU].get(
        f"/v1/attachments/{sha(data)}", headers=adapters.headers(POLICE)
    )
    assert r.status_code == 403 and rules(r) == ["agency_not_served"]
    # No token: 401, never the file.
    r = await adapters.clients[POLICE].get(f"/v1/attachments/{sha(data)}")
    assert r.status_code == 401 and rules(r) == ["missing_token"]


async def test_the_audit_of_fetches_cannot_be_rewritten_by_an_adapter(
    adapters: Adapters, tmp_path: Path, settings: Settings
) -> None:
    data = blob(1_000, seed=5)
    await adapters.upload(BUREAU, data)
    await adapters.download(MARKET, sha(data))
    own = await asyncpg.connect(settings.for_service("adapter").database_url)
    try:
        for sql in ("DELETE FROM attachment_fetches", "UPDATE attachment_fetches SET outcome = ''"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await own.execute(sql)
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await own.execute("DELETE FROM attachment_chunks")
    finally:
        await own.close()
    # Not even the owner may rewrite who fetched what.
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await adapters.pool.execute("DELETE FROM attachment_fetches")


def clue(records: dict[str, bytes], fj: list[dict[str, Any]]) -> dict[str, Any]:
    """线索移交 from PLANNING to BUREAU whose ``fj`` is ``fj``."""
    doc = clue_handover(ajbh=CASE, xsbh=f"X-{uuid.uuid4().hex[:6]}", jsdw=[BUREAU], records=records)
    return doc | {"fj": fj}


async def submit(a: Adapters, agency: str, doc: dict[str, Any]) -> httpx.Response:
    return await a.clients[agency].post("/v1/submissions", json=doc, headers=a.headers(agency))


async def test_a_submission_refers_only_to_files_its_sender_uploaded_whole(
    adapters: Adapters,
) -> None:
    data = {"巡查记录.pdf": blob(3_000, seed=10), "现场照片.jpg": blob(4_000, seed=11)}
    ref = (await adapters.upload(PLANNING, data["巡查记录.pdf"])).json()["fj"]
    # The photo was uploaded by another agency only: knowing its hash is not holding it.
    photo = (await adapters.upload(BUREAU, data["现场照片.jpg"])).json()["fj"]
    never = blob(100, seed=12)
    not_uploaded = {"hash": sha(never), "dx": 100, "dz": attachment_uri(sha(never))}

    name = "巡查记录.pdf"
    cases = [
        ([{"mc": name, **ref, "dx": ref["dx"] + 1}], "fj[0].dx", "attachment_size_mismatch"),
        ([{"mc": name, **ref, "dz": photo["dz"]}], "fj[0].dz", "attachment_uri_mismatch"),
        ([{"mc": "现场照片.jpg", **photo}], "fj[0].hash", "attachment_not_uploaded"),
        (
            [{"mc": "x.pdf", "lx": "application/pdf", **not_uploaded}],
            "fj[0].hash",
            "attachment_not_uploaded",
        ),
    ]
    for fj, field, rule in cases:
        records = {f["mc"]: data.get(f["mc"], never) for f in fj}
        doc = clue(records, fj)
        doc["jgjl"] = [{"bt": f["mc"], "fjmc": f["mc"], "fjhash": f["hash"]} for f in fj]
        r = await submit(adapters, PLANNING, doc)
        assert r.status_code == 422, r.text
        assert [(p["field"], p["rule"]) for p in r.json()["problems"]] == [(field, rule)]
    assert await adapters.pool.fetchval("SELECT count(*) FROM outbox") == 0

    fj = [{"mc": "巡查记录.pdf", **ref}]
    r = await submit(adapters, PLANNING, clue({"巡查记录.pdf": data["巡查记录.pdf"]}, fj))
    assert r.status_code == 202, r.text
    # Once its message carries the file, the sender may download it; still no one else.
    got = await adapters.download(PLANNING, ref["hash"])
    assert got.status_code == 200 and got.content == data["巡查记录.pdf"]
    assert (await adapters.download(MARKET, ref["hash"])).status_code == 403
    # A department's own file server is its own business, as before.
    external = clue(data, [attachment(n, b) for n, b in data.items()])
    assert (await submit(adapters, PLANNING, external)).status_code == 202


@pytest.fixture
def weed() -> Path:
    """The S3 server's binary, built (once, minutes) before the test's time starts."""
    return weed_binary()


async def test_an_adapter_keeps_case_files_in_s3_when_told(
    settings: Settings, tmp_path: Path, weed: Path
) -> None:
    data = blob(6 * 1024 * 1024 + 5, seed=20)  # two multipart parts
    with seaweedfs(tmp_path / "seaweedfs") as server:
        secret = tmp_path / "s3-secret"
        secret.write_text(server.secret_key)
        secret.chmod(0o600)
        s3 = settings.model_copy(
            update={
                "attachment_store": "s3",
                "attachment_s3_endpoint": server.endpoint_url,
                "attachment_s3_bucket": "casebus-adapter",
                "attachment_s3_access_key": server.access_key,
                "attachment_s3_secret_key_file": secret,
            }
        )
        config = AdapterConfig(
            adapter_kind="enforcement",
            agencies=(
                AgencyEndpoint(
                    agency_id=BUREAU,
                    key_file=write_keypair(
                        BUREAU, tmp_path / "keys", algorithm=ALGORITHM
                    ).private_key,
                ),
            ),
        )
        service = enforcement.build_service(s3, config, run_relay=False, run_readers=False)
        assert isinstance(service.attachments, S3AttachmentStore)
        await service.attachments.ensure_bucket()
        pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
        try:
            async with pool.acquire() as conn:
                await sync_agencies(conn, load_registry(settings.agencies_file))
                await ensure_registered(conn, registry=None, keys=service.own_keys)
            token = await create_token(pool, BUREAU)
            await service.start()
            app = enforcement.create_app(service, manage_service=False)
            client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://e")
            a = Adapters(pool, {BUREAU: client}, {BUREAU: token})
            r = await a.upload(BUREAU, data)
            assert r.status_code == 201, r.text
            assert await stored_count(pool) == 0  # not in PostgreSQL: in the bucket
            await send_transfer(a, tmp_path, data)
            got = await a.download(BUREAU, sha(data), Range="bytes=6291456-")
            assert got.status_code == 206 and got.content == data[6291456:]
            await client.aclose()
        finally:
            await service.stop()
            await pool.close()
