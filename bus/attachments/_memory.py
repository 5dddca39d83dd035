"""An in-memory attachment store: what the contract tests hold the real stores to, and a store
for unit tests that need no database. Not for production: it keeps whole files in memory."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator

from bus.attachments._port import Hasher, Stored, StoredAttachment
from bus.errors import AttachmentNotFoundError

__all__ = ["MemoryAttachmentStore"]


class MemoryAttachmentStore:
    """Attachments in a dict; ``piece_bytes`` is the largest piece :meth:`read` yields."""

    def __init__(self, *, piece_bytes: int = 64 * 1024) -> None:
        self._blobs: dict[str, tuple[StoredAttachment, bytes]] = {}
        self._piece = piece_bytes

    async def put(
        self,
        chunks: AsyncIterable[bytes],
        *,
        media_type: str,
        max_bytes: int,
        expected_sha256: str | None = None,
    ) -> Stored:
        """See :meth:`bus.attachments.AttachmentStore.put`."""
        hasher = Hasher(max_bytes=max_bytes, expected_sha256=expected_sha256)
        data = bytearray()
        async for chunk in chunks:
            hasher.update(chunk)
            data += chunk
        sha256 = hasher.finish()
        existing = self._blobs.get(sha256)
        if existing is not None:
            return Stored(existing[0], created=False, sm3=hasher.sm3)
        attachment = StoredAttachment(sha256, len(data), media_type)
        self._blobs[sha256] = (attachment, bytes(data))
        return Stored(attachment, created=True, sm3=hasher.sm3)

    async def aclose(self) -> None:
        """Nothing to close: memory only."""

    async def stat(self, sha256: str) -> StoredAttachment | None:
        """See :meth:`bus.attachments.AttachmentStore.stat`."""
        found = self._blobs.get(sha256)
        return None if found is None else found[0]

    async def delete(self, sha256: str) -> StoredAttachment | None:
        """See :meth:`bus.attachments.AttachmentStore.delete`."""
        found = self._blobs.pop(sha256, None)
        return None if found is None else found[0]

    async def read(
        self, sha256: str, *, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        """See :meth:`bus.attachments.AttachmentStore.read`."""
        found = self._blobs.get(sha256)
        if found is None:
            raise AttachmentNotFoundError(f"no attachment {sha256}")
        data = found[1]
        stop = len(data) if end is None else min(end, len(data))
        for position in range(max(0, start), stop, self._piece):
            yield data[position : min(position + self._piece, stop)]
