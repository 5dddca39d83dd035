"""The retention sweep on the real stack: PostgreSQL (the test's own database, each service as
its own role) and S3 (a real SeaweedFS server), never a mock of either.

What it proves: a file a young message refers to is never deleted, also when old ones refer to
it too; a file whose every reference expired is deleted from the store and the deletion is
recorded; an upload no message referred to goes after its grace and not before; a dry run
changes nothing; a party downloading a deleted file gets 410 naming the rule; and a submission
racing the sweep never ends up referring to a file that is gone. Time is injected (the sweep's
``now``, ``CASEBUS_CLOCK`` for the command), never slept through.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from adapterkit import adapters_in_process
from buskit import signed_ack
from s3kit import S3Server, seaweedfs

from adapters import enforcement, regulators
from adapters.regulators.testing import clue_handover
from bus.attachments import (
    AttachmentStore,
    PostgresAttachmentStore,
    RetentionPolicy,
    S3AttachmentStore,
    StoredAttachment,
    SweepReport,
    attachment_uri,
    check_submission,
    deletions,
    record_references,
    record_upload,
    sweep_attachments,
)
from bus.errors import OutsideTransactionError
from bus.models import Attachment, Envelope
from bus.party import Party, make_party
from bus.settings import Settings

# The S3 server's fixture may wait minutes for its first build (tests/s3kit.py): the time limit
# counts the test itself only.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(func_only=True)]

PLANNING = "ygh.regulator.planning"
BUREAU = "ygh.enforcement.bureau"
MARKET = "ygh.regulator.market"
CASE = "阳城执〔2026〕保存0001号"
POLICY = RetentionPolicy.model_validate(
    {
        "version": 1,
        "default": {"days": 100},
        "unreferenced_upload_grace": {"days": 30},
        "kinds": {"criminal.transfer": {"days": 3650}, "clue.handover": {"days": 365}},
    }
)
DAY = timedelta(days=1)


def blob(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def stream(data: bytes) -> AsyncIterator[bytes]:
    for i in range(0, len(data), 4096):
        yield data[i : i + 4096]


def now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with seaweedfs(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server


@dataclass
class Kit:
    """The owner's pool (the sweep's), a store the sweep may delete from, the adapters' pool."""

    pool: asyncpg.Pool
    store: AttachmentStore
    adapter_pool: asyncpg.Pool
    keys: Path
    in_postgres: bool
    party: Party | None = None

    async def upload(self, data: bytes, agency: str = PLANNING) -> str:
        stored = await self.store.put(stream(data), media_type="application/pdf", max_bytes=1 << 22)
        await record_upload(self.adapter_pool, stored.attachment.sha256, agency, store=self.store)
        return stored.attachment.sha256

    def envelope(self, data: bytes, kind: str, sent_at: datetime) -> Envelope:
        """A message of ``kind`` sent at ``sent_at`` carrying ``data`` (what the ledger reads)."""
        if self.party is None:
            self.party = make_party(PLANNING, self.keys)
        party = self.party
        env = signed_ack(party, recipients=[BUREAU], case_id=CASE)
        a = Attachment(
            name="巡查记录.pdf",
            media_type="application/pdf",
            size_bytes=len(data),
            sha256=sha(data),
            uri=attachment_uri(sha(data)),
        )
        return env.model_copy(update={"attachments": [a], "kind": kind, "sent_at": sent_at})

    async def refer(self, data: bytes, kind: str, sent_at: datetime) -> Envelope:
        """``kind`` sent at ``sent_at`` referred to ``data``: the sender's and the recipient's
        references, as their adapters record them."""
        env = self.envelope(data, kind, sent_at)
        await record_references(self.adapter_pool, env, PLANNING, "sender")
        await record_references(self.adapter_pool, env, BUREAU, "recipient")
        return env

    async def sweep(self, at: datetime, *, dry_run: bool = False) -> SweepReport:
        return await sweep_attachments(
            self.pool, self.store, POLICY, now=at, operator="pytest", dry_run=dry_run
        )

    async def uploaded_days_ago(self, sha256: str, days: int) -> None:
        """The file was last uploaded ``days`` ago (the owner rewrites history, for the test)."""
        await self.pool.execute(
            "UPDATE attachment_files SET last_uploaded_at = now() - $2::int * interval '1 day'"
            " WHERE sha256 = $1",
            bytes.fromhex(sha256),
            days,
        )

    async def state(self, sha256: str) -> str:
        return str(
            await self.pool.fetchval(
                "SELECT state FROM attachment_files WHERE sha256 = $1", bytes.fromhex(sha256)
            )
        )


@pytest.fixture(params=["postgres", "s3"])
async def kit(
    request: pytest.FixtureRequest, settings: Settings, tmp_path: Path
) -> AsyncIterator[Kit]:
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=4)
    adapter_pool = await asyncpg.create_pool(
        settings.for_service("adapter").database_url, min_size=1, max_size=4
    )
    store: AttachmentStore
    if request.param == "s3":
        server: S3Server = request.getfixturevalue("s3_server")
        s3 = S3AttachmentStore(
            endpoint_url=server.endpoint_url,
            bucket="casebus-retention",
            access_key=server.access_key,
            secret_key=server.secret_key,
            prefix=f"{uuid.uuid4().hex}/",
        )
        await s3.ensure_bucket()
        store = s3
    else:
        store = PostgresAttachmentStore(lambda: pool, chunk_bytes=4096)
    try:
        yield Kit(pool, store, adapter_pool, tmp_path / "keys", request.param == "postgres")
    finally:
        await store.aclose()
        await adapter_pool.close()
        await pool.close()


async def test_a_file_a_young_message_refers_to_is_never_deleted_even_when_old_ones_do(
    kit: Kit,
) -> None:
    data = blob(10_000, 1)
    digest = await kit.upload(data)
    t = now()
    await kit.refer(data, "clue.handover", t - 400 * DAY)  # expired long ago
    await kit.refer(data, "opinion.request", t - 200 * DAY)  # the default: expired too
    young = await kit.refer(data, "criminal.transfer", t - 10 * DAY)
    for at in (t + 31 * DAY, t + 1000 * DAY, t + 3639 * DAY):
        report = await kit.sweep(at)
        assert report.deleted == [] and report.busy == []
    assert await kit.store.stat(digest) is not None
    # The moment the young message's retention runs out, and not before, the file goes.
    report = await kit.sweep(t + 3641 * DAY)
    assert [s.sha256 for s in report.deleted] == [digest]
    v = report.deleted[0].verdict
    assert (v.rule, v.retention_days, v.references) == ("kind_retention", 3650, 3)
    assert v.message is not None and v.message.message_id == str(young.message_id)


async def test_a_file_whose_every_reference_expired_is_deleted_and_the_deletion_recorded(
    kit: Kit, settings: Settings
) -> None:
    data, other = blob(9_000, 2), blob(3_000, 3)
    digest = await kit.upload(data)
    kept = await kit.upload(other)
    for uploaded in (digest, kept):
        await kit.uploaded_days_ago(uploaded, 400)
    t = now()
    last = await kit.refer(data, "clue.handover", t - 366 * DAY)
    await kit.refer(data, "opinion.request", t - 150 * DAY)
    await kit.refer(other, "clue.handover", t - 10 * DAY)
    report = await kit.sweep(t)
    assert [s.sha256 for s in report.deleted] == [digest]
    assert report.deleted[0].stored == StoredAttachment(digest, len(data), "application/pdf")
    assert await kit.store.stat(digest) is None
    assert await kit.store.stat(kept) is not None
    assert await kit.state(digest) == "deleted" and await kit.state(kept) == "stored"
    if kit.in_postgres:
        blobs = await kit.pool.fetchval("SELECT count(*) FROM attachment_blobs")
        chunks = await kit.pool.fetchval("SELECT count(*) FROM attachment_chunks")
        assert (blobs, chunks) == (1, 1)  # only the kept file's
    async with kit.pool.acquire() as conn:
        [d] = await deletions(conn, digest)
    assert (d.sha256, d.size_bytes, d.media_type, d.operator) == (
        digest,
        len(data),
        "application/pdf",
        "pytest",
    )
    assert d.verdict.rule == "kind_retention" and d.verdict.retention_days == 365
    assert d.verdict.message is not None
    assert d.verdict.message.message_id == str(last.message_id)
    assert d.verdict.message.kind == "clue.handover"
    assert d.verdict.newest_message_at == t - 150 * DAY
    assert d.verdict.expires_at == t - DAY and d.as_of == t
    # A second sweep finds nothing more to do.
    assert (await kit.sweep(t)).deleted == []
    # The record is append-only, even for the owner; the procuratorate reads it.
    for sql in ("DELETE FROM attachment_deletions", "UPDATE attachment_deletions SET rule = ''"):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await kit.pool.execute(sql)
    ro = await asyncpg.connect(settings.for_service("procuratorate").database_url)
    try:
        row = await ro.fetchrow("SELECT rule, retention_days, operator FROM attachment_deletions")
        assert row is not None and tuple(row) == ("kind_retention", 365, "pytest")
    finally:
        await ro.close()


async def test_an_upload_no_message_refers_to_goes_after_its_grace_and_not_before(
    kit: Kit,
) -> None:
    digest = await kit.upload(blob(5_000, 4))
    t = now()
    assert (await kit.sweep(t + 29 * DAY)).deleted == []
    assert await kit.store.stat(digest) is not None
    report = await kit.sweep(t + 31 * DAY)
    assert [(s.sha256, s.verdict.rule) for s in report.deleted] == [(digest, "upload_grace")]
    assert await kit.store.stat(digest) is None


async def test_a_dry_run_lists_what_it_would_delete_and_deletes_nothing(kit: Kit) -> None:
    data = blob(7_000, 5)
    digest = await kit.upload(data)
    await kit.upload(blob(100, 6))  # within its grace at the dry run's time? no: both due
    t = now()
    await kit.refer(data, "clue.handover", t - 400 * DAY)
    report = await kit.sweep(t + 31 * DAY, dry_run=True)
    assert report.dry_run and len(report.deleted) == 2
    assert digest in {s.sha256 for s in report.deleted}
    assert all(s.deletion is None and s.stored is not None for s in report.deleted)
    assert await kit.store.stat(digest) is not None and await kit.state(digest) == "stored"
    async with kit.pool.acquire() as conn:
        assert await deletions(conn) == []
    # ... and the real sweep then deletes exactly what the dry run listed.
    real = await kit.sweep(t + 31 * DAY)
    assert {s.sha256 for s in real.deleted} == {s.sha256 for s in report.deleted}


def test_the_sweep_command_lists_on_a_dry_run_and_deletes_recording_who(
    settings: Settings, cli_env: dict[str, str], casebus_exe: Path
) -> None:
    async def prepare() -> str:
        pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
        try:
            store = PostgresAttachmentStore(lambda: pool)
            put = await store.put(stream(b"%PDF old"), media_type="application/pdf", max_bytes=99)
            await record_upload(pool, put.attachment.sha256, PLANNING)
            return put.attachment.sha256
        finally:
            await pool.close()

    digest = asyncio.run(prepare())
    # The command's time is CASEBUS_CLOCK's: here 31 days on, past the upload's grace.
    later = (now() + 31 * DAY).isoformat()
    env = cli_env | {"CASEBUS_CLOCK": f"accelerated:{later}:1"}

    def casebus(*args: str) -> str:
        done = subprocess.run(
            [str(casebus_exe), "attachments", "sweep", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    dry = casebus("--dry-run")
    assert f"would delete {digest} (8 bytes): the 30-day grace" in dry
    assert "would delete 1 file(s), 8 bytes" in dry and "dry run: nothing changed" in dry
    out = casebus("--by", "值班员 Li")
    assert f"deleted {digest} (8 bytes)" in out and "deleted 1 file(s)" in out

    async def recorded() -> list[tuple[str, str]]:
        conn = await asyncpg.connect(settings.database_url)
        try:
            return [(d.sha256, d.operator) for d in await deletions(conn)]
        finally:
            await conn.close()

    assert asyncio.run(recorded()) == [(digest, "值班员 Li")]


class PausingStore:
    """A real store whose deletions wait until released: holds the sweep inside its
    transaction, at the worst moment for a concurrent submission."""

    def __init__(self, inner: AttachmentStore) -> None:
        self.inner = inner
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def delete(self, sha256: str) -> StoredAttachment | None:
        self.entered.set()
        await self.release.wait()
        return await self.inner.delete(sha256)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def submit_in_transaction(kit: Kit, env: Envelope) -> list[str]:
    """What an adapter does with a submission's files: check them and record the sender's
    references in one transaction; the rules of the problems found (then nothing recorded)."""
    async with kit.adapter_pool.acquire() as conn, conn.transaction():
        problems = await check_submission(conn, kit.store, PLANNING, env)
        if not problems:
            await record_references(conn, env, PLANNING, "sender")
    return [p.rule for p in problems]


async def test_a_submission_during_a_deletion_waits_and_is_refused_never_referring_to_it(
    kit: Kit,
) -> None:
    data = blob(4_000, 7)
    digest = await kit.upload(data)
    paused = PausingStore(kit.store)
    t = now()
    sweep = asyncio.create_task(
        sweep_attachments(kit.pool, paused, POLICY, now=t + 31 * DAY, operator="pytest")
    )
    try:
        await asyncio.wait_for(paused.entered.wait(), 10)
        submission = asyncio.create_task(
            submit_in_transaction(kit, kit.envelope(data, "clue.handover", t))
        )
        await asyncio.sleep(0.5)
        waited = not submission.done()  # waiting for the sweep's lock on the file
    finally:
        paused.release.set()  # whatever happened: the sweep must not hold its connection
    report = await asyncio.wait_for(sweep, 10)
    assert waited
    assert [s.sha256 for s in report.deleted] == [digest]
    assert await asyncio.wait_for(submission, 10) == ["attachment_deleted"]
    assert await kit.pool.fetchval("SELECT count(*) FROM attachment_refs") == 0
    assert await kit.store.stat(digest) is None


async def test_a_file_a_submission_is_referring_to_is_left_and_then_kept(kit: Kit) -> None:
    data = blob(4_000, 8)
    digest = await kit.upload(data)
    t = now()
    env = kit.envelope(data, "clue.handover", t + 31 * DAY)
    async with kit.adapter_pool.acquire() as conn, conn.transaction():
        assert await check_submission(conn, kit.store, PLANNING, env) == []
        # The sweep runs while the submission holds the file: it does not wait, nor delete.
        report = await kit.sweep(t + 31 * DAY)
        assert report.deleted == [] and report.busy == [digest]
        await record_references(conn, env, PLANNING, "sender")
    # Committed: the young reference keeps the file from now on.
    report = await kit.sweep(t + 31 * DAY)
    assert report.deleted == [] and report.busy == []
    assert await kit.store.stat(digest) is not None


async def test_checking_a_submission_outside_its_transaction_is_refused(kit: Kit) -> None:
    data = blob(100, 9)
    await kit.upload(data)
    async with kit.adapter_pool.acquire() as conn:
        with pytest.raises(OutsideTransactionError):
            await check_submission(conn, kit.store, PLANNING, kit.envelope(data, "bus.ack", now()))


# -- through the adapters' HTTP APIs ------------------------------------------------------------


@dataclass
class Api:
    pool: asyncpg.Pool
    clients: dict[str, httpx.AsyncClient]
    tokens: dict[str, str]

    def headers(self, agency: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[agency]}"}

    async def upload(self, agency: str, data: bytes) -> httpx.Response:
        h = self.headers(agency) | {"Content-Type": "application/pdf"}
        return await self.clients[agency].post("/v1/attachments", content=data, headers=h)

    async def download(self, agency: str, sha256: str) -> httpx.Response:
        url = f"/v1/attachments/{sha256}"
        return await self.clients[agency].get(url, headers=self.headers(agency))

    async def submit_clue(self, data: bytes, fj: dict[str, Any]) -> httpx.Response:
        name = "巡查记录.pdf"
        doc = clue_handover(
            ajbh=CASE, xsbh=f"X-{uuid.uuid4().hex[:6]}", jsdw=[BUREAU], records={name: data}
        ) | {"fj": [{"mc": name, **fj}]}
        return await self.clients[PLANNING].post(
            "/v1/submissions", json=doc, headers=self.headers(PLANNING)
        )


@pytest.fixture
async def api(settings: Settings, tmp_path: Path) -> AsyncIterator[Api]:
    """The regulators' and the enforcement adapters (no Kafka parts), each as its own role."""
    kinds = {
        "regulators": (regulators, (PLANNING, MARKET)),
        "enforcement": (enforcement, (BUREAU,)),
    }
    async with adapters_in_process(settings, tmp_path, kinds) as running:
        yield Api(running.pool, running.clients, running.tokens)


async def owner_sweep(api: Api, at: datetime) -> SweepReport:
    store = PostgresAttachmentStore(lambda: api.pool)
    return await sweep_attachments(api.pool, store, POLICY, now=at, operator="pytest")


async def test_a_party_downloading_a_deleted_file_gets_410_naming_the_retention(
    api: Api,
) -> None:
    data = blob(6_000, 10)
    up = await api.upload(PLANNING, data)
    assert up.status_code == 201, up.text
    sent = await api.submit_clue(data, up.json()["fj"])
    assert sent.status_code == 202, sent.text
    assert (await api.download(PLANNING, sha(data))).status_code == 200
    report = await owner_sweep(api, now() + 366 * DAY)
    assert [s.sha256 for s in report.deleted] == [sha(data)]

    gone = await api.download(PLANNING, sha(data))
    assert gone.status_code == 410, gone.text
    body = gone.json()
    [problem] = body["problems"]
    assert problem["rule"] == "attachment_retention_expired"
    assert "365-day retention of clue.handover" in problem["message"]
    assert body["retention"]["rule"] == "kind_retention"
    assert body["retention"]["kind"] == "clue.handover"
    assert body["retention"]["retention_days"] == 365
    # A non-party learns nothing: 403 as before.
    assert (await api.download(MARKET, sha(data))).status_code == 403

    # Referring to it again is refused, naming the retention; uploading it again brings it back.
    again = await api.submit_clue(data, up.json()["fj"])
    assert again.status_code == 422, again.text
    assert [p["rule"] for p in again.json()["problems"]] == ["attachment_deleted"]
    assert "365-day retention of clue.handover" in again.json()["problems"][0]["message"]
    back = await api.upload(PLANNING, data)
    assert back.status_code == 201, back.text
    assert (await api.submit_clue(data, back.json()["fj"])).status_code == 202
    got = await api.download(PLANNING, sha(data))
    assert got.status_code == 200 and got.content == data


async def test_a_submission_racing_the_sweep_never_refers_to_a_missing_file(api: Api) -> None:
    store = PostgresAttachmentStore(lambda: api.pool)
    outcomes: list[str] = []
    rng = random.Random(11)
    for i in range(12):
        data = blob(2_000 + i, 100 + i)
        up = await api.upload(PLANNING, data)
        assert up.status_code == 201, up.text
        fj = up.json()["fj"]
        # Uploaded 60 days ago: past its grace, so due unless a message refers to it first.
        await api.pool.execute(
            "UPDATE attachment_files SET last_uploaded_at = now() - interval '60 days'"
            " WHERE sha256 = $1",
            hashlib.sha256(data).digest(),
        )

        async def submit(data: bytes = data, fj: dict[str, Any] = fj) -> httpx.Response:
            await asyncio.sleep(rng.uniform(0, 0.03))
            return await api.submit_clue(data, fj)

        async def sweep() -> SweepReport:
            await asyncio.sleep(rng.uniform(0, 0.03))
            return await owner_sweep(api, now())

        response, report = await asyncio.gather(submit(), sweep())
        deleted = sha(data) in {s.sha256 for s in report.deleted}
        stored = await store.stat(sha(data)) is not None
        if response.status_code == 202:
            assert stored and not deleted, i
            outcomes.append("referred")
        else:
            assert response.status_code == 422, response.text
            rules = [p["rule"] for p in response.json()["problems"]]
            assert rules == ["attachment_deleted"] and deleted and not stored, (i, rules)
            outcomes.append("deleted first")
    # The invariant over everything the race left: every referred-to file is there.
    referred = await api.pool.fetch("SELECT DISTINCT sha256 FROM attachment_refs")
    assert len(referred) == outcomes.count("referred")
    for row in referred:
        assert await store.stat(bytes(row["sha256"]).hex()) is not None
