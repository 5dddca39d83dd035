"""``casebus envelope encode|decode``, as a person debugging the bus runs them."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
from keykit import ALGORITHM

from bus.agencies import load_registry
from bus.agency_db import add_key, sync_agencies
from bus.settings import Settings
from bus.signing import PublicKeyRecord, write_keypair

DOC = {
    "kind": "clue.receipt",
    "sender": "ygh.enforcement.bureau",
    "recipients": ["ygh.regulator.planning"],
    "case_id": "YGH-2026-0001",
    "payload": {
        "clue_no": "阳规线〔2026〕7号",
        "decision": "ACCEPTED",
        "decided_at": "2026-11-28T08:00:00Z",
    },
}


def _run(
    exe: Path, env: dict[str, str], *args: str, stdin: bytes
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [str(exe), "envelope", *args], env=env, input=stdin, capture_output=True, timeout=60
    )


async def test_encode_then_decode_with_the_registry_checking_the_signature(
    settings: Settings, cli_env: dict[str, str], casebus_exe: Path, tmp_path: Path
) -> None:
    keys = write_keypair("ygh.enforcement.bureau", tmp_path, algorithm=ALGORITHM)
    conn = await asyncpg.connect(settings.database_url)
    try:
        await sync_agencies(conn, load_registry(settings.agencies_file))
        await add_key(
            conn,
            PublicKeyRecord.from_pem(
                keys.public_key.read_bytes(),
                agency_id="ygh.enforcement.bureau",
                valid_from=datetime(2020, 1, 1, tzinfo=UTC),
            ),
        )
    finally:
        await conn.close()

    enc = _run(
        casebus_exe,
        cli_env,
        "encode",
        "--key",
        str(keys.private_key),
        stdin=json.dumps(DOC).encode(),
    )
    assert enc.returncode == 0, enc.stderr
    assert enc.stdout[:2] == b"\xc3\x01"  # single-object encoding

    dec = _run(casebus_exe, cli_env, "decode", stdin=enc.stdout)
    assert dec.returncode == 0, dec.stderr
    out = json.loads(dec.stdout)
    assert out["payload"]["clue_no"] == "阳规线〔2026〕7号"
    assert out["payload_schema"]["kind"] == "clue.receipt"
    assert out["signature_valid"] is True

    # Flip one byte of the payload's text: still decodes, no longer verifies.
    value = bytearray(enc.stdout)
    at = value.index("阳规线".encode())
    value[at + 1] ^= 0x01
    tampered = _run(casebus_exe, cli_env, "decode", stdin=bytes(value))
    if tampered.returncode == 0:
        result = json.loads(tampered.stdout)
        assert result["signature_valid"] is False
        assert result["signature_error"] == "bad_signature"
    else:
        assert b"cannot decode" in tampered.stderr

    garbage = _run(casebus_exe, cli_env, "decode", stdin=b"\x00\x01\x02")
    assert garbage.returncode == 1 and b"cannot decode" in garbage.stderr


def test_encode_lists_every_problem_of_a_bad_payload(
    cli_env: dict[str, str], casebus_exe: Path, tmp_path: Path
) -> None:
    keys = write_keypair("ygh.enforcement.bureau", tmp_path, algorithm=ALGORITHM)
    bad = {**DOC, "payload": {"decision": "MAYBE", "decided_at": "nope"}}
    enc = _run(
        casebus_exe,
        cli_env,
        "encode",
        "--key",
        str(keys.private_key),
        stdin=json.dumps(bad).encode(),
    )
    assert enc.returncode == 2 and enc.stdout == b""
    problems = {p["path"]: p["rule"] for p in json.loads(enc.stderr)["problems"]}
    assert problems == {
        "clue_no": "missing",
        "decision": "enum",
        "decided_at": "datetime_from_date_parsing",
    }
