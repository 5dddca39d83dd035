"""The attachment decisions, without a database: Range headers, the submit-time check of a
message's bus-store attachments, and who holds a delivered message's references."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import pytest
from buskit import signed_ack
from hypothesis import given
from hypothesis import strategies as st

from adapters.police.mapping import VOCABULARY as POLICE_VOCABULARY
from bus.attachments import (
    ByteRange,
    StoredAttachment,
    attachment_uri,
    delivery_role,
    parse_range,
    sha256_of_uri,
    submission_problems,
)
from bus.errors import ConfigError, RangeNotSatisfiableError
from bus.models import Attachment, Envelope
from bus.party import make_party
from bus.settings import load_settings

SIZE = 1000


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("bytes=0-0", ByteRange(0, 1, SIZE)),
        ("bytes=0-499", ByteRange(0, 500, SIZE)),
        ("bytes=500-", ByteRange(500, SIZE, SIZE)),
        ("bytes=-100", ByteRange(900, SIZE, SIZE)),
        ("bytes=-5000", ByteRange(0, SIZE, SIZE)),
        ("bytes=990-5000", ByteRange(990, SIZE, SIZE)),
        (" bytes = 1 - 2 ", ByteRange(1, 3, SIZE)),
        ("bytes=0-1,5-6", None),  # several ranges: the whole file instead
        ("items=0-1", None),  # another unit: ignored
        ("bytes=5-1", None),  # invalid: ignored
        ("bytes=-", None),
    ],
)
def test_a_range_header_picks_its_bytes_or_the_whole_file(
    header: str | None, expected: ByteRange | None
) -> None:
    assert parse_range(header, SIZE) == expected


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=5000-6000", "bytes=-0"])
def test_a_range_starting_past_the_end_is_not_satisfiable(header: str) -> None:
    with pytest.raises(RangeNotSatisfiableError):
        parse_range(header, SIZE)


@given(st.integers(0, 5000), st.integers(0, 5000), st.integers(1, 3000))
def test_a_satisfiable_range_lies_within_the_file(first: int, last: int, size: int) -> None:
    try:
        part = parse_range(f"bytes={first}-{last}", size)
    except RangeNotSatisfiableError:
        assert first >= size
        return
    if part is None:
        assert last < first
        return
    assert 0 <= part.start < part.end <= size
    assert part.content_range == f"bytes {part.start}-{part.end - 1}/{size}"


def test_only_bus_uris_name_a_stored_attachment() -> None:
    digest = hashlib.sha256(b"x").hexdigest()
    assert sha256_of_uri(attachment_uri(digest)) == digest
    assert sha256_of_uri("https://files.example.gov.cn/a.pdf") is None
    assert sha256_of_uri("casebus://attachments/sha256/XYZ") == ""


def _envelope(tmp_path: Path, attachments: list[Attachment]) -> Envelope:
    party = make_party("ygh.enforcement.bureau", tmp_path / uuid.uuid4().hex)
    env = signed_ack(party, recipients=["ygh.police.bureau"], case_id="阳城执〔2026〕1号")
    return env.model_copy(update={"attachments": attachments})


def _attachment(
    name: str, data: bytes, *, uri: str | None = None, size: int | None = None
) -> Attachment:
    digest = hashlib.sha256(data).hexdigest()
    return Attachment(
        name=name,
        media_type="application/pdf",
        size_bytes=len(data) if size is None else size,
        sha256=digest,
        uri=attachment_uri(digest) if uri is None else uri,
    )


def test_a_submission_may_refer_only_to_what_its_sender_uploaded_whole(tmp_path: Path) -> None:
    ok = _attachment("移送书.pdf", b"transfer letter")
    missing = _attachment("调查报告.pdf", b"never uploaded")
    theirs = _attachment("鉴定结论.pdf", b"someone else's upload")
    short = _attachment("清单.pdf", b"list", size=3)
    pointing_elsewhere = _attachment(
        "照片.jpg", b"photo", uri=attachment_uri(hashlib.sha256(b"other").hexdigest())
    )
    external = _attachment("外部.pdf", b"kept by the department", uri="https://f.example/a.pdf")
    env = _envelope(tmp_path, [ok, missing, theirs, short, pointing_elsewhere, external])
    uploads = ((ok, b"transfer letter"), (theirs, b"someone else's upload"), (short, b"list"))
    stored = {a.sha256: StoredAttachment(a.sha256, len(d), "application/pdf") for a, d in uploads}
    problems = submission_problems(env, stored, {ok.sha256, short.sha256})
    assert [(p.path, p.rule) for p in problems] == [
        ("attachments[1].sha256", "attachment_not_uploaded"),
        ("attachments[2].sha256", "attachment_not_uploaded"),
        ("attachments[3].size_bytes", "attachment_size_mismatch"),
        ("attachments[4].uri", "attachment_uri_mismatch"),
    ]
    assert problems[0].value == missing.sha256 and problems[0].message_zh
    # A department's own file server is its own business: nothing to check.
    assert submission_problems(_envelope(tmp_path, [external]), {}, set()) == []


def test_a_file_the_sweep_deleted_is_named_so_to_its_holder_only(tmp_path: Path) -> None:
    mine = _attachment("移送书.pdf", b"deleted, mine")
    theirs = _attachment("清单.pdf", b"deleted, someone else's")
    env = _envelope(tmp_path, [mine, theirs])
    why = "the 365-day retention of clue.handover"
    deleted = {mine.sha256: why, theirs.sha256: why}
    problems = submission_problems(env, {}, {mine.sha256}, deleted)
    assert [(p.path, p.rule) for p in problems] == [
        ("attachments[0].sha256", "attachment_deleted"),
        # Someone else's deleted file: the answer must not tell that the hash was ever real.
        ("attachments[1].sha256", "attachment_not_uploaded"),
    ]
    assert why in problems[0].message and "upload it again" in problems[0].message


def test_a_delivery_makes_a_named_recipient_or_a_copy(tmp_path: Path) -> None:
    env = _envelope(tmp_path, [])
    assert delivery_role(env, "ygh.police.bureau") == "recipient"
    assert delivery_role(env, "ygh.procuratorate") == "copy"
    assert delivery_role(env, "ygh.enforcement.bureau") == "sender"


def test_the_s3_store_is_named_with_its_endpoint_key_and_secret_file() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(attachment_store="s3", attachment_s3_endpoint="http://127.0.0.1:9000")
    assert "CASEBUS_ATTACHMENT_S3_ACCESS_KEY" in str(caught.value)
    assert "CASEBUS_ATTACHMENT_S3_SECRET_KEY_FILE" in str(caught.value)
    assert "CASEBUS_ATTACHMENT_S3_ENDPOINT" not in str(caught.value)
    assert load_settings().attachment_store == "postgres"


def test_a_delivered_file_carries_its_link_and_forwards_without_it() -> None:
    digest = hashlib.sha256(b"doc").hexdigest()
    stored = {
        "name": "a.pdf",
        "media_type": "application/pdf",
        "size_bytes": 3,
        "sha256": digest,
        "uri": attachment_uri(digest),
    }
    elsewhere = stored | {"name": "b.pdf", "uri": "https://files.example.gov.cn/b.pdf"}
    head = {"kind": "criminal.transfer", "attachments": [stored, elsewhere]}
    doc = POLICE_VOCABULARY.document(head, {})
    assert doc["fj"][0]["xzdz"] == f"/v1/attachments/{digest}"
    assert "xzdz" not in doc["fj"][1]  # a department's own server: no link of ours
    envelope, _, problems = POLICE_VOCABULARY.split_submission(
        "criminal.jurisdiction_forward", {"ajbh": "1", "fj": doc["fj"]}
    )
    assert problems == []
    assert envelope["attachments"][0] == stored
