"""``casebus audit verify-bundle --attachments DIR``: with no database, a verifier holding an
evidence bundle and a folder of case files learns whether they are the very files the signed,
logged message refers to."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from buskit import accepted, append_and_checkpoint, audit_cli, run_cli, signed_ack

from bus.attachments import attachment_uri
from bus.models import Attachment
from bus.party import make_party
from bus.settings import Settings
from bus.signing import sign_envelope

pytestmark = pytest.mark.integration

FILES = {"移送书.pdf": b"%PDF-1.7 transfer letter", "现场照片.jpg": b"\xff\xd8\xff photo"}


async def test_verify_bundle_checks_the_case_files_against_the_signed_message(
    settings: Settings, cli_env: dict[str, str], casebus_exe: Path, tmp_path: Path
) -> None:
    env, bus_key = audit_cli(cli_env, tmp_path / "bus")
    party = make_party("ygh.enforcement.bureau", tmp_path / "keys")
    plain = signed_ack(party, recipients=["ygh.police.bureau"], case_id="YGH-20")
    attachments = [
        Attachment(
            name=name,
            media_type="application/pdf" if name.endswith(".pdf") else "image/jpeg",
            size_bytes=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            uri=attachment_uri(hashlib.sha256(data).hexdigest()),
        )
        for name, data in FILES.items()
    ]
    signed = sign_envelope(
        plain.model_copy(update={"attachments": attachments}), party.signer, codec=party.codec
    )
    await append_and_checkpoint(
        settings.database_url, bus_key.private_key, [accepted(party, signed)]
    )
    proved = run_cli(casebus_exe, env, "audit", "prove", str(signed.message_id))
    assert proved.returncode == 0, proved.stderr
    bundle = tmp_path / "bundle.json"
    bundle.write_text(proved.stdout)
    assert json.loads(proved.stdout)["message_id"] == str(signed.message_id)

    # The verifier's folder: one file under its name, one under its SHA-256.
    folder = tmp_path / "files"
    folder.mkdir()
    (folder / "移送书.pdf").write_bytes(FILES["移送书.pdf"])
    (folder / attachments[1].sha256).write_bytes(FILES["现场照片.jpg"])
    no_db = {**env, "CASEBUS_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"}
    args = ("audit", "verify-bundle", str(bundle), "--log-key", str(bus_key.public_key))
    ok = run_cli(casebus_exe, no_db, *args, "--attachments", str(folder))
    assert ok.returncode == 0, ok.stderr
    lines = ok.stdout.splitlines()
    assert lines[0].startswith("OK:")
    assert lines[1].startswith("OK 移送书.pdf") and lines[2].startswith("OK 现场照片.jpg")

    # One byte changed: the file is not the one the message refers to.
    (folder / "移送书.pdf").write_bytes(FILES["移送书.pdf"] + b" ")
    changed = run_cli(casebus_exe, no_db, *args, "--attachments", str(folder))
    assert changed.returncode == 1
    assert "MISMATCH 移送书.pdf" in changed.stdout and "FAILED" in changed.stderr

    # A file missing is a failure too.
    (folder / attachments[1].sha256).unlink()
    (folder / "移送书.pdf").write_bytes(FILES["移送书.pdf"])
    missing = run_cli(casebus_exe, no_db, *args, "--attachments", str(folder))
    assert missing.returncode == 1 and "MISSING 现场照片.jpg" in missing.stdout
