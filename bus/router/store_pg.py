"""The router's stores in PostgreSQL (bus.router.store's port): ``router_accepted``, the audit
log's tables, the attachment ledger and ``dead_letter_bodies``, all on the one connection
whose transaction the router opened for the batch, so a batch's audit commits whole or not
at all.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterable, Sequence

from bus.attachments import held
from bus.audit.log import AppendedEntry, AuditLog, AuditRecord, LogTail
from bus.db import Conn
from bus.router.store import Seen
from bus.router.verdict import Refused

__all__ = ["PostgresRouterStore"]


class PostgresRouterStore:
    """The port on one connection, inside the caller's transaction: one store for each
    transaction, since it remembers where its appends left the audit log."""

    def __init__(self, conn: Conn, audit_log: AuditLog) -> None:
        self._conn = conn
        self._log = audit_log
        # Where this transaction's last append left the log: a batch appends twice (its
        # submissions, then their receipts), and the second goes on from the first.
        self._tail: LogTail | None = None

    async def seen(self, message_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Seen]:
        rows = await self._conn.fetch(
            "SELECT * FROM router_accepted WHERE message_id = ANY($1::uuid[])", message_ids
        )
        return {
            r["message_id"]: Seen(
                bytes(r["value_sha256"]), r["src_partition"], r["src_offset"], r["audit_index"]
            )
            for r in rows
        }

    async def remember(self, accepted: Sequence[tuple[uuid.UUID, Seen]]) -> None:
        if not accepted:
            return
        await self._conn.execute(  # one round trip for the whole batch
            """INSERT INTO router_accepted
               (message_id, value_sha256, src_partition, src_offset, audit_index)
               SELECT * FROM unnest($1::uuid[], $2::bytea[], $3::int[], $4::bigint[],
                                    $5::bigint[])
               ON CONFLICT (message_id) DO NOTHING""",
            [message_id for message_id, _ in accepted],
            [s.value_sha256 for _, s in accepted],
            [s.partition for _, s in accepted],
            [s.offset for _, s in accepted],
            [s.audit_index for _, s in accepted],
        )

    async def held(self, claims: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
        return await held(self._conn, claims)

    async def keep_bodies(self, verdicts: Sequence[Refused]) -> None:
        for v in verdicts:
            r = v.record
            headers = [
                {"key": k, "value": base64.b64encode(bytes(h or b"")).decode("ascii")}
                for k, h in r.headers or ()
            ]
            await self._conn.execute(
                """INSERT INTO dead_letter_bodies (value_sha256, src_topic, src_partition,
                       src_offset, record_key, record_value, record_headers, received_at)
                   VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8)
                   ON CONFLICT (value_sha256) DO NOTHING""",
                v.value_sha256,
                r.topic,
                r.partition,
                r.offset,
                r.key,
                v.value,
                json.dumps(headers),
                v.received_at,
            )

    async def kept_body(self, value_sha256: bytes) -> bytes | None:
        value = await self._conn.fetchval(
            "SELECT record_value FROM dead_letter_bodies WHERE value_sha256 = $1", value_sha256
        )
        return None if value is None else bytes(value)

    async def append(self, records: Sequence[AuditRecord]) -> list[AppendedEntry]:
        out, self._tail = await self._log.append_after(self._conn, records, self._tail)
        return out

    async def leaf(self, message_id: uuid.UUID, event_kind: str) -> bytes:
        return (await self._log.entry(self._conn, message_id, event_kind)).leaf
