"""The agency and key registry on the real PostgreSQL, as the router's key store."""

from __future__ import annotations

import subprocess
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from keykit import ALGORITHM

from bus.agencies import load_registry
from bus.agency_db import PgKeyStore, add_key, revoke_key, sync_agencies
from bus.errors import SignatureError
from bus.models import Envelope, Signature
from bus.settings import Settings
from bus.signing import (
    PublicKeyRecord,
    load_signer,
    sign_envelope,
    verify_envelope,
    write_keypair,
)

SENDER = "ygh.enforcement.bureau"


def _envelope() -> Envelope:
    mid = uuid.uuid4()
    return Envelope(
        message_id=mid,
        kind="case.test",
        schema_version=1,
        sender=SENDER,
        recipients=["ygh.police.bureau"],
        case_id="YGH-2026-0042",
        correlation_id=str(mid),
        causation_id=None,
        sent_at=datetime.now(UTC).replace(microsecond=0),
        due_at=None,
        payload=b"\xc3\x01" + bytes(8),
        attachments=[],
        signature=Signature(algorithm="ed25519", key_id="unsigned", value=b""),
    )


@pytest.fixture
async def pool(settings: Settings) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
    async with pool.acquire() as conn:
        await sync_agencies(conn, load_registry(settings.agencies_file))
    yield pool
    await pool.close()


async def test_sync_twice_changes_nothing_the_second_time(settings: Settings) -> None:
    registry = load_registry(settings.agencies_file)
    conn = await asyncpg.connect(settings.database_url)
    try:
        first = await sync_agencies(conn, registry)
        second = await sync_agencies(conn, registry)
        count = await conn.fetchval("SELECT count(*) FROM agencies")
    finally:
        await conn.close()
    assert sorted(first.inserted) == sorted(registry.ids())
    assert second.inserted == [] and second.updated == []
    assert count == len(registry.agencies)


async def test_signatures_verify_against_the_database_and_fail_for_each_key_state(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    files = write_keypair(SENDER, tmp_path, algorithm=ALGORITHM)
    signer = load_signer(files.private_key, agency_id=SENDER)
    now = datetime.now(UTC)
    await add_key(
        pool,
        PublicKeyRecord.from_pem(
            files.public_key.read_bytes(), agency_id=SENDER, valid_from=now - timedelta(days=1)
        ),
    )
    store = PgKeyStore(pool, ttl_s=0)
    signed = sign_envelope(_envelope(), signer)
    record = await verify_envelope(signed, store)
    assert record.key_id == files.key_id

    # A key nobody registered.
    other = write_keypair(SENDER, tmp_path / "other", algorithm=ALGORITHM)
    stranger = sign_envelope(_envelope(), load_signer(other.private_key, agency_id=SENDER))
    with pytest.raises(SignatureError) as unknown:
        await verify_envelope(stranger, store)
    assert unknown.value.reason == "unknown_key"

    # Checked after the key's end date.
    with pytest.raises(SignatureError) as before:
        await verify_envelope(signed, store, at=now - timedelta(days=2))
    assert before.value.reason == "key_not_yet_valid"

    await revoke_key(pool, files.key_id, at=now)
    with pytest.raises(SignatureError) as revoked:
        await verify_envelope(signed, store)
    assert revoked.value.reason == "revoked_key"


async def test_rotation_keeps_the_old_key_verifying_until_its_end_date(
    pool: asyncpg.Pool, cli_env: dict[str, str], casebus_exe: Path, tmp_path: Path
) -> None:
    old = write_keypair(SENDER, tmp_path / "old", algorithm=ALGORITHM)
    await add_key(
        pool,
        PublicKeyRecord.from_pem(
            old.public_key.read_bytes(),
            agency_id=SENDER,
            valid_from=datetime.now(UTC) - timedelta(days=30),
        ),
    )
    signed_before = sign_envelope(_envelope(), load_signer(old.private_key, agency_id=SENDER))
    out = tmp_path / "live"
    proc = subprocess.run(
        [
            str(casebus_exe),
            "agency",
            "key",
            "rotate",
            "--agency",
            SENDER,
            "--out",
            str(out),
            "--overlap-days",
            "2",
        ],
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"old key {old.key_id} verifies until" in proc.stdout

    store = PgKeyStore(pool, ttl_s=0)
    # Old signatures still verify during the overlap, and no longer after it.
    await verify_envelope(signed_before, store)
    with pytest.raises(SignatureError) as late:
        await verify_envelope(signed_before, store, at=datetime.now(UTC) + timedelta(days=3))
    assert late.value.reason == "expired_key"
    # The new key signs and verifies.
    new_signer = load_signer(out / f"{SENDER}.key.pem", agency_id=SENDER)
    await verify_envelope(sign_envelope(_envelope(), new_signer), store)
    assert (out / f"{SENDER}.key.pem").stat().st_mode & 0o077 == 0
