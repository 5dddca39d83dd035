"""The router's store contract (tests/store_contract.py) against PostgreSQL, each test on a
database of its own, inside one transaction as the router runs its audit."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
from store_contract import RouterStoreContract

from bus.attachments import record_upload
from bus.audit.log import AuditLog
from bus.router.store import RouterStore
from bus.router.store_pg import PostgresRouterStore

pytestmark = [pytest.mark.integration]


class TestPostgresRouterStore(RouterStoreContract):
    @pytest.fixture
    async def store(self, database_url: str) -> AsyncIterator[PostgresRouterStore]:
        conn = await asyncpg.connect(database_url)
        try:
            async with conn.transaction():
                yield PostgresRouterStore(conn, AuditLog())
        finally:
            await conn.close()

    async def grant(self, store: RouterStore, agency_id: str, sha256: str) -> None:
        assert isinstance(store, PostgresRouterStore)
        await record_upload(store._conn, sha256, agency_id)
