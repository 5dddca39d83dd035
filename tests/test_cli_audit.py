"""The procuratorate's audit commands, run as an operator would: prove, verify offline,
replay the log, and see a tampered log refused."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import asyncpg
from buskit import accepted, append_and_checkpoint, audit_cli, run_cli, signed_ack

from bus.audit.log import AuditLog, AuditRecord
from bus.party import make_party
from bus.settings import Settings


async def test_prove_then_verify_bundle_offline_and_replay_the_log(
    settings: Settings,
    cli_env: dict[str, str],
    casebus_exe: Path,
    tmp_path: Path,
    superuser_url: str,
) -> None:
    env, bus_key = audit_cli(cli_env, tmp_path / "bus")
    party = make_party("ygh.regulator.planning", tmp_path / "keys")
    env_msg = signed_ack(party, recipients=["ygh.enforcement.bureau"], case_id="YGH-9")
    others = [AuditRecord("accepted", uuid.uuid4(), "YGH-9", f"x{i}".encode()) for i in range(6)]
    await append_and_checkpoint(
        settings.database_url, bus_key.private_key, [accepted(party, env_msg), *others]
    )

    proved = run_cli(casebus_exe, env, "audit", "prove", str(env_msg.message_id))
    assert proved.returncode == 0, proved.stderr
    bundle = json.loads(proved.stdout)
    assert bundle["leaf_index"] == 0 and bundle["tree_size"] == 7

    # A verifier with a copy of two files and no database at all.
    offline = tmp_path / "procuratorate"
    offline.mkdir()
    (offline / "bundle.json").write_text(proved.stdout)
    shutil.copy(bus_key.public_key, offline / "log.pub.pem")
    no_db = {**env, "CASEBUS_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"}
    ok = run_cli(
        casebus_exe,
        no_db,
        "audit",
        "verify-bundle",
        str(offline / "bundle.json"),
        "--log-key",
        str(offline / "log.pub.pem"),
    )
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("OK:") and str(env_msg.message_id) in ok.stdout

    text = (offline / "bundle.json").read_text()
    i = text.index('"leaf_index": 0')
    (offline / "bad.json").write_text(text[:i] + '"leaf_index": 1' + text[i + 15 :])
    bad = run_cli(
        casebus_exe,
        no_db,
        "audit",
        "verify-bundle",
        str(offline / "bad.json"),
        "--log-key",
        str(offline / "log.pub.pem"),
    )
    assert bad.returncode == 1 and "FAILED: inclusion_proof" in bad.stderr

    replay = run_cli(casebus_exe, env, "audit", "verify")
    assert replay.returncode == 0, replay.stderr
    assert "OK: 7 entries and 1 checkpoints verified" in replay.stdout

    attacker = await asyncpg.connect(superuser_url)
    try:
        async with attacker.transaction():
            await attacker.execute("SET LOCAL session_replication_role = replica")
            await attacker.execute("DELETE FROM audit_entries WHERE idx = 4")
    finally:
        await attacker.close()
    replay = run_cli(casebus_exe, env, "audit", "verify")
    assert replay.returncode == 1
    assert "FAILED at index 4" in replay.stderr


def _records(n: int, *, start: int = 0, rewrite: int | None = None) -> list[AuditRecord]:
    """``n`` entries from index ``start``, the same every time but for the one at ``rewrite``."""
    return [
        AuditRecord(
            "accepted",
            uuid.UUID(int=i + 1),
            "YGH-15",
            (b"rewritten" if i == rewrite else b"leaf %d" % i),
        )
        for i in range(start, start + n)
    ]


async def _owner_rewrites_history(owner_dsn: str, n: int, *, rewrite: int | None) -> None:
    """The insider's attack, by the role that owns the tables and with no key: switch the
    append-only triggers off, rewrite a leaf, rebuild the nodes, empty the checkpoints."""
    owner = await asyncpg.connect(owner_dsn)
    try:
        async with owner.transaction():
            for table in ("audit_entries", "audit_nodes", "audit_checkpoints"):
                await owner.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
            await owner.execute("DELETE FROM audit_entries")
            await owner.execute("DELETE FROM audit_nodes")
            await owner.execute("DELETE FROM audit_checkpoints")
            await AuditLog().append(owner, _records(n, rewrite=rewrite))
            for table in ("audit_entries", "audit_nodes", "audit_checkpoints"):
                await owner.execute(f"ALTER TABLE {table} ENABLE TRIGGER USER")
    finally:
        await owner.close()


async def test_verify_with_a_checkpoint_held_outside_catches_the_owner_rewriting_history(
    settings: Settings, cli_env: dict[str, str], casebus_exe: Path, tmp_path: Path
) -> None:
    env, key_files = audit_cli(cli_env, tmp_path / "bus")
    key = key_files.private_key
    held = tmp_path / "procuratorate-checkpoint.txt"
    held.write_text(await append_and_checkpoint(settings.database_url, key, _records(37)))

    await _owner_rewrites_history(settings.database_url, 37, rewrite=12)

    # Internally the rewritten log is consistent, and verify says that is all it checked.
    inside = run_cli(casebus_exe, env, "audit", "verify")
    assert inside.returncode == 0, inside.stderr
    assert "OK: 37 entries and 0 checkpoints verified" in inside.stdout
    assert "internal consistency only" in inside.stdout

    outside = run_cli(casebus_exe, env, "audit", "verify", "--checkpoint", str(held))
    assert outside.returncode == 1, outside.stdout
    assert "the database holds no signed checkpoint" in outside.stderr
    assert "root of the log at size 37 is not the one signed" in outside.stderr
    assert str(held) in outside.stderr


async def test_verify_with_a_checkpoint_held_outside_catches_a_log_cut_short(
    settings: Settings, cli_env: dict[str, str], casebus_exe: Path, tmp_path: Path
) -> None:
    env, key_files = audit_cli(cli_env, tmp_path / "bus")
    key = key_files.private_key
    await append_and_checkpoint(settings.database_url, key, _records(5))
    held = tmp_path / "held.txt"
    held.write_text(await append_and_checkpoint(settings.database_url, key, _records(4, start=5)))

    await _owner_rewrites_history(settings.database_url, 6, rewrite=None)

    out = run_cli(casebus_exe, env, "audit", "verify", "--checkpoint", str(held))
    assert out.returncode == 1, out.stdout
    assert "the log has 6 entries, fewer than the 9 of the checkpoint" in out.stderr


async def test_verify_accepts_a_log_that_grew_past_the_checkpoint_held_outside(
    settings: Settings, cli_env: dict[str, str], casebus_exe: Path, tmp_path: Path
) -> None:
    env, key_files = audit_cli(cli_env, tmp_path / "bus")
    key = key_files.private_key
    held = tmp_path / "held.txt"
    held.write_text(await append_and_checkpoint(settings.database_url, key, _records(5)))
    await append_and_checkpoint(settings.database_url, key, _records(8, start=5))

    out = run_cli(casebus_exe, env, "audit", "verify", "--checkpoint", str(held))
    assert out.returncode == 0, out.stderr
    assert "OK: 13 entries and 2 checkpoints verified" in out.stdout
    assert "consistent with the checkpoint of size 5" in out.stdout

    forged = tmp_path / "forged.txt"
    text = held.read_text()
    forged.write_text(text.replace("\n5\n", "\n4\n", 1))
    bad = run_cli(casebus_exe, env, "audit", "verify", "--checkpoint", str(forged))
    assert bad.returncode == 1
    assert f"{forged}: bad_signature" in bad.stderr
