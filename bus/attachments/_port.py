"""The one port every attachment store implements, and what it answers with.

A store keeps documents content-addressed: the SHA-256 of the bytes is the key, computed while
the bytes stream in, so the same bytes uploaded twice are stored once. The SM3 digest (GB/T
32905) is computed in the same pass: the 国密 profile binds each file by it in the signed
envelope (``Attachment.sm3``), while SHA-256 stays the store's address. A store never shows a
partial file: an upload that fails or is cut off leaves nothing a reader can see.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import Final, Protocol

from bus.errors import AttachmentTooLargeError, DigestMismatchError

__all__ = [
    "DEFAULT_MEDIA_TYPE",
    "URI_PREFIX",
    "AttachmentStore",
    "Hasher",
    "Stored",
    "StoredAttachment",
    "attachment_uri",
    "is_sha256",
    "is_sm3",
    "rechunk",
    "sha256_of_uri",
]

URI_PREFIX: Final = "casebus://attachments/sha256/"
"""A bus-internal attachment URI is this prefix and the lower-case hex SHA-256."""
DEFAULT_MEDIA_TYPE: Final = "application/octet-stream"

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def is_sm3(text: str) -> bool:
    """Whether ``text`` is a lower-case hex SM3 digest."""
    return bool(_HEX64.match(text))


def is_sha256(text: str) -> bool:
    """Whether ``text`` is a lower-case hex SHA-256."""
    return bool(_HEX64.match(text))


def attachment_uri(sha256: str) -> str:
    """The bus-internal URI of the attachment ``sha256``."""
    return URI_PREFIX + sha256


def sha256_of_uri(uri: str) -> str | None:
    """The SHA-256 a bus-internal URI names (``""`` when what follows the prefix is not one);
    None for any other URI (a department's own file server, which the bus neither checks nor
    serves)."""
    if not uri.startswith(URI_PREFIX):
        return None
    rest = uri.removeprefix(URI_PREFIX)
    return rest if is_sha256(rest) else ""


@dataclass(frozen=True, slots=True)
class StoredAttachment:
    """One document in a store."""

    sha256: str
    size_bytes: int
    media_type: str

    @property
    def uri(self) -> str:
        """Its bus-internal URI."""
        return attachment_uri(self.sha256)


@dataclass(frozen=True, slots=True)
class Stored:
    """The answer to an upload: the document, whether these bytes were new to the store, and
    their SM3 digest (lower-case hex) computed from this upload's bytes."""

    attachment: StoredAttachment
    created: bool
    sm3: str | None = None


class Hasher:
    """Counts and hashes bytes as they stream past, enforcing the size limit and the declared
    hash: the part of an upload every store shares."""

    def __init__(self, *, max_bytes: int, expected_sha256: str | None) -> None:
        self._sha = hashlib.sha256()
        self._sm3 = hashlib.new("sm3")
        self.size_bytes = 0
        self._max = max_bytes
        self._expected = expected_sha256

    def update(self, chunk: bytes) -> None:
        """Account for ``chunk``; AttachmentTooLargeError once past the limit."""
        self.size_bytes += len(chunk)
        if self.size_bytes > self._max:
            raise AttachmentTooLargeError(self._max)
        self._sha.update(chunk)
        self._sm3.update(chunk)

    @property
    def sm3(self) -> str:
        """The hex SM3 digest of the bytes so far (read it after :meth:`finish`)."""
        return self._sm3.hexdigest()

    def finish(self) -> str:
        """The hex SHA-256; DigestMismatchError when the declared one differs."""
        actual = self._sha.hexdigest()
        if self._expected is not None and self._expected != actual:
            raise DigestMismatchError(self._expected, actual)
        return actual


async def rechunk(chunks: AsyncIterable[bytes], size: int) -> AsyncIterator[bytes]:
    """``chunks`` regrouped into pieces of exactly ``size`` bytes, the last one shorter; at most
    one piece is held at a time."""
    buffer = bytearray()
    async for chunk in chunks:
        buffer += chunk
        while len(buffer) >= size:
            yield bytes(buffer[:size])
            del buffer[:size]
    if buffer:
        yield bytes(buffer)


class AttachmentStore(Protocol):
    """Where attachments live: PostgreSQL chunks by default, any store behind this port."""

    async def put(
        self,
        chunks: AsyncIterable[bytes],
        *,
        media_type: str,
        max_bytes: int,
        expected_sha256: str | None = None,
    ) -> Stored:
        """Store the bytes of ``chunks``, hashing them as they come; at most ``max_bytes``
        (AttachmentTooLargeError), equal to ``expected_sha256`` when given
        (DigestMismatchError). Bytes already stored are not stored again (``created`` False, the
        first media type kept). Whatever fails or is cancelled half-way leaves nothing visible."""
        ...

    async def stat(self, sha256: str) -> StoredAttachment | None:
        """The stored document ``sha256``, or None."""
        ...

    def read(self, sha256: str, *, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Bytes ``start`` to ``end`` (exclusive; None: to the end) of the document, in pieces
        of bounded size; AttachmentNotFoundError when there is none."""
        ...

    async def delete(self, sha256: str) -> StoredAttachment | None:
        """Remove the document for good: what was removed, or None when nothing was stored
        (so deleting twice is harmless). Only the retention sweep calls it, holding the lock
        that keeps a submission from referring to the file meanwhile
        (:func:`bus.attachments.sweep_attachments`); a reader half-way through may fail."""
        ...

    async def aclose(self) -> None:
        """Let go of what the store holds open (connections of its own); idempotent."""
        ...
