"""SM3 digests of attachments (issue #19), without a database: computed while an upload streams
in, checked and filled in at submit, and the department's field name for them."""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from buskit import signed_ack

from adapters.police.mapping import VOCABULARY as POLICE_VOCABULARY
from bus import sm2
from bus.attachments import (
    FileCheck,
    MemoryAttachmentStore,
    StoredAttachment,
    attachment_uri,
    check_attachment_files,
    submission_problems,
    with_sm3,
)
from bus.attachments._port import Hasher
from bus.codec import default_codec
from bus.models import Attachment, Envelope
from bus.party import make_party

# GB/T 32905-2016 Appendix A, example 1: SM3("abc").
SM3_ABC = "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
DATA = b"transfer letter " * 5000


def test_the_hasher_computes_sm3_beside_sha256_across_chunks() -> None:
    hasher = Hasher(max_bytes=10, expected_sha256=None)
    for piece in (b"a", b"", b"bc"):
        hasher.update(piece)
    assert hasher.finish() == hashlib.sha256(b"abc").hexdigest()
    assert hasher.sm3 == SM3_ABC


async def _chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def test_an_upload_answers_with_its_sm3_whether_new_or_stored_before() -> None:
    store = MemoryAttachmentStore()
    first = await store.put(_chunks(DATA, 4096), media_type="application/pdf", max_bytes=10**7)
    again = await store.put(_chunks(DATA, 999), media_type="application/pdf", max_bytes=10**7)
    assert first.created and not again.created
    assert first.sm3 == again.sm3 == sm2.sm3(DATA).hex() != first.attachment.sha256


def _envelope(tmp_path: Path, attachments: list[Attachment]) -> Envelope:
    party = make_party("ygh.enforcement.bureau", tmp_path / uuid.uuid4().hex)
    env = signed_ack(party, recipients=["ygh.police.bureau"], case_id="阳城执〔2026〕1号")
    return env.model_copy(update={"attachments": attachments})


def _attachment(
    name: str, data: bytes, *, sm3: str | None = None, uri: str | None = None
) -> Attachment:
    digest = hashlib.sha256(data).hexdigest()
    return Attachment(
        name=name,
        media_type="application/pdf",
        size_bytes=len(data),
        sha256=digest,
        uri=attachment_uri(digest) if uri is None else uri,
        sm3=sm3,
    )


def _stored(*pairs: tuple[Attachment, bytes]) -> dict[str, StoredAttachment | None]:
    return {a.sha256: StoredAttachment(a.sha256, len(d), "application/pdf") for a, d in pairs}


def test_a_given_sm3_must_be_the_uploads(tmp_path: Path) -> None:
    right = _attachment("移送书.pdf", b"one", sm3=sm2.sm3(b"one").hex())
    wrong = _attachment("清单.pdf", b"two", sm3=sm2.sm3(b"not two").hex())
    absent = _attachment("照片.jpg", b"three")
    env = _envelope(tmp_path, [right, wrong, absent])
    stored = _stored((right, b"one"), (wrong, b"two"), (absent, b"three"))
    digests: dict[str, str | None] = {
        a.sha256: sm2.sm3(d).hex() for a, d in ((right, b"one"), (wrong, b"two"))
    }
    digests[absent.sha256] = None  # uploaded before SM3 was computed
    mine = set(stored)
    problems = submission_problems(env, stored, mine, {}, digests)
    assert [(p.path, p.rule) for p in problems] == [
        ("attachments[1].sm3", "attachment_sm3_mismatch")
    ]
    assert problems[0].value == wrong.sm3 and problems[0].message_zh
    # The sm2 profile fills the digest in, so one it does not know is refused as well.
    problems = submission_problems(env, stored, mine, {}, digests, need_sm3=True)
    assert [(p.path, p.rule) for p in problems] == [
        ("attachments[1].sm3", "attachment_sm3_mismatch"),
        ("attachments[2].sm3", "attachment_sm3_unknown"),
    ]


def test_filling_sm3_touches_only_bus_store_attachments_without_one(tmp_path: Path) -> None:
    plain = _attachment("移送书.pdf", b"one")
    given = _attachment("清单.pdf", b"two", sm3=sm2.sm3(b"two").hex())
    external = _attachment("外部.pdf", b"elsewhere", uri="https://f.example/a.pdf")
    env = _envelope(tmp_path, [plain, given, external])
    digests: dict[str, str | None] = {
        plain.sha256: sm2.sm3(b"one").hex(),
        given.sha256: sm2.sm3(b"two").hex(),
        external.sha256: sm2.sm3(b"elsewhere").hex(),
    }
    filled = with_sm3(env, digests)
    assert [a.sm3 for a in filled.attachments] == [sm2.sm3(b"one").hex(), given.sm3, None]
    assert default_codec().envelope_version(filled) == 2
    nothing_to_do = _envelope(tmp_path, [external])
    assert with_sm3(nothing_to_do, digests) is nothing_to_do


def test_departments_give_and_see_the_digest_as_fj_sm3() -> None:
    assert POLICE_VOCABULARY.department_path(None, "attachments[1].sm3", envelope=True) == (
        "fj[1].sm3"
    )


def test_the_evidence_check_holds_a_file_to_the_sm3_the_envelope_carries(tmp_path: Path) -> None:
    folder = tmp_path / "files"
    folder.mkdir()
    (folder / "移送书.pdf").write_bytes(b"one")

    def check(sm3: str | None) -> FileCheck:
        env = _envelope(tmp_path, [_attachment("移送书.pdf", b"one", sm3=sm3)])
        value = default_codec().encode_envelope(env)
        bundle = {"envelope": base64.b64encode(value).decode()}
        [checked] = check_attachment_files(bundle, folder)
        return checked

    right = check(sm2.sm3(b"one").hex())
    assert right.state == "ok" and f"sm3 {right.sm3}" in right.line()
    # SHA-256 and size agree; only an edited envelope can make SM3 disagree with them.
    wrong = check(sm2.sm3(b"two").hex())
    assert wrong.state == "mismatch"
    assert wrong.line() == (
        f"MISMATCH 移送书.pdf ({folder / '移送书.pdf'}): sm3 {sm2.sm3(b'one').hex()}, "
        f"expected {sm2.sm3(b'two').hex()}"
    )
    unchecked = check(None)  # a v1 envelope: SM3 not carried, not checked
    assert unchecked.state == "ok" and unchecked.found_sm3 == sm2.sm3(b"one").hex()
    assert "sm3" not in unchecked.line()


def test_a_delivered_fj_entry_shows_sm3_only_when_the_envelope_carries_it(tmp_path: Path) -> None:
    with_digest = _attachment("移送书.pdf", b"one", sm3=sm2.sm3(b"one").hex())
    without = _attachment("清单.pdf", b"two")
    env = _envelope(tmp_path, [with_digest, without])
    head = env.model_dump(mode="json", exclude={"payload", "signature"})  # as outbound does
    doc = POLICE_VOCABULARY.document(head, {})
    assert doc["fj"][0]["sm3"] == with_digest.sm3
    assert "sm3" not in doc["fj"][1]  # a v1 delivery looks as it always did
    assert doc["fj"][1]["hash"] == without.sha256
