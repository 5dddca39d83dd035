"""The router's store contract (tests/store_contract.py) against the in-memory store: no
Kafka, no PostgreSQL."""

from __future__ import annotations

import pytest
from store_contract import RouterStoreContract

from bus.router.store import InMemoryRouterStore, RouterStore


class TestInMemoryRouterStore(RouterStoreContract):
    @pytest.fixture
    def store(self) -> InMemoryRouterStore:
        return InMemoryRouterStore()

    async def grant(self, store: RouterStore, agency_id: str, sha256: str) -> None:
        assert isinstance(store, InMemoryRouterStore)
        store.holdings.add((agency_id, sha256))


async def test_the_in_memory_ledger_is_asked_only_for_claims() -> None:
    store = InMemoryRouterStore(holdings=[("a", "b")])
    await store.held([])
    assert store.ledger_reads == 0
    assert await store.held([("a", "b")]) == {("a", "b")}
    assert store.ledger_reads == 1
