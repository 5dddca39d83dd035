"""An attachment store on any S3-compatible object store (AWS S3, MinIO, SeaweedFS, Ceph RGW),
spoken to directly over HTTP with AWS Signature Version 4 — no SDK to install or pin.

A file is an object ``blobs/<sha256>``. The hash is known only at the end of an upload, so the
bytes first go, part by part (at most one part in memory), into a multipart upload under a
staging key; that staging object is never read, and an upload that fails or is cut off is
aborted, so no part of it is visible. Once hashed, bytes already stored are dropped; new ones
are copied to their final key in one conditional server-side copy (``If-None-Match: *``), which
appears whole or not at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import hmac
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from typing import Final
from urllib.parse import quote
from xml.etree import ElementTree

import httpx

from bus.attachments._port import Hasher, Stored, StoredAttachment, rechunk
from bus.errors import AttachmentNotFoundError, ConfigError, TransportError

__all__ = ["S3AttachmentStore"]

_UNSIGNED: Final = "UNSIGNED-PAYLOAD"
_MIN_PART: Final = 5 * 1024 * 1024  # S3's smallest part but the last


def _sign(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


class S3AttachmentStore:
    """Attachments as objects of ``bucket`` behind ``endpoint_url`` (path-style addressing),
    their keys under ``prefix`` (a bucket shared with other data)."""

    def __init__(
        self,
        *,
        endpoint_url: str,
        bucket: str,
        access_key: str,
        secret_key: str,
        region: str = "us-east-1",
        prefix: str = "",
        part_bytes: int = 8 * 1024 * 1024,
        piece_bytes: int = 64 * 1024,
        timeout_s: float = 60.0,
    ) -> None:
        if part_bytes < _MIN_PART:
            raise ConfigError(f"part_bytes must be at least {_MIN_PART} (S3's smallest part)")
        self._endpoint = endpoint_url.rstrip("/")
        self._host = httpx.URL(self._endpoint).netloc.decode()
        self._bucket = bucket
        self._prefix = prefix
        self._access_key = access_key
        self._secret_key = secret_key
        self._region = region
        self._part = part_bytes
        self._piece = piece_bytes
        self._timeout_s = timeout_s
        self._http: httpx.AsyncClient | None = None

    @property
    def _client(self) -> httpx.AsyncClient:
        # Made on first use, so a service stopped and started again gets a fresh one.
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=self._timeout_s)
        return self._http

    async def aclose(self) -> None:
        """Close the HTTP client (a later request opens a new one)."""
        http, self._http = self._http, None
        if http is not None:
            await http.aclose()

    # -- requests ---------------------------------------------------------------------------

    def _headers(
        self, method: str, path: str, query: Mapping[str, str], extra: Mapping[str, str]
    ) -> dict[str, str]:
        """The request's headers, SigV4-signed (the payload unsigned: TLS or a local link
        carries it, and the store hashes every byte itself)."""
        now = dt.datetime.now(dt.UTC)
        stamp, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
        headers = {
            "host": self._host,
            "x-amz-content-sha256": _UNSIGNED,
            "x-amz-date": stamp,
            **{k.lower(): v.strip() for k, v in extra.items()},
        }
        names = sorted(headers)
        canonical_query = "&".join(
            f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(query.items())
        )
        canonical = "\n".join(
            [
                method,
                quote(path, safe="/-_.~"),
                canonical_query,
                "".join(f"{n}:{headers[n]}\n" for n in names),
                ";".join(names),
                _UNSIGNED,
            ]
        )
        scope = f"{day}/{self._region}/s3/aws4_request"
        to_sign = "\n".join(
            ["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()]
        )
        key = _sign(("AWS4" + self._secret_key).encode(), day)
        for part in (self._region, "s3", "aws4_request"):
            key = _sign(key, part)
        signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        headers["authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={self._access_key}/{scope}, "
            f"SignedHeaders={';'.join(names)}, Signature={signature}"
        )
        del headers["host"]  # httpx sets it, to the same value
        return headers

    def _request(
        self,
        method: str,
        key: str | None,
        *,
        query: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        content: bytes | None = None,
    ) -> httpx.Request:
        path = f"/{self._bucket}" + ("" if key is None else f"/{key}")
        q = dict(query or {})
        signed = self._headers(method, path, q, headers or {})
        url = self._endpoint + quote(path, safe="/-_.~")
        return self._client.build_request(method, url, params=q, headers=signed, content=content)

    async def _send(self, request: httpx.Request, ok: tuple[int, ...] = (200,)) -> httpx.Response:
        try:
            response = await self._client.send(request)
        except httpx.HTTPError as e:
            raise TransportError(f"S3 {request.method}: {e}", retriable=True) from e
        if response.status_code not in ok:
            raise TransportError(
                f"S3 {request.method} {request.url.path}: {response.status_code} "
                f"{response.text[:300]}",
                retriable=response.status_code >= 500,
            )
        return response

    async def ensure_bucket(self) -> None:
        """Create the bucket if it is not there (an operator's step; tests and the demo)."""
        head = await self._send(self._request("HEAD", None), ok=(200, 404))
        if head.status_code == 404:
            await self._send(self._request("PUT", None), ok=(200, 409))

    # -- the port ---------------------------------------------------------------------------

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
        staging = f"{self._prefix}uploads/{uuid.uuid4()}"
        create = self._request(
            "POST", staging, query={"uploads": ""}, headers={"content-type": media_type}
        )
        upload_id = _xml_text((await self._send(create)).content, "UploadId")
        parts: list[tuple[int, str]] = []
        try:
            async for piece in rechunk(chunks, self._part):
                hasher.update(piece)
                number = len(parts) + 1
                request = self._request(
                    "PUT",
                    staging,
                    query={"partNumber": str(number), "uploadId": upload_id},
                    content=piece,
                )
                parts.append((number, (await self._send(request)).headers["etag"]))
            if not parts:  # S3 wants one part, which may be empty
                request = self._request(
                    "PUT", staging, query={"partNumber": "1", "uploadId": upload_id}, content=b""
                )
                parts.append((1, (await self._send(request)).headers["etag"]))
            sha256 = hasher.finish()
            existing = await self.stat(sha256)
            if existing is not None:
                await self._abort(staging, upload_id)
                return Stored(existing, created=False, sm3=hasher.sm3)
            body = "".join(
                f"<Part><PartNumber>{n}</PartNumber><ETag>{etag}</ETag></Part>" for n, etag in parts
            )
            complete = self._request(
                "POST",
                staging,
                query={"uploadId": upload_id},
                content=f"<CompleteMultipartUpload>{body}</CompleteMultipartUpload>".encode(),
            )
            await self._send(complete)
        except BaseException:
            await asyncio.shield(self._abort(staging, upload_id))
            raise
        try:
            # Conditional: of two uploads of the same new bytes, one copy wins and the other
            # learns the bytes were stored meanwhile (412), as with PostgreSQL's unique key.
            copy = self._request(
                "PUT",
                self._blob(sha256),
                headers={
                    "x-amz-copy-source": quote(f"/{self._bucket}/{staging}", safe="/-_.~"),
                    "x-amz-metadata-directive": "REPLACE",
                    "content-type": media_type,
                    "if-none-match": "*",
                },
            )
            copied = await self._send(copy, ok=(200, 412))
        finally:
            await asyncio.shield(self._delete(staging))
        if copied.status_code == 412:
            existing = await self.stat(sha256)
            if existing is None:  # deleted by a retention sweep between the two requests
                raise AttachmentNotFoundError(f"attachment {sha256} vanished")
            return Stored(existing, created=False, sm3=hasher.sm3)
        return Stored(
            StoredAttachment(sha256, hasher.size_bytes, media_type), created=True, sm3=hasher.sm3
        )

    def _blob(self, sha256: str) -> str:
        return f"{self._prefix}blobs/{sha256}"

    async def _abort(self, staging: str, upload_id: str) -> None:
        # An abandoned multipart upload is invisible; a lifecycle rule expires it.
        with contextlib.suppress(TransportError):
            await self._send(
                self._request("DELETE", staging, query={"uploadId": upload_id}),
                ok=(200, 204, 404),
            )

    async def _delete(self, key: str) -> None:
        # A staging object is never read; a lifecycle rule on uploads/ removes it.
        with contextlib.suppress(TransportError):
            await self._send(self._request("DELETE", key), ok=(200, 204, 404))

    async def stat(self, sha256: str) -> StoredAttachment | None:
        """See :meth:`bus.attachments.AttachmentStore.stat`."""
        response = await self._send(self._request("HEAD", self._blob(sha256)), ok=(200, 404))
        if response.status_code == 404:
            return None
        media_type = response.headers.get("content-type", "application/octet-stream")
        return StoredAttachment(sha256, int(response.headers["content-length"]), media_type)

    async def delete(self, sha256: str) -> StoredAttachment | None:
        """See :meth:`bus.attachments.AttachmentStore.delete`. S3 answers 204 whether or not
        the object was there, so it is looked at first to say what went."""
        found = await self.stat(sha256)
        await self._send(self._request("DELETE", self._blob(sha256)), ok=(200, 204, 404))
        return found

    async def read(
        self, sha256: str, *, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        """See :meth:`bus.attachments.AttachmentStore.read`."""
        found = await self.stat(sha256)
        if found is None:
            raise AttachmentNotFoundError(f"no attachment {sha256}")
        stop = found.size_bytes if end is None else min(end, found.size_bytes)
        start = max(0, start)
        if start >= stop:
            return
        request = self._request(
            "GET", self._blob(sha256), headers={"range": f"bytes={start}-{stop - 1}"}
        )
        response = await self._client.send(request, stream=True)
        try:
            if response.status_code not in (200, 206):
                raise TransportError(f"S3 GET: {response.status_code}", retriable=True)
            async for piece in response.aiter_bytes(self._piece):
                yield piece
        finally:
            await response.aclose()


def _xml_text(body: bytes, tag: str) -> str:
    """The text of the first element named ``tag`` (any namespace) in an S3 answer."""
    for element in ElementTree.fromstring(body).iter():
        if element.tag.rpartition("}")[2] == tag and element.text:
            return element.text
    raise TransportError(f"S3 answered without {tag}", retriable=False)
