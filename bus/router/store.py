"""What the router keeps between batches, as a port: the messages it accepted (by id, with
their digest and source offset), the audit log it appends to, the attachment ledger it checks
and the bodies of records kept by digest (design §6, §7).

The router's rules (bus.router.plan) see only what this port answers; PostgreSQL
(bus.router.store_pg) is the real implementation, :class:`InMemoryRouterStore` the one the
millisecond tests use. One contract suite (tests/store_contract.py) runs against both.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from bus.audit.log import AppendedEntry, AuditRecord
from bus.errors import EntryNotFoundError
from bus.router.verdict import Refused

__all__ = ["InMemoryRouterStore", "RouterStore", "Seen"]


@dataclass(frozen=True, slots=True)
class Seen:
    """A message the router accepted: its bytes' digest, where it was read, its audit index."""

    value_sha256: bytes
    partition: int
    offset: int
    audit_index: int


class RouterStore(Protocol):
    """The router's stores, inside one transaction per batch."""

    async def seen(self, message_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Seen]:
        """Which of ``message_ids`` were accepted before, and how."""
        ...

    async def remember(self, accepted: Sequence[tuple[uuid.UUID, Seen]]) -> None:
        """Note messages as accepted; one noted before keeps what was noted first."""
        ...

    async def held(self, claims: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which ``(agency_id, sha256)`` claims hold: the agency uploaded the file or may read
        it already. No claims, no query."""
        ...

    async def keep_bodies(self, verdicts: Sequence[Refused]) -> None:
        """Keep each record whole under its digest; a digest kept before keeps its first."""
        ...

    async def kept_body(self, value_sha256: bytes) -> bytes | None:
        """The value kept under ``value_sha256``, if any."""
        ...

    async def append(self, records: Sequence[AuditRecord]) -> list[AppendedEntry]:
        """Append to the audit log in order; idempotent per (message id, event kind): a
        record already in the log keeps its index and is not new."""
        ...

    async def leaf(self, message_id: uuid.UUID, event_kind: str) -> bytes:
        """The leaf of a message's event (raises EntryNotFoundError)."""
        ...


class InMemoryRouterStore:
    """The router's stores in dictionaries: for tests of the rules, never for a process."""

    def __init__(self, *, holdings: Iterable[tuple[str, str]] = ()) -> None:
        self.accepted: dict[uuid.UUID, Seen] = {}
        self.holdings: set[tuple[str, str]] = set(holdings)
        self.bodies: dict[bytes, bytes] = {}
        self.log: list[AuditRecord] = []
        self._index: dict[tuple[uuid.UUID, str], int] = {}
        self.ledger_reads = 0

    async def seen(self, message_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Seen]:
        return {i: self.accepted[i] for i in message_ids if i in self.accepted}

    async def remember(self, accepted: Sequence[tuple[uuid.UUID, Seen]]) -> None:
        for message_id, seen in accepted:
            self.accepted.setdefault(message_id, seen)

    async def held(self, claims: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
        wanted = set(claims)
        if not wanted:
            return set()
        self.ledger_reads += 1
        return wanted & self.holdings

    async def keep_bodies(self, verdicts: Sequence[Refused]) -> None:
        for v in verdicts:
            self.bodies.setdefault(v.value_sha256, v.value)

    async def kept_body(self, value_sha256: bytes) -> bytes | None:
        return self.bodies.get(value_sha256)

    async def append(self, records: Sequence[AuditRecord]) -> list[AppendedEntry]:
        out = []
        for r in records:
            key = (r.message_id, r.event_kind)
            new = key not in self._index
            if new:
                self._index[key] = len(self.log)
                self.log.append(r)
            out.append(AppendedEntry(self._index[key], r.event_kind, r.message_id, new))
        return out

    async def leaf(self, message_id: uuid.UUID, event_kind: str) -> bytes:
        index = self._index.get((message_id, event_kind))
        if index is None:
            raise EntryNotFoundError(f"no audit entry for message {message_id} ({event_kind})")
        return self.log[index].leaf
