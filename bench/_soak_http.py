"""A small keep-alive HTTP/1.1 client for the soak's submissions.

httpx costs about a millisecond of CPU a request; at hundreds of submissions a second on a shared
two-core machine that is CPU the bus under test would not get. This client does only what the
soak needs — POST a JSON body, read a ``Content-Length`` or chunked answer — over a bounded pool
of connections to one adapter.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["Answer", "HttpError", "Pool"]


class HttpError(Exception):
    """The request did not get an answer (refused, reset, timed out, malformed)."""


@dataclass(frozen=True, slots=True)
class Answer:
    """Status and body of a response."""

    status: int
    body: bytes
    sent_s: float
    """``time.monotonic()`` when the request was written (after any wait for a connection)."""


_Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]

IDLE_S = 2.0
"""How long an idle connection is reused: uvicorn closes one idle for 5 s (its
``timeout_keep_alive``), and a request written to a connection the server is closing is reset."""


class Pool:
    """Up to ``size`` keep-alive connections to ``host:port``; a request waits for a free one."""

    def __init__(self, host: str, port: int, *, size: int, timeout_s: float = 30.0) -> None:
        self._host, self._port = host, port
        self._timeout_s = timeout_s
        self._idle: list[tuple[float, _Conn]] = []
        self._slots = asyncio.Semaphore(size)

    async def post(self, path: str, body: bytes, headers: Mapping[str, str]) -> Answer:
        """POST ``body``; HttpError when no answer came."""
        async with self._slots:
            conn = self._fresh_idle()
            try:
                if conn is None:
                    conn = await asyncio.wait_for(
                        asyncio.open_connection(self._host, self._port), self._timeout_s
                    )
                answer, keep = await asyncio.wait_for(
                    self._exchange(conn, path, body, headers), self._timeout_s
                )
            except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as e:
                if conn is not None:
                    conn[1].transport.abort()
                raise HttpError(f"{type(e).__name__}: {e}") from e
            if keep:
                self._idle.append((time.monotonic(), conn))
            else:
                conn[1].close()
            return answer

    def _fresh_idle(self) -> _Conn | None:
        """The most recently used idle connection; those idle too long are closed."""
        now = time.monotonic()
        while self._idle:
            since, conn = self._idle.pop()
            if now - since < IDLE_S:
                return conn
            conn[1].close()
        return None

    async def _exchange(
        self, conn: _Conn, path: str, body: bytes, headers: Mapping[str, str]
    ) -> tuple[Answer, bool]:
        reader, writer = conn
        head = [f"POST {path} HTTP/1.1", f"Host: {self._host}:{self._port}"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        head.append(f"Content-Length: {len(body)}")
        sent_s = time.monotonic()
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        await writer.drain()
        status_line = await reader.readuntil(b"\r\n")
        status = int(status_line.split(b" ", 2)[1])
        fields: dict[bytes, bytes] = {}
        while True:
            line = await reader.readuntil(b"\r\n")
            if line == b"\r\n":
                break
            name, _, value = line.partition(b":")
            fields[name.strip().lower()] = value.strip()
        if fields.get(b"transfer-encoding", b"").lower() == b"chunked":
            data = bytearray()
            while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
                data += await reader.readexactly(size)
                await reader.readexactly(2)
            await reader.readuntil(b"\r\n")  # no trailers: the empty line ending the body
            payload = bytes(data)
        else:
            payload = await reader.readexactly(int(fields.get(b"content-length", b"0")))
        keep = fields.get(b"connection", b"").lower() != b"close"
        return Answer(status, payload, sent_s), keep

    async def close(self) -> None:
        """Close the idle connections."""
        for _, (_, writer) in self._idle:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
        self._idle.clear()
