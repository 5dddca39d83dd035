"""The attachment decisions, as pure functions: may a submission refer to these attachments,
which agencies may read one, which bytes a ``Range`` header asks for."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from bus.attachments._port import StoredAttachment, sha256_of_uri
from bus.errors import Problem, RangeNotSatisfiableError
from bus.models import Attachment, Envelope

__all__ = [
    "ByteRange",
    "RefRole",
    "Reference",
    "bus_attachments",
    "delivery_role",
    "parse_range",
    "readers",
    "submission_problems",
    "with_sm3",
]

RefRole = Literal["sender", "recipient", "copy"]
"""How an agency came to hold a reference: it sent the message, was named, or got a copy."""

_RANGE: Final = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$")


@dataclass(frozen=True, slots=True)
class Reference:
    """One message referring to an attachment, as one agency holds it."""

    agency_id: str
    message_id: str
    case_id: str
    role: RefRole


def bus_attachments(envelope: Envelope) -> list[tuple[int, Attachment, str]]:
    """``(index, attachment, sha256 its URI names)`` of every attachment whose URI names the
    bus store (the hash ``""`` when the URI is malformed)."""
    out = []
    for i, attachment in enumerate(envelope.attachments):
        named = sha256_of_uri(attachment.uri)
        if named is not None:
            out.append((i, attachment, named))
    return out


def submission_problems(
    envelope: Envelope,
    stored: Mapping[str, StoredAttachment | None],
    possessed: Iterable[str],
    deleted: Mapping[str, str] | None = None,
    sm3: Mapping[str, str | None] | None = None,
    *,
    need_sm3: bool = False,
) -> list[Problem]:
    """Every bus-store attachment of ``envelope`` its sender may not refer to: a URI whose hash
    is not the attachment's, bytes not in the store (or uploaded by someone else, whose file the
    sender may not read), bytes the retention sweep deleted, another size than stored, or an
    SM3 digest other than the upload's.
    ``stored`` maps each hash to what the store holds; ``possessed`` are the hashes the sender
    uploaded or may read already; ``deleted`` maps each deleted hash the sender may know of to
    the retention rule that allowed its deletion, in a sentence; ``sm3`` maps each hash to the
    SM3 digest its upload computed (None: uploaded before SM3 was computed). An attachment that
    gives ``sm3`` is checked against it; with ``need_sm3`` (the sm2 profile, which fills the
    digest in) one whose digest is not known is refused too."""
    mine = frozenset(possessed)
    gone = deleted or {}
    digests = sm3 or {}
    problems: list[Problem] = []
    for i, attachment, named in bus_attachments(envelope):
        path = f"attachments[{i}]"
        if named != attachment.sha256:
            problems.append(
                Problem(
                    path=f"{path}.uri",
                    rule="attachment_uri_mismatch",
                    message="the URI does not name this attachment's SHA-256",
                    value=attachment.uri,
                    message_zh="附件地址与附件 SHA-256 不一致",
                )
            )
            continue
        found = stored.get(attachment.sha256)
        why = gone.get(attachment.sha256)
        if found is None and why is not None and attachment.sha256 in mine:
            problems.append(
                Problem(
                    path=f"{path}.sha256",
                    rule="attachment_deleted",
                    message=f"attachment {attachment.name!r} was deleted when {why} expired; "
                    "upload it again (POST /v1/attachments) to refer to it",
                    value=attachment.sha256,
                    message_zh="附件已因保存期限届满被删除，如需引用请重新上传",
                )
            )
        elif found is None or attachment.sha256 not in mine:
            problems.append(
                Problem(
                    path=f"{path}.sha256",
                    rule="attachment_not_uploaded",
                    message=f"attachment {attachment.name!r} was not uploaded by this agency "
                    "(POST /v1/attachments first)",
                    value=attachment.sha256,
                    message_zh="附件未由本单位上传，请先上传附件",
                )
            )
        elif found.size_bytes != attachment.size_bytes:
            problems.append(
                Problem(
                    path=f"{path}.size_bytes",
                    rule="attachment_size_mismatch",
                    message=f"attachment {attachment.name!r} has {found.size_bytes} bytes",
                    value=attachment.size_bytes,
                    message_zh=f"附件大小与已上传的文件（{found.size_bytes} 字节）不一致",
                )
            )
        elif attachment.sm3 is not None or need_sm3:
            known = digests.get(attachment.sha256)
            if known is None:
                problems.append(
                    Problem(
                        path=f"{path}.sm3",
                        rule="attachment_sm3_unknown",
                        message=f"the SM3 digest of attachment {attachment.name!r} is not known "
                        "(uploaded before the bus computed SM3): upload it again "
                        "(POST /v1/attachments)",
                        value=attachment.sm3,
                        message_zh="该附件上传时未计算 SM3 杂凑值，请重新上传附件",
                    )
                )
            elif attachment.sm3 is not None and attachment.sm3 != known:
                problems.append(
                    Problem(
                        path=f"{path}.sm3",
                        rule="attachment_sm3_mismatch",
                        message=f"attachment {attachment.name!r} has the SM3 digest {known}",
                        value=attachment.sm3,
                        message_zh="附件 SM3 杂凑值与已上传的文件不一致",
                    )
                )
    return problems


def with_sm3(envelope: Envelope, sm3: Mapping[str, str | None]) -> Envelope:
    """``envelope`` with each bus-store attachment that lacks ``sm3`` given the digest its
    upload computed (``sm3`` maps hash to digest); ``envelope`` itself when none lacks one."""
    attachments = list(envelope.attachments)
    changed = False
    for i, attachment, named in bus_attachments(envelope):
        known = sm3.get(attachment.sha256)
        if attachment.sm3 is None and named == attachment.sha256 and known is not None:
            attachments[i] = attachment.model_copy(update={"sm3": known})
            changed = True
    return envelope.model_copy(update={"attachments": attachments}) if changed else envelope


def delivery_role(envelope: Envelope, agency_id: str) -> RefRole:
    """How ``agency_id``, to whom the bus delivered ``envelope``, holds its references."""
    if agency_id == envelope.sender:
        return "sender"
    return "recipient" if agency_id in envelope.recipients else "copy"


@dataclass(frozen=True, slots=True)
class ByteRange:
    """Bytes ``start`` to ``end`` (exclusive) of a document of ``size`` bytes."""

    start: int
    end: int
    size: int

    @property
    def content_range(self) -> str:
        """The ``Content-Range`` header of this part."""
        return f"bytes {self.start}-{self.end - 1}/{self.size}"


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The one byte range a ``Range`` header asks of ``size`` bytes (RFC 9110 §14.1.2); None
    for the whole document (no header, or one this server may ignore: another unit, several
    ranges, bad syntax). RangeNotSatisfiableError when it starts past the end."""
    if header is None or "," in header:
        return None
    m = _RANGE.match(header)
    if m is None:
        return None
    first, last = m.group(1), m.group(2)
    if not first and not last:
        return None
    if not first:  # the last N bytes
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiableError(f"{header!r} of {size} bytes")
        return ByteRange(max(0, size - suffix), size, size)
    start = int(first)
    end = size if not last else int(last) + 1
    if last and end <= start:
        return None  # first > last: invalid, so ignored
    if start >= size:
        raise RangeNotSatisfiableError(f"{header!r} of {size} bytes")
    return ByteRange(start, min(end, size), size)


def readers(refs: Sequence[Reference]) -> frozenset[str]:
    """The agencies that may read an attachment with these references."""
    return frozenset(r.agency_id for r in refs)
