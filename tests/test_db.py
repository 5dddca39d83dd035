"""Migrations on the real PostgreSQL: ordered, recorded, idempotent, tamper-aware."""

from __future__ import annotations

import shutil
from pathlib import Path

import asyncpg
import pytest

from bus.db import MIGRATIONS_DIR, create_pool, discover, migrate
from bus.errors import ConfigError


async def test_migrations_applied_twice_change_nothing_the_second_time(database_url: str) -> None:
    # The test database is already migrated from the template: a rerun applies nothing.
    assert await migrate(database_url) == []
    assert await migrate(database_url) == []
    conn = await asyncpg.connect(database_url)
    try:
        versions = [r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")]
        tables = {
            r["tablename"]
            for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname='public'")
        }
    finally:
        await conn.close()
    assert versions == [m.version for m in discover()]
    assert {"agencies", "agency_keys", "schema_migrations"} <= tables


async def test_a_new_migration_is_applied_in_order_and_once(
    database_url: str, tmp_path: Path
) -> None:
    shutil.copytree(MIGRATIONS_DIR, tmp_path, dirs_exist_ok=True)
    (tmp_path / "9998_first.sql").write_text("CREATE TABLE t_first (x int);")
    (tmp_path / "9999_second.sql").write_text("INSERT INTO t_first VALUES (1);")
    applied = await migrate(database_url, tmp_path)
    assert [m.version for m in applied] == [9998, 9999]
    assert await migrate(database_url, tmp_path) == []
    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM t_first") == 1
    finally:
        await conn.close()


async def test_an_edited_applied_migration_is_refused(database_url: str, tmp_path: Path) -> None:
    shutil.copytree(MIGRATIONS_DIR, tmp_path, dirs_exist_ok=True)
    first = sorted(tmp_path.glob("*.sql"))[0]
    first.write_text(first.read_text() + "\n-- edited afterwards\n")
    with pytest.raises(ConfigError, match="changed after it was applied"):
        await migrate(database_url, tmp_path)


def test_misnamed_migration_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "1_bad.sql").write_text("SELECT 1;")
    with pytest.raises(ConfigError, match=r"NNNN_snake_name\.sql"):
        discover(tmp_path)


async def test_a_pooled_connection_goes_back_without_a_reset_round_trip(database_url: str) -> None:
    # asyncpg's default reset sends "... RESET ALL" on every release; casebus's pools do not.
    pool = await create_pool(database_url, max_size=1)
    sent: list[str] = []
    try:
        async with pool.acquire() as conn:
            conn.add_query_logger(lambda record: sent.append(record.query))
            await conn.fetchval("SELECT 1")
        async with pool.acquire() as conn:  # the same connection: the pool holds one
            await conn.fetchval("SELECT 2")
    finally:
        await pool.close()
    assert sent == ["SELECT 1", "SELECT 2"], sent


async def test_a_connection_given_back_inside_a_transaction_comes_back_rolled_back(
    database_url: str,
) -> None:
    pool = await create_pool(database_url, max_size=1)
    try:
        async with pool.acquire() as conn:
            first = await conn.fetchval("SELECT pg_backend_pid()")
            await conn.execute("BEGIN")
            await conn.execute("CREATE TEMP TABLE left_open (x int)")
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT pg_backend_pid()") == first
            assert not conn.is_in_transaction()
            assert await conn.fetchval("SELECT to_regclass('pg_temp.left_open')") is None
            # what the pool was started with is still set: the session was not reset to defaults
            assert await conn.fetchval("SHOW plan_cache_mode") == "force_custom_plan"
    finally:
        await pool.close()
