"""The contract of the router's store port (bus.router.store), written once and run against
every implementation: tests/test_router_store_memory.py (in memory, no infrastructure) and
tests/test_router_store_postgres.py (PostgreSQL). A subclass provides the ``store`` fixture
(a fresh, empty store inside one transaction) and :meth:`grant` (an agency comes to hold a
file of the bus's store).
"""

from __future__ import annotations

import hashlib
import uuid

import pytest
from aiokafka.structs import ConsumerRecord

from bus.audit.log import AuditRecord
from bus.errors import EntryNotFoundError, Problem
from bus.router.store import RouterStore, Seen
from bus.router.verdict import Refused

POLICE = "ygh.police.bureau"
COURT = "ygh.court.intermediate"


def record(message_id: uuid.UUID, event_kind: str) -> AuditRecord:
    """An audit record whose leaf names what it is about."""
    return AuditRecord(event_kind, message_id, "YGH-STORE-1", f"{event_kind}:{message_id}".encode())


def too_large(value: bytes, offset: int) -> Refused:
    """A refused record kept by digest, read at ``offset``."""
    kafka: ConsumerRecord[bytes, bytes] = ConsumerRecord(
        "t.submit",
        1,
        offset,
        1_780_000_000_000,
        0,
        b"key",
        value,
        None,
        3,
        len(value),
        [("ce_source", POLICE.encode())],
    )
    return Refused(
        record=kafka,
        value=value,
        value_sha256=hashlib.sha256(value).digest(),
        outcome="dead",
        code="too_large",
        problems=(Problem("record", "too_large", "too large", len(value)),),
        digest_only=True,
    )


class RouterStoreContract:
    """What every implementation of the router's store port promises."""

    async def grant(self, store: RouterStore, agency_id: str, sha256: str) -> None:
        """Make ``agency_id`` hold the stored file ``sha256`` (it uploaded it)."""
        raise NotImplementedError

    async def test_a_message_never_accepted_is_not_seen(self, store: RouterStore) -> None:
        assert await store.seen([uuid.uuid4(), uuid.uuid4()]) == {}
        assert await store.seen([]) == {}

    async def test_a_remembered_message_is_seen_as_it_was_first_noted(
        self, store: RouterStore
    ) -> None:
        a, b, other = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        first = Seen(b"\x01" * 32, 2, 40, 7)
        await store.remember([(a, first), (b, Seen(b"\x02" * 32, 0, 41, 8))])
        await store.remember([(a, Seen(b"\x03" * 32, 1, 99, 12))])  # a rerun's second note
        await store.remember([])
        assert await store.seen([a, other]) == {a: first}
        assert set(await store.seen([a, b, other])) == {a, b}

    async def test_appends_are_consecutive_and_idempotent_per_message_and_event(
        self, store: RouterStore
    ) -> None:
        a, b = uuid.uuid4(), uuid.uuid4()
        entries = await store.append([record(a, "accepted"), record(b, "rejected")])
        base = entries[0].index
        assert [(e.index - base, e.message_id, e.event_kind, e.new) for e in entries] == [
            (0, a, "accepted", True),
            (1, b, "rejected", True),
        ]
        again = await store.append(
            [record(a, "delivered"), record(a, "accepted"), record(b, "rejected")]
        )
        assert [(e.index - base, e.event_kind, e.new) for e in again] == [
            (2, "delivered", True),
            (0, "accepted", False),
            (1, "rejected", False),
        ]
        assert await store.append([]) == []

    async def test_one_record_twice_in_one_append_is_appended_once(
        self, store: RouterStore
    ) -> None:
        a = uuid.uuid4()
        first, second = await store.append([record(a, "rejected"), record(a, "rejected")])
        assert first.index == second.index and (first.new, second.new) == (True, False)

    async def test_an_appended_leaf_reads_back_and_a_missing_one_is_not_found(
        self, store: RouterStore
    ) -> None:
        a = uuid.uuid4()
        await store.append([record(a, "accepted"), record(a, "delivered")])
        assert await store.leaf(a, "delivered") == f"delivered:{a}".encode()
        assert await store.leaf(a, "accepted") == f"accepted:{a}".encode()
        with pytest.raises(EntryNotFoundError):
            await store.leaf(a, "rejected")
        with pytest.raises(EntryNotFoundError):
            await store.leaf(uuid.uuid4(), "delivered")

    async def test_only_claims_that_hold_are_answered(self, store: RouterStore) -> None:
        mine, theirs = hashlib.sha256(b"mine").hexdigest(), hashlib.sha256(b"theirs").hexdigest()
        await self.grant(store, POLICE, mine)
        await self.grant(store, COURT, theirs)
        claims = [(POLICE, mine), (POLICE, theirs), (COURT, mine), (POLICE, mine)]
        assert await store.held(claims) == {(POLICE, mine)}
        assert await store.held([]) == set()

    async def test_a_body_is_kept_once_per_digest(self, store: RouterStore) -> None:
        big, other = b"x" * 5000, b"y" * 5000
        assert await store.kept_body(hashlib.sha256(big).digest()) is None
        await store.keep_bodies([too_large(big, 3), too_large(big, 4), too_large(other, 5)])
        await store.keep_bodies([too_large(big, 6)])
        await store.keep_bodies([])
        assert await store.kept_body(hashlib.sha256(big).digest()) == big
        assert await store.kept_body(hashlib.sha256(other).digest()) == other
