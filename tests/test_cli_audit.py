"""The procuratorate's audit commands, run as an operator would: prove, verify offline,
replay the log, and see a tampered log refused."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from bus.audit.checkpointer import Checkpointer
from bus.audit.events import message_leaf
from bus.audit.log import AuditLog, AuditRecord
from bus.models import PAYLOAD_MODELS
from bus.settings import Settings
from bus.signing import Ed25519Signer, write_keypair
from bus.testing import make_party


def _run(exe: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(exe), *args], env=env, capture_output=True, text=True, timeout=60)


async def test_prove_then_verify_bundle_offline_and_replay_the_log(
    settings: Settings,
    cli_env: dict[str, str],
    casebus_exe: Path,
    tmp_path: Path,
    superuser_url: str,
) -> None:
    bus_key = write_keypair("casebus", tmp_path / "bus")
    env = {
        **cli_env,
        "CASEBUS_BUS_KEY_FILE": str(bus_key.private_key),
        "CASEBUS_AUDIT_ORIGIN": "test.casebus/audit",
    }
    party = make_party("ygh.regulator.planning", tmp_path / "keys")
    ack = PAYLOAD_MODELS["bus.ack"](
        original_message_id=uuid.uuid4(),
        acknowledged_by="ygh.regulator.planning",
        acknowledged_at=datetime.now(UTC),
    )
    env_msg = party.envelope(ack, recipients=["ygh.enforcement.bureau"], case_id="YGH-9")
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
    try:
        async with pool.acquire() as conn, conn.transaction():
            await AuditLog().append(
                conn,
                [
                    AuditRecord(
                        "accepted",
                        env_msg.message_id,
                        "YGH-9",
                        message_leaf(
                            "accepted",
                            message_id=env_msg.message_id,
                            case_id="YGH-9",
                            at=datetime.now(UTC),
                            value=party.value(env_msg),
                            key=party.key_record(),
                        ),
                    ),
                    *(
                        AuditRecord("accepted", uuid.uuid4(), "YGH-9", f"x{i}".encode())
                        for i in range(6)
                    ),
                ],
            )
        signer = Ed25519Signer.from_file(bus_key.private_key, agency_id="casebus")
        await Checkpointer(
            pool, origin="test.casebus/audit", private_key=signer.private_key
        ).checkpoint()
    finally:
        await pool.close()

    proved = _run(casebus_exe, env, "audit", "prove", str(env_msg.message_id))
    assert proved.returncode == 0, proved.stderr
    bundle = json.loads(proved.stdout)
    assert bundle["leaf_index"] == 0 and bundle["tree_size"] == 7

    # A verifier with a copy of two files and no database at all.
    offline = tmp_path / "procuratorate"
    offline.mkdir()
    (offline / "bundle.json").write_text(proved.stdout)
    shutil.copy(bus_key.public_key, offline / "log.pub.pem")
    no_db = {**env, "CASEBUS_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"}
    ok = _run(
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
    bad = _run(
        casebus_exe,
        no_db,
        "audit",
        "verify-bundle",
        str(offline / "bad.json"),
        "--log-key",
        str(offline / "log.pub.pem"),
    )
    assert bad.returncode == 1 and "FAILED: inclusion_proof" in bad.stderr

    replay = _run(casebus_exe, env, "audit", "verify")
    assert replay.returncode == 0, replay.stderr
    assert "OK: 7 entries and 1 checkpoints verified" in replay.stdout

    attacker = await asyncpg.connect(superuser_url)
    try:
        async with attacker.transaction():
            await attacker.execute("SET LOCAL session_replication_role = replica")
            await attacker.execute("DELETE FROM audit_entries WHERE idx = 4")
    finally:
        await attacker.close()
    replay = _run(casebus_exe, env, "audit", "verify")
    assert replay.returncode == 1
    assert "FAILED at index 4" in replay.stderr
