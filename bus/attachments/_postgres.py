"""The default attachment store: fixed-size chunks in PostgreSQL (``make demo`` needs no more).

An upload is one transaction: chunks go in as they stream (at most one chunk in memory), the
blob row last. Its foreign key is checked at commit, and nobody sees uncommitted rows, so a cut
upload leaves nothing. When the blob row conflicts on ``sha256`` the bytes were there already:
the transaction is rolled back and the stored document is the answer.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import Final

import asyncpg

from bus.attachments._port import Hasher, Stored, StoredAttachment, rechunk
from bus.errors import AttachmentNotFoundError, ConfigError, TransportError

__all__ = ["DEFAULT_CHUNK_BYTES", "PostgresAttachmentStore"]

DEFAULT_CHUNK_BYTES: Final = 1024 * 1024

_STAT: Final = """
SELECT id, size_bytes, chunk_bytes, media_type FROM attachment_blobs WHERE sha256 = $1
"""
_CHUNK: Final = """
SELECT substring(data FROM $3 FOR $4) FROM attachment_chunks WHERE blob_id = $1 AND seq = $2
"""


class _AlreadyStored(Exception):
    """Rolls the upload's transaction back: its bytes were stored before."""


class PostgresAttachmentStore:
    """Attachments as rows of ``attachment_blobs`` and ``attachment_chunks`` (migration 0013).

    ``pool`` is called at each use, so the store can be made before its service connects.
    """

    def __init__(
        self, pool: Callable[[], asyncpg.Pool], *, chunk_bytes: int = DEFAULT_CHUNK_BYTES
    ) -> None:
        if not 4096 <= chunk_bytes <= 64 * 1024 * 1024:
            raise ConfigError("chunk_bytes must be between 4 KiB and 64 MiB")
        self._pool = pool
        self._chunk_bytes = chunk_bytes

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
        try:
            async with self._pool().acquire() as conn, conn.transaction():
                blob_id = await conn.fetchval("SELECT nextval('attachment_blob_ids')")
                seq = 0
                async for piece in rechunk(chunks, self._chunk_bytes):
                    hasher.update(piece)
                    await conn.execute(
                        "INSERT INTO attachment_chunks (blob_id, seq, data) VALUES ($1, $2, $3)",
                        blob_id,
                        seq,
                        piece,
                    )
                    seq += 1
                sha256 = hasher.finish()
                stored = await conn.fetchval(
                    """INSERT INTO attachment_blobs
                       (id, sha256, size_bytes, chunk_bytes, media_type)
                       VALUES ($1, $2, $3, $4, $5)
                       ON CONFLICT (sha256) DO NOTHING RETURNING id""",
                    blob_id,
                    bytes.fromhex(sha256),
                    hasher.size_bytes,
                    self._chunk_bytes,
                    media_type,
                )
                if stored is None:
                    raise _AlreadyStored
        except _AlreadyStored:
            existing = await self.stat(sha256)
            if existing is None:  # deleted by a retention sweep meanwhile
                raise AttachmentNotFoundError(f"attachment {sha256} vanished") from None
            return Stored(existing, created=False, sm3=hasher.sm3)
        return Stored(
            StoredAttachment(sha256, hasher.size_bytes, media_type), created=True, sm3=hasher.sm3
        )

    async def aclose(self) -> None:
        """Nothing to close: the pool is the service's."""

    async def stat(self, sha256: str) -> StoredAttachment | None:
        """See :meth:`bus.attachments.AttachmentStore.stat`."""
        row = await self._pool().fetchrow(_STAT, bytes.fromhex(sha256))
        if row is None:
            return None
        return StoredAttachment(sha256, row["size_bytes"], row["media_type"])

    async def delete(self, sha256: str) -> StoredAttachment | None:
        """See :meth:`bus.attachments.AttachmentStore.delete`: the blob row and its chunks in
        one transaction. Needs the owner's role: the adapters' may not delete a case file."""
        try:
            async with self._pool().acquire() as conn, conn.transaction():
                row = await conn.fetchrow(
                    "DELETE FROM attachment_blobs WHERE sha256 = $1"
                    " RETURNING id, size_bytes, media_type",
                    bytes.fromhex(sha256),
                )
                if row is None:
                    return None
                await conn.execute("DELETE FROM attachment_chunks WHERE blob_id = $1", row["id"])
        except asyncpg.InsufficientPrivilegeError as e:
            raise TransportError(
                f"cannot delete attachment {sha256}: {e}; only the retention sweep deletes "
                "case files (`casebus attachments sweep`, as the role owning the tables: "
                "CASEBUS_DATABASE_URL)",
                retriable=False,
            ) from e
        return StoredAttachment(sha256, row["size_bytes"], row["media_type"])

    async def read(
        self, sha256: str, *, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        """See :meth:`bus.attachments.AttachmentStore.read`; one chunk per query, so a slow
        reader holds no connection between pieces."""
        pool = self._pool()
        row = await pool.fetchrow(_STAT, bytes.fromhex(sha256))
        if row is None:
            raise AttachmentNotFoundError(f"no attachment {sha256}")
        size, chunk = row["size_bytes"], row["chunk_bytes"]
        stop = size if end is None else min(end, size)
        position = max(0, start)
        while position < stop:
            seq, offset = divmod(position, chunk)
            length = min(chunk - offset, stop - position)
            # substring() counts from 1.
            piece = await pool.fetchval(_CHUNK, row["id"], seq, offset + 1, length)
            if piece is None or len(piece) != length:
                raise AttachmentNotFoundError(f"attachment {sha256}: chunk {seq} is missing")
            yield bytes(piece)
            position += length
