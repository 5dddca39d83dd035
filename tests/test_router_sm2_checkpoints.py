"""A router under the 国密 profile, on the real broker and database: an SM2 bus key signs the
receipts and tree heads (sm2-sm3), an Ed25519 log key signs the checkpoints' C2SP line, the
bus key adds the SM2 line, and every verifier of the log (``casebus audit verify``, the
procuratorate's monitor, evidence bundles) requires that line and refuses a checkpoint whose
SM2 line was stripped."""

from __future__ import annotations

import json
import os
from pathlib import Path

import asyncpg
import pytest
from buskit import Bus, receipt_payload, run_cli

from bus.agency_db import PgKeyStore
from bus.audit.checkpoint import (
    load_log_key,
    parse_note,
    sm2_key_id,
    verify_signed_checkpoint,
)
from bus.audit.evidence import build_bundle, verify_bundle
from bus.audit.log import AuditLog
from bus.audit.monitor import DatabaseProofSource, Monitor, registry_sm2_keys
from bus.errors import BundleError, CheckpointError, ConfigError
from bus.router.app import run_router
from bus.signing import SM2_SM3, Sm2Signer, load_signer, verify_envelope, write_keypair

POLICE = "ygh.police.bureau"
BUREAU = "ygh.enforcement.bureau"
PROC = "ygh.procuratorate"


def _without_sm2_line(note: str, point: bytes, origin: str) -> str:
    """``note`` with the bus's SM2 signature line taken out (what an attacker who holds only
    the log's Ed25519 key could publish)."""
    text, signatures = parse_note(note)
    key_id = sm2_key_id(origin, point)
    kept = [s.line() for s in signatures if s.key_id != key_id]
    assert len(kept) == len(signatures) - 1, "the note had no SM2 line to strip"
    return text + "\n" + "".join(f"{line}\n" for line in kept)


async def test_an_sm2_bus_key_without_a_log_key_stops_the_router(bus: Bus, tmp_path: Path) -> None:
    sm2_bus = write_keypair("casebus", tmp_path / "sm2-bus", algorithm=SM2_SM3)
    settings = bus.settings.model_copy(
        update={"bus_key_file": sm2_bus.private_key, "crypto_profile": "sm2"}
    )
    with pytest.raises(ConfigError, match="CASEBUS_AUDIT_LOG_KEY_FILE"):
        await run_router(settings, handle_signals=False)


async def test_the_router_under_the_sm2_profile_and_every_verifier_of_its_log(
    bus: Bus, tmp_path: Path, casebus_exe: Path, superuser_url: str
) -> None:
    sm2_bus = write_keypair("casebus", tmp_path / "sm2-bus", algorithm=SM2_SM3)
    log_files = write_keypair("casebus.log", tmp_path / "log")
    profile = {
        "bus_key_file": sm2_bus.private_key,
        "audit_log_key_file": log_files.private_key,
        "crypto_profile": "sm2",
    }
    settings = bus.settings.model_copy(update=profile)
    origin = settings.audit_origin
    bus_signer = load_signer(sm2_bus.private_key, agency_id="casebus")
    assert isinstance(bus_signer, Sm2Signer)
    point = bus_signer.public_key
    log_public = load_log_key(log_files.private_key).public_key()

    police = await bus.party(POLICE)
    sent = [
        police.envelope(receipt_payload(i), recipients=[BUREAU], case_id=f"YGH-SM2-{i}")
        for i in range(3)
    ]
    async with bus.router(**profile):
        await bus.submit(*sent)
        await bus.inbox(BUREAU, want=3)
        receipts = [
            e for e in bus.envelopes(await bus.inbox(POLICE, want=3)) if e.kind == "bus.delivered"
        ]
        heads = [
            e
            for e in bus.envelopes(await bus.inbox(PROC, want=4, timeout_s=30))
            if e.kind == "audit.tree_head"
        ]

    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
    try:
        # The router registered its SM2 key; receipts and tree heads are signed with it.
        assert await registry_sm2_keys(pool) == (point,)
        assert len(receipts) == 3 and heads
        for envelope in [*receipts, *heads]:
            assert envelope.signature.algorithm == SM2_SM3
            assert envelope.signature.key_id == bus_signer.key_id
            # Checked now, as their receiver does: a receipt's sent_at is when the broker took
            # the submission, which may precede the router's first registration of its key.
            record = await verify_envelope(envelope, PgKeyStore(pool))
            assert record.public_key == point

        # The checkpoint carries both lines, and both verify.
        note = bus.payload(heads[-1]).checkpoint  # type: ignore[attr-defined]
        _, signatures = parse_note(note)
        assert len(signatures) == 2
        cp = verify_signed_checkpoint(note, origin, log_public, origin=origin, sm2_keys=(point,))
        assert cp.size >= 6
        stripped = _without_sm2_line(note, point, origin)
        # What a verifier that knows only Ed25519 accepts, a 国密 verifier refuses.
        assert verify_signed_checkpoint(stripped, origin, log_public) == cp
        with pytest.raises(CheckpointError, match="unknown_key"):
            verify_signed_checkpoint(stripped, origin, log_public, sm2_keys=(point,))

        # The procuratorate's monitor reads the registry and requires the SM2 line.
        monitor = Monitor(pool, origin=origin, log_key=log_public, proofs=DatabaseProofSource(pool))
        refused = await monitor.observe(stripped)
        assert not refused.ok and refused.alarm == "bad_signature"
        assert "no SM2 signature" in refused.detail
        assert (await monitor.observe(note)).ok

        # An evidence bundle of a receipt's message verifies with the bus's SM2 key, and not
        # once its checkpoint lost the SM2 line.
        bundle = await build_bundle(pool, sent[0].message_id)
        verdict = await verify_bundle(bundle, log_key=log_public, sm2_keys=(point,))
        assert verdict.sm2_checked and "with the bus's SM2 signature" in verdict.line()
        bundle_note = bundle["checkpoint"]
        bad = {**bundle, "checkpoint": _without_sm2_line(bundle_note, point, origin)}
        with pytest.raises(BundleError, match="checkpoint_signature"):
            await verify_bundle(bad, log_key=log_public, sm2_keys=(point,))

        stored = await AuditLog().checkpoints(pool)
    finally:
        await pool.close()

    # `casebus audit verify`, as the procuratorate runs it, from the registry's keys.
    env = settings.to_env(os.environ)
    ok = run_cli(casebus_exe, env, "audit", "verify")
    assert ok.returncode == 0, ok.stderr
    assert "carries the bus's SM2 signature" in ok.stdout
    # `casebus audit verify-bundle` offline, given the log's and the bus's public keys.
    proved = run_cli(casebus_exe, env, "audit", "prove", str(sent[1].message_id))
    assert proved.returncode == 0, proved.stderr
    bundle_file = tmp_path / "bundle.json"
    bundle_file.write_text(proved.stdout)
    keys = ["--log-key", str(log_files.public_key), "--bus-key", str(sm2_bus.public_key)]
    offline = run_cli(casebus_exe, env, "audit", "verify-bundle", str(bundle_file), *keys)
    assert offline.returncode == 0, offline.stderr
    assert "signed checkpoint (with the bus's SM2 signature) verified" in offline.stdout
    proved_bundle = json.loads(proved.stdout)
    proved_bundle["checkpoint"] = _without_sm2_line(proved_bundle["checkpoint"], point, origin)
    bundle_file.write_text(json.dumps(proved_bundle))
    refused = run_cli(casebus_exe, env, "audit", "verify-bundle", str(bundle_file), *keys)
    assert refused.returncode == 1, refused.stdout
    assert "FAILED: checkpoint_signature: unknown_key" in refused.stderr

    sm2_vkey = run_cli(casebus_exe, env, "audit", "log-key", "--sm2")
    assert sm2_vkey.returncode == 0, sm2_vkey.stderr
    assert sm2_vkey.stdout.split("+")[1] == sm2_key_id(origin, point).hex()

    # The database's owner strips the SM2 line from one stored checkpoint: the replay (which
    # checks the Ed25519 line) still holds, the SM2 check does not.
    victim = stored[0]
    attacker = await asyncpg.connect(superuser_url)
    try:
        async with attacker.transaction():
            await attacker.execute("SET LOCAL session_replication_role = replica")
            await attacker.execute(
                "UPDATE audit_checkpoints SET note = $1 WHERE tree_size = $2",
                _without_sm2_line(victim.note, point, origin),
                victim.tree_size,
            )
    finally:
        await attacker.close()
    bad = run_cli(casebus_exe, env, "audit", "verify")
    assert bad.returncode == 1, bad.stdout
    assert f"FAILED: checkpoint {victim.tree_size}: unknown_key" in bad.stderr
    assert "no SM2 signature" in bad.stderr

    # A deployment that moved to the 国密 profile has checkpoints from before its first SM2 key:
    # the registry's keys are required from when the first became valid, not of older heads.
    # Here the key is made to start just after the stripped checkpoint, as if that head had
    # been signed before the move.
    attacker = await asyncpg.connect(superuser_url)
    try:
        await attacker.execute(
            "UPDATE agency_keys SET valid_from = to_timestamp($1 / 1000.0) WHERE key_id = $2",
            victim.timestamp_ms + 1,
            bus_signer.key_id,
        )
    finally:
        await attacker.close()
    migrated = run_cli(casebus_exe, env, "audit", "verify")
    assert migrated.returncode == 0, migrated.stderr
    assert "every checkpoint since 20" in migrated.stdout, migrated.stdout
    assert "carries the bus's SM2 signature" in migrated.stdout
