"""The attachment store contract, written once and run against every store behind the port:
the in-memory one, PostgreSQL (on the real database, as the adapters' own login) and S3 (a real
SeaweedFS server the test starts, requests signed with SigV4)."""

from __future__ import annotations

import asyncio
import hashlib
import random
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest
from s3kit import S3Server, seaweedfs

from bus.attachments import (
    AttachmentStore,
    MemoryAttachmentStore,
    PostgresAttachmentStore,
    S3AttachmentStore,
)
from bus.errors import (
    AttachmentNotFoundError,
    AttachmentTooLargeError,
    DigestMismatchError,
    TransportError,
)
from bus.settings import Settings

CHUNK = 4096
"""The PostgreSQL store's chunk size here: small, so ranges cross many chunk boundaries."""


class Cut(Exception):
    """The uploader went away half-way."""


async def stream(data: bytes, piece: int = 1000, *, cut_after: int | None = None) -> Any:
    """``data`` in pieces of ``piece`` bytes, as a request body arrives; with ``cut_after`` the
    stream breaks once that many bytes went through."""
    for i in range(0, len(data), piece):
        if cut_after is not None and i >= cut_after:
            raise Cut
        yield data[i : i + piece]
        await asyncio.sleep(0)


async def read_all(store: AttachmentStore, sha256: str, **kw: Any) -> bytes:
    return b"".join([p async for p in store.read(sha256, **kw)])


def blob(size: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(size)


@dataclass
class Subject:
    """A store under test and, for PostgreSQL, the owner's pool to look at its tables."""

    store: AttachmentStore
    owner: asyncpg.Pool | None = None


@pytest.fixture
def memory_subject() -> Subject:
    return Subject(MemoryAttachmentStore(piece_bytes=CHUNK))


@pytest.fixture
async def postgres_subject(settings: Settings) -> AsyncIterator[Subject]:
    # As the adapters connect when deployed: casebus_adapter may insert and read, no more.
    own = await asyncpg.create_pool(
        settings.for_service("adapter").database_url, min_size=1, max_size=4
    )
    owner = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
    try:
        yield Subject(PostgresAttachmentStore(lambda: own, chunk_bytes=CHUNK), owner)
    finally:
        await owner.close()
        await own.close()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with seaweedfs(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server


@pytest.fixture
async def s3_subject(s3_server: S3Server) -> AsyncIterator[Subject]:
    # One bucket (SeaweedFS gives each its own volumes), a key prefix of each test's own.
    store = S3AttachmentStore(
        endpoint_url=s3_server.endpoint_url,
        bucket="casebus-contract",
        access_key=s3_server.access_key,
        secret_key=s3_server.secret_key,
        prefix=f"{uuid.uuid4().hex}/",
        part_bytes=5 * 1024 * 1024,
        piece_bytes=CHUNK,
    )
    try:
        await store.ensure_bucket()
        yield Subject(store)
    finally:
        await store.aclose()


INTEGRATION = pytest.mark.integration
# The S3 server's fixture may wait minutes for its first build (tests/s3kit.py): the time limit
# counts the test itself only.
pytestmark = pytest.mark.timeout(func_only=True)


@pytest.fixture(
    params=[
        "memory",
        pytest.param("postgres", marks=INTEGRATION),
        pytest.param("s3", marks=INTEGRATION),
    ]
)
def subject(request: pytest.FixtureRequest) -> Subject:
    found: Subject = request.getfixturevalue(f"{request.param}_subject")
    return found


@pytest.fixture
def store(subject: Subject) -> AttachmentStore:
    return subject.store


async def test_put_answers_the_sha256_and_size_computed_while_streaming(
    store: AttachmentStore,
) -> None:
    data = blob(3 * CHUNK + 17)
    stored = await store.put(stream(data), media_type="application/pdf", max_bytes=1 << 20)
    assert stored.created
    a = stored.attachment
    assert (a.sha256, a.size_bytes, a.media_type) == (
        hashlib.sha256(data).hexdigest(),
        len(data),
        "application/pdf",
    )
    assert a.uri == f"casebus://attachments/sha256/{a.sha256}"
    assert await store.stat(a.sha256) == a
    assert await read_all(store, a.sha256) == data


async def test_the_same_bytes_twice_are_stored_once_and_keep_the_first_media_type(
    store: AttachmentStore, subject: Subject
) -> None:
    data = blob(2 * CHUNK + 5, seed=2)
    first = await store.put(stream(data), media_type="application/pdf", max_bytes=1 << 20)
    again = await store.put(stream(data, 333), media_type="image/jpeg", max_bytes=1 << 20)
    assert first.created and not again.created
    assert again.attachment == first.attachment
    if subject.owner is not None:
        assert await subject.owner.fetchval("SELECT count(*) FROM attachment_blobs") == 1
        chunks = await subject.owner.fetchval("SELECT count(*) FROM attachment_chunks")
        assert chunks == 3  # the second upload's chunks went with its rolled-back transaction


async def test_concurrent_uploads_of_the_same_bytes_agree(store: AttachmentStore) -> None:
    data = blob(5 * CHUNK, seed=3)
    results = await asyncio.gather(
        *(store.put(stream(data), media_type="application/pdf", max_bytes=1 << 20) for _ in "abc")
    )
    assert sorted(r.created for r in results) == [False, False, True]
    assert len({r.attachment for r in results}) == 1
    assert await read_all(store, results[0].attachment.sha256) == data


@pytest.mark.parametrize(
    ("start", "end"),
    [(0, None), (0, 1), (1, CHUNK), (CHUNK - 1, CHUNK + 1), (CHUNK, 2 * CHUNK), (5, None)],
)
async def test_read_gives_exactly_the_bytes_of_a_range(
    store: AttachmentStore, start: int, end: int | None
) -> None:
    data = blob(3 * CHUNK + 100, seed=4)
    a = (await store.put(stream(data), media_type="video/mp4", max_bytes=1 << 20)).attachment
    got = [p async for p in store.read(a.sha256, start=start, end=end)]
    assert b"".join(got) == data[start:end]
    assert all(len(p) <= CHUNK for p in got)  # bounded pieces, never the whole file


async def test_a_range_past_the_end_is_cut_at_the_end(store: AttachmentStore) -> None:
    data = blob(CHUNK + 1, seed=5)
    a = (await store.put(stream(data), media_type="text/plain", max_bytes=1 << 20)).attachment
    assert await read_all(store, a.sha256, start=CHUNK - 2, end=10 * CHUNK) == data[CHUNK - 2 :]
    assert await read_all(store, a.sha256, start=len(data)) == b""


async def test_an_empty_file_is_a_file(store: AttachmentStore) -> None:
    a = (await store.put(stream(b""), media_type="text/plain", max_bytes=10)).attachment
    assert a.size_bytes == 0 and a.sha256 == hashlib.sha256(b"").hexdigest()
    assert await read_all(store, a.sha256) == b""


async def assert_nothing_stored(store: AttachmentStore, data: bytes, pool: Any) -> None:
    assert await store.stat(hashlib.sha256(data).hexdigest()) is None
    if pool is not None:
        assert await pool.fetchval("SELECT count(*) FROM attachment_chunks") == 0
        assert await pool.fetchval("SELECT count(*) FROM attachment_blobs") == 0


async def test_too_large_is_refused_and_leaves_nothing(
    store: AttachmentStore, subject: Subject
) -> None:
    data = blob(4 * CHUNK, seed=6)
    with pytest.raises(AttachmentTooLargeError) as caught:
        await store.put(stream(data), media_type="application/pdf", max_bytes=2 * CHUNK + 1)
    assert caught.value.max_bytes == 2 * CHUNK + 1
    await assert_nothing_stored(store, data, subject.owner)


async def test_bytes_that_hash_otherwise_than_declared_are_refused_and_leave_nothing(
    store: AttachmentStore, subject: Subject
) -> None:
    data = blob(2 * CHUNK, seed=7)
    wrong = hashlib.sha256(b"another file").hexdigest()
    with pytest.raises(DigestMismatchError) as caught:
        await store.put(
            stream(data), media_type="application/pdf", max_bytes=1 << 20, expected_sha256=wrong
        )
    assert caught.value.actual == hashlib.sha256(data).hexdigest()
    await assert_nothing_stored(store, data, subject.owner)
    right = hashlib.sha256(data).hexdigest()
    stored = await store.put(
        stream(data), media_type="application/pdf", max_bytes=1 << 20, expected_sha256=right
    )
    assert stored.created and stored.attachment.sha256 == right


async def test_an_upload_cut_half_way_leaves_nothing(
    store: AttachmentStore, subject: Subject
) -> None:
    data = blob(6 * CHUNK, seed=8)
    with pytest.raises(Cut):
        await store.put(
            stream(data, cut_after=4 * CHUNK), media_type="application/pdf", max_bytes=1 << 20
        )
    await assert_nothing_stored(store, data, subject.owner)
    # ... and the next, whole upload of the same bytes is a first.
    assert (await store.put(stream(data), media_type="application/pdf", max_bytes=1 << 20)).created


async def test_an_unknown_attachment_is_not_found(store: AttachmentStore) -> None:
    unknown = hashlib.sha256(b"never uploaded").hexdigest()
    assert await store.stat(unknown) is None
    with pytest.raises(AttachmentNotFoundError):
        await read_all(store, unknown)


async def test_a_store_closed_by_a_stopping_service_serves_again_after_a_start(
    store: AttachmentStore,
) -> None:
    data = blob(CHUNK + 3, seed=9)
    a = (await store.put(stream(data), media_type="text/plain", max_bytes=1 << 20)).attachment
    await store.aclose()
    await store.aclose()
    assert await store.stat(a.sha256) == a
    assert await read_all(store, a.sha256) == data


async def test_delete_removes_a_file_for_good_says_what_went_and_may_be_repeated(
    store: AttachmentStore, subject: Subject
) -> None:
    data, other = blob(2 * CHUNK + 9, seed=10), blob(100, seed=11)
    a = (await store.put(stream(data), media_type="application/pdf", max_bytes=1 << 20)).attachment
    b = (await store.put(stream(other), media_type="text/plain", max_bytes=1 << 20)).attachment
    owner = subject.owner
    if owner is not None:
        # The adapters' role may not delete a case file; the sweep deletes as the owner.
        with pytest.raises(TransportError) as caught:
            await store.delete(a.sha256)
        assert "casebus attachments sweep" in str(caught.value)
        assert not caught.value.retriable
        store = PostgresAttachmentStore(lambda: owner, chunk_bytes=CHUNK)
    assert await store.delete(a.sha256) == a
    assert await store.stat(a.sha256) is None
    with pytest.raises(AttachmentNotFoundError):
        await read_all(store, a.sha256)
    assert await store.delete(a.sha256) is None  # twice is harmless
    assert await read_all(store, b.sha256) == other  # the others stay
    if owner is not None:
        assert await owner.fetchval("SELECT count(*) FROM attachment_chunks") == 1
    # The same bytes uploaded again are a new file.
    again = await store.put(stream(data), media_type="application/pdf", max_bytes=1 << 20)
    assert again.created and await read_all(store, a.sha256) == data


@pytest.mark.integration
async def test_the_s3_server_takes_only_requests_signed_with_the_right_secret(
    s3_server: S3Server,
) -> None:
    def store(secret: str) -> S3AttachmentStore:
        return S3AttachmentStore(
            endpoint_url=s3_server.endpoint_url,
            bucket="casebus-contract",
            access_key=s3_server.access_key,
            secret_key=secret,
        )

    good, bad = store(s3_server.secret_key), store("not-the-secret")
    try:
        await good.ensure_bucket()
        assert await good.stat(hashlib.sha256(b"nothing").hexdigest()) is None
        with pytest.raises(TransportError) as caught:
            await bad.put(stream(b"x" * 10), media_type="text/plain", max_bytes=100)
        assert "403" in str(caught.value)
    finally:
        await good.aclose()
        await bad.aclose()
