"""The soak's fake departmental systems: one small HTTP/1.1 webhook server per agency, all in a
process of their own (:class:`Departments`), so that the load generator's work never delays a
department's answer and the two can use both cores.

Each server checks the adapter's HMAC signature and its timestamp like a department would,
answers ``200`` and records, per ``X-Casebus-Message-Id`` (the idempotency key of the webhook
contract), when the message first arrived and how many times it was accepted. It can be taken
down — the listening socket and every open connection closed, so the adapter sees connection
refused — and brought back up on the same port.

It is written on bare asyncio streams rather than uvicorn so that sixteen of them, taking
hundreds of requests a second, cost little CPU on a shared two-core box.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import multiprocessing
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from adapters._framework.outbound import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign_webhook

__all__ = ["Arrival", "Department", "Departments", "Record"]

_MAX_SKEW_S = 300
_OK = b'{"jszt":"\xe5\xb7\xb2\xe6\x8e\xa5\xe6\x94\xb6"}'  # {"jszt": "已接收"}
_BAD_SIGNATURE = b'{"jjyy":"\xe7\xad\xbe\xe5\x90\x8d\xe6\x97\xa0\xe6\x95\x88"}'  # 签名无效


@dataclass(slots=True)
class Arrival:
    """One message id as the department saw it."""

    first_s: float
    """``time.monotonic()`` of the first accepted POST."""
    accepted: int = 1
    """How many POSTs of it were answered 2xx (more than one: a redelivery)."""
    code: str = ""
    """The document's ``ywlx`` (业务类型)."""


@dataclass
class Department:
    """A department's webhook endpoint on 127.0.0.1; ``url`` is fixed once started."""

    agency_id: str
    secret: bytes
    port: int = 0
    arrivals: dict[str, Arrival] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    """Message ids in first-arrival order."""
    posts: int = 0
    bad_signatures: int = 0
    malformed: int = 0
    _server: asyncio.Server | None = None
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    @property
    def url(self) -> str:
        """Where the adapter POSTs."""
        return f"http://127.0.0.1:{self.port}/webhook"

    @property
    def up(self) -> bool:
        """Whether it is listening."""
        return self._server is not None

    async def start(self) -> None:
        """Listen (on the same port as before, when there was a before)."""
        if self._server is not None:
            return
        self._server = await asyncio.start_server(
            self._serve, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Go away: refuse new connections and drop the open ones mid-request."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 5)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                    return
                headers = _headers(head)
                length = int(headers.get("content-length", "0") or 0)
                body = await reader.readexactly(length) if length else b""
                status, answer = self._handle(headers, body)
                writer.write(
                    b"HTTP/1.1 %d %s\r\nContent-Type: application/json; charset=utf-8\r\n"
                    b"Content-Length: %d\r\n\r\n%s"
                    % (status, b"OK" if status == 200 else b"Unauthorized", len(answer), answer)
                )
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    return
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            return
        finally:
            self._writers.discard(writer)
            writer.close()

    def _handle(self, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        self.posts += 1
        stamp = headers.get(TIMESTAMP_HEADER.lower(), "")
        signature = headers.get(SIGNATURE_HEADER.lower(), "")
        fresh = stamp.isdigit() and abs(time.time() - int(stamp)) <= _MAX_SKEW_S
        if not fresh or not hmac.compare_digest(signature, sign_webhook(self.secret, stamp, body)):
            self.bad_signatures += 1
            return 401, _BAD_SIGNATURE
        message_id = headers.get("x-casebus-message-id", "")
        now = time.monotonic()
        seen = self.arrivals.get(message_id)
        if seen is not None:
            seen.accepted += 1
            return 200, _OK
        try:
            code = str(json.loads(body).get("ywlx", ""))
        except (ValueError, AttributeError):
            self.malformed += 1
            code = ""
        self.arrivals[message_id] = Arrival(first_s=now, code=code)
        self.order.append(message_id)
        return 200, _OK


def _headers(head: bytes) -> dict[str, str]:
    lines = head.decode("latin-1").split("\r\n")
    out: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            out[name.strip().lower()] = value.strip()
    return out


@dataclass(frozen=True, slots=True)
class Record:
    """What one department saw, copied out of the departments' process at the end."""

    arrivals: dict[str, Arrival]
    order: list[str]
    posts: int
    bad_signatures: int
    malformed: int


class _Child:
    """The departments' process: serves them, and answers the parent's requests on a pipe."""

    def __init__(self, conn: Connection, specs: list[tuple[str, bytes, int]]) -> None:
        self.conn = conn
        self.deps = {a: Department(a, secret, port) for a, secret, port in specs}
        self.waiting: dict[str, set[str]] = {a: set() for a in self.deps}
        """Per agency, expected message ids not arrived yet."""
        self.expected = 0

    def expect(self, pairs: Iterable[tuple[str, str]]) -> None:
        for agency, message_id in pairs:
            self.expected += 1
            if message_id not in self.deps[agency].arrivals:
                self.waiting[agency].add(message_id)

    def status(self) -> tuple[int, int, int]:
        missing = 0
        for agency, ids in self.waiting.items():
            arrived = self.deps[agency].arrivals
            ids.difference_update([m for m in ids if m in arrived])
            missing += len(ids)
        return self.expected, self.expected - missing, sum(d.posts for d in self.deps.values())

    async def serve(self) -> None:
        for dep in self.deps.values():
            await dep.start()
        loop = asyncio.get_running_loop()
        requests: asyncio.Queue[Any] = asyncio.Queue()
        loop.add_reader(self.conn.fileno(), lambda: requests.put_nowait(self.conn.recv()))
        self.conn.send("ready")
        while True:
            op, arg = await requests.get()
            if op == "expect":
                self.expect(arg)
                answer: Any = None
            elif op == "status":
                answer = self.status()
            elif op == "stop":
                await self.deps[arg].stop()
                answer = None
            elif op == "start":
                await self.deps[arg].start()
                answer = None
            elif op == "dump":
                answer = {
                    a: Record(d.arrivals, d.order, d.posts, d.bad_signatures, d.malformed)
                    for a, d in self.deps.items()
                }
            else:  # "exit"
                for dep in self.deps.values():
                    await dep.stop()
                self.conn.send(None)
                return
            self.conn.send(answer)


def _child_main(conn: Connection, specs: list[tuple[str, bytes, int]]) -> None:
    asyncio.run(_Child(conn, specs).serve())


class Departments:
    """The parent's handle on the departments' process."""

    def __init__(self, specs: list[tuple[str, bytes, int]]) -> None:
        self.secrets = {a: secret for a, secret, _ in specs}
        self.urls = {a: f"http://127.0.0.1:{port}/webhook" for a, _, port in specs}
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_child_main, args=(child, specs), daemon=True)
        self._lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        """The process's id, once started."""
        return self._proc.pid

    def __contains__(self, agency: object) -> bool:
        return agency in self.urls

    def __iter__(self) -> Any:
        return iter(self.urls)

    def __len__(self) -> int:
        return len(self.urls)

    async def start(self) -> None:
        """Start the process; return once every department listens."""
        self._proc.start()
        ready = await asyncio.to_thread(self._conn.recv)
        assert ready == "ready"

    def _call(self, op: str, arg: Any) -> Any:
        with self._lock:
            self._conn.send((op, arg))
            return self._conn.recv()

    async def call(self, op: str, arg: Any = None) -> Any:
        """One request to the process."""
        return await asyncio.to_thread(self._call, op, arg)

    async def expect(self, pairs: list[tuple[str, str]]) -> None:
        """Message ids each agency must receive (counted by :meth:`status`)."""
        if pairs:
            await self.call("expect", pairs)

    async def status(self) -> tuple[int, int, int]:
        """(expected deliveries, of them arrived, POSTs received in all)."""
        result: tuple[int, int, int] = await self.call("status")
        return result

    async def take_down(self, agency: str) -> None:
        """The agency's webhook goes away."""
        await self.call("stop", agency)

    async def bring_up(self, agency: str) -> None:
        """The agency's webhook is back, on the same port."""
        await self.call("start", agency)

    async def dump(self) -> dict[str, Record]:
        """Everything each department saw."""
        result: dict[str, Record] = await self.call("dump")
        return result

    async def close(self) -> None:
        """Stop the process."""
        if self._proc.is_alive():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.call("exit"), 30)
        await asyncio.to_thread(self._proc.join, 10)
        if self._proc.is_alive():
            self._proc.kill()
