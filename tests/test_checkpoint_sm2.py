"""Checkpoints under the 国密 (sm2) profile: an Ed25519 log line plus an SM2 line by the bus key.

The SM2 line follows c2sp.org/signed-note's rule for a type it does not assign (0xff, then a
longer identifier: here the DER OID of SM2-with-SM3), and is checked here against that rule as
written, against the openssl CLI, and against verifiers that know only Ed25519.
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bus import sm2
from bus.audit.checkpoint import (
    Checkpoint,
    CheckpointSigner,
    VerifierKey,
    load_log_key,
    parse_note,
    parse_signed_checkpoint,
    parse_sm2_verifier_key,
    parse_verifier_key,
    sign_checkpoint,
    sm2_key_id,
    sm2_note_signature,
    sm2_verifier_key_string,
    verifier_key_string,
    verify_note,
    verify_signed_checkpoint,
    verify_sm2_note,
)
from bus.audit.cosignature import (
    add_signature_lines,
    cosign,
    cosigner_vkey,
    parse_cosigner_key,
    verify_cosignature,
)
from bus.audit.merkle import root_hash
from bus.errors import CheckpointError, ConfigError
from bus.signing import SM2_SM3, Ed25519Signer, Sm2Signer, load_signer, write_keypair
from bus.witness.protocol import CheckpointHead, judge_signatures

ORIGIN = "casebus.example/audit"
LOG_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
BUS = Sm2Signer(sm2.generate_private_key(), agency_id="casebus")
OTHER_BUS = Sm2Signer(sm2.generate_private_key(), agency_id="casebus")
SIGNER = CheckpointSigner(LOG_KEY, sm2=BUS)
CHECKPOINT = Checkpoint(ORIGIN, 3, root_hash([b"a", b"b", b"c"]), 1_780_000_000_000)
SM2_SM3_OID_DER = bytes([0x06, 0x08, 0x2A, 0x81, 0x1C, 0xCF, 0x55, 0x01, 0x83, 0x75])


def _oid_der(arcs: list[int]) -> bytes:
    """DER of an OBJECT IDENTIFIER, written out from X.690 to check the module's constant."""
    body = bytes([40 * arcs[0] + arcs[1]])
    for arc in arcs[2:]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body += bytes(reversed(chunk))
    return bytes([0x06, len(body)]) + body


def _lines(note: str) -> list[str]:
    return note[note.rindex("\n\n") + 2 :].splitlines()


def _strip_sm2(note: str, signer: Sm2Signer = BUS) -> str:
    """``note`` without the signature lines whose key id is ``signer``'s SM2 key id."""
    key_id = sm2_key_id(ORIGIN, signer.public_key)

    def is_sm2(line: str) -> bool:
        return line.startswith("— ") and base64.b64decode(line.split(" ")[2])[:4] == key_id

    return "".join(line for line in note.splitlines(keepends=True) if not is_sm2(line))


def _reason(note: str, keys: tuple[bytes, ...] = (BUS.public_key,)) -> str:
    with pytest.raises(CheckpointError) as caught:
        verify_signed_checkpoint(note, ORIGIN, LOG_KEY.public_key(), sm2_keys=keys)
    return caught.value.reason


# --- the format -------------------------------------------------------------------------------


def test_the_oid_constant_is_sm2_with_sm3() -> None:
    # 1.2.156.10197.1.501: SM2 signature with SM3 (GM/T 0006).
    assert _oid_der([1, 2, 156, 10197, 1, 501]) == SM2_SM3_OID_DER


def test_an_sm2_profile_checkpoint_has_an_ed25519_line_then_an_sm2_line() -> None:
    note = sign_checkpoint(CHECKPOINT, ORIGIN, SIGNER)
    text, signatures = parse_note(note)
    assert text.encode() == CHECKPOINT.body()
    assert [s.key_name for s in signatures] == [ORIGIN, ORIGIN]
    ed, sm = signatures
    # signed-note's recommended key id, for the assigned Ed25519 type and for 0xff + identifier.
    ed_material = ORIGIN.encode() + b"\n\x01" + Ed25519Signer(LOG_KEY, agency_id="c").public_key
    assert ed.key_id == hashlib.sha256(ed_material).digest()[:4]
    sm_material = ORIGIN.encode() + b"\n\xff" + SM2_SM3_OID_DER + BUS.public_key
    assert sm.key_id == hashlib.sha256(sm_material).digest()[:4]
    assert sm2.verify(BUS.public_key, sm.signature, CHECKPOINT.body())
    # The body is the C2SP body, unchanged: the Ed25519-only note of the same checkpoint
    # differs from it only by the SM2 line.
    ed_only = sign_checkpoint(CHECKPOINT, ORIGIN, LOG_KEY)
    assert note == ed_only + _lines(note)[1] + "\n"


def test_the_sm2_line_is_standard_sm2_with_sm3_and_the_default_id(tmp_path: Path) -> None:
    """Checked by the openssl CLI, with GM/T 0009's default distinguishing id and only it."""
    openssl = shutil.which("openssl")
    assert openssl, "the openssl CLI is needed (deploy/setup-system installs it)"
    note = sign_checkpoint(CHECKPOINT, ORIGIN, SIGNER)
    _, signatures = parse_note(note)
    (tmp_path / "pub.pem").write_bytes(sm2.Sm2PublicKey.from_raw(BUS.public_key).pem())
    (tmp_path / "text").write_bytes(CHECKPOINT.body())
    (tmp_path / "sig").write_bytes(signatures[1].signature)

    def openssl_verifies(distid: str) -> bool:
        done = subprocess.run(
            [
                *(openssl, "pkeyutl", "-verify", "-pubin", "-inkey", str(tmp_path / "pub.pem")),
                *("-rawin", "-digest", "sm3", "-in", str(tmp_path / "text")),
                *("-sigfile", str(tmp_path / "sig"), "-pkeyopt", f"distid:{distid}"),
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        return done.returncode == 0

    assert openssl_verifies("1234567812345678")
    assert not openssl_verifies("1234567812345679")


def test_sm2_vkey_round_trips_and_refuses_a_wrong_key_id() -> None:
    vkey = sm2_verifier_key_string(ORIGIN, BUS.public_key)
    name, key_id_hex, blob = vkey.split("+", 2)
    assert (name, key_id_hex) == (ORIGIN, sm2_key_id(ORIGIN, BUS.public_key).hex())
    assert base64.b64decode(blob) == b"\xff" + SM2_SM3_OID_DER + BUS.public_key
    parsed = parse_sm2_verifier_key(vkey)
    assert parsed.public_key == BUS.public_key and parsed.name == ORIGIN
    with pytest.raises(CheckpointError, match="bad_key"):
        parse_sm2_verifier_key(f"{name}+00000000+{blob}")
    # An Ed25519 vkey is not an SM2 one, and the other way round.
    with pytest.raises(CheckpointError, match="bad_key"):
        parse_sm2_verifier_key(verifier_key_string(ORIGIN, LOG_KEY.public_key()))
    with pytest.raises(CheckpointError, match="bad_key"):
        parse_verifier_key(vkey)


# --- verifying --------------------------------------------------------------------------------


def test_both_lines_verify_with_the_bus_sm2_key() -> None:
    note = sign_checkpoint(CHECKPOINT, ORIGIN, SIGNER)
    got = verify_signed_checkpoint(
        note, ORIGIN, LOG_KEY.public_key(), origin=ORIGIN, sm2_keys=(BUS.public_key,)
    )
    assert got == CHECKPOINT
    # One of several registry keys (a rotation) is enough.
    keys = (OTHER_BUS.public_key, BUS.public_key)
    assert verify_signed_checkpoint(note, ORIGIN, LOG_KEY.public_key(), sm2_keys=keys) == got


def test_a_checkpoint_without_its_sm2_line_is_refused() -> None:
    note = sign_checkpoint(CHECKPOINT, ORIGIN, SIGNER)
    stripped = _strip_sm2(note)
    assert len(_lines(stripped)) == 1
    assert _reason(stripped) == "unknown_key"
    assert _reason(sign_checkpoint(CHECKPOINT, ORIGIN, LOG_KEY)) == "unknown_key"
    with pytest.raises(CheckpointError, match="no SM2 signature by"):
        verify_sm2_note(stripped, ORIGIN, (BUS.public_key,))


def test_an_sm2_line_by_another_key_does_not_count() -> None:
    other = sign_checkpoint(CHECKPOINT, ORIGIN, CheckpointSigner(LOG_KEY, sm2=OTHER_BUS))
    assert _reason(other) == "unknown_key"


def test_a_forged_sm2_line_is_refused() -> None:
    note = sign_checkpoint(CHECKPOINT, ORIGIN, SIGNER)
    # The bus's SM2 line from another checkpoint, moved onto this one: right key id, wrong text.
    elsewhere = Checkpoint(ORIGIN, 4, root_hash([b"a", b"b", b"c", b"d"]), CHECKPOINT.timestamp_ms)
    moved = _lines(sign_checkpoint(elsewhere, ORIGIN, SIGNER))[1]
    forged = _strip_sm2(note) + moved + "\n"
    assert _reason(forged) == "bad_signature"
    # A flipped bit in the DER signature.
    line = _lines(note)[1]
    blob = bytearray(base64.b64decode(line.split(" ")[2]))
    blob[-1] ^= 1
    flipped = _strip_sm2(note) + f"— {ORIGIN} {base64.b64encode(bytes(blob)).decode()}\n"
    assert _reason(flipped) == "bad_signature"
    # A forged line is refused even next to a good one: a known key's bad line spoils the note.
    assert _reason(note + moved + "\n") == "bad_signature"


def test_ed25519_only_verifiers_ignore_the_sm2_line() -> None:
    note = sign_checkpoint(CHECKPOINT, ORIGIN, SIGNER)
    assert verify_signed_checkpoint(note, ORIGIN, LOG_KEY.public_key()) == CHECKPOINT
    assert verify_note(note, ORIGIN, LOG_KEY.public_key()).encode() == CHECKPOINT.body()
    # casebus's witness judges the log's signature as any C2SP witness does.
    vkey = parse_verifier_key(verifier_key_string(ORIGIN, LOG_KEY.public_key()))
    head = CheckpointHead(ORIGIN, CHECKPOINT.size, CHECKPOINT.root_hash, CHECKPOINT.body())
    logs: dict[str, list[VerifierKey]] = {ORIGIN: [vkey]}
    assert judge_signatures(note, head, logs) is None
    # A cosignature over the body is the same whatever signature lines the log's note carries.
    witness = Ed25519PrivateKey.generate()
    line = cosign(CHECKPOINT.body(), "w.example", witness, timestamp_s=1_780_000_001).line()
    cosigned = add_signature_lines(note, [line])
    key = parse_cosigner_key(cosigner_vkey("w.example", witness.public_key()))
    assert verify_cosignature(cosigned, key).timestamp_s == 1_780_000_001
    assert verify_signed_checkpoint(
        cosigned, ORIGIN, LOG_KEY.public_key(), sm2_keys=(BUS.public_key,)
    )
    assert len(parse_signed_checkpoint(cosigned)[1]) == 3


def test_a_wrong_log_key_is_still_refused_when_the_sm2_line_is_good() -> None:
    note = sign_checkpoint(CHECKPOINT, ORIGIN, SIGNER)
    other = Ed25519PrivateKey.generate()
    with pytest.raises(CheckpointError, match="unknown_key"):
        verify_signed_checkpoint(note, ORIGIN, other.public_key(), sm2_keys=(BUS.public_key,))


def test_sm2_keys_must_be_a_sequence_of_points() -> None:
    note = sign_checkpoint(CHECKPOINT, ORIGIN, SIGNER)
    with pytest.raises(TypeError):
        verify_sm2_note(note, ORIGIN, BUS.public_key)
    with pytest.raises(CheckpointError, match="bad_key"):
        verify_sm2_note(note, ORIGIN, (b"\x04" + bytes(10),))


# --- who signs --------------------------------------------------------------------------------


def test_an_sm2_bus_key_needs_an_ed25519_log_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="CASEBUS_AUDIT_LOG_KEY_FILE"):
        CheckpointSigner.for_bus(BUS)
    with pytest.raises(ConfigError, match="CASEBUS_AUDIT_LOG_KEY_FILE"):
        CheckpointSigner.load(BUS, None)
    sm2_file = write_keypair("casebus", tmp_path / "sm2", algorithm=SM2_SM3).private_key
    with pytest.raises(ConfigError, match=r"CASEBUS_AUDIT_LOG_KEY_FILE .* sm2-sm3 key"):
        CheckpointSigner.load(BUS, sm2_file)
    log_file = write_keypair("casebus.log", tmp_path / "log").private_key
    signer = CheckpointSigner.load(BUS, log_file)
    assert signer.sm2 is BUS
    assert signer.log_key.public_key() == load_log_key(log_file).public_key()
    assert len(_lines(sign_checkpoint(CHECKPOINT, ORIGIN, signer))) == 2


def test_an_ed25519_bus_key_is_the_log_key_unless_one_is_given(tmp_path: Path) -> None:
    bus_file = write_keypair("casebus", tmp_path / "bus").private_key
    bus = load_signer(bus_file, agency_id="casebus")
    assert isinstance(bus, Ed25519Signer)
    signer = CheckpointSigner.load(bus, None)
    assert signer.sm2 is None and signer.log_key is bus.private_key
    note = sign_checkpoint(CHECKPOINT, ORIGIN, signer)
    assert note == sign_checkpoint(CHECKPOINT, ORIGIN, bus.private_key)
    log_file = write_keypair("casebus.log", tmp_path / "log").private_key
    separate = CheckpointSigner.load(bus, log_file)
    assert separate.sm2 is None
    assert separate.log_key.public_key() != bus.private_key.public_key()


def test_a_log_key_open_to_others_is_refused_naming_the_setting(tmp_path: Path) -> None:
    log_file = write_keypair("casebus.log", tmp_path / "log").private_key
    log_file.chmod(0o644)
    with pytest.raises(ConfigError, match="CASEBUS_AUDIT_LOG_KEY_FILE"):
        load_log_key(log_file)


def test_an_sm2_signer_with_another_distinguishing_id_may_not_sign_checkpoints() -> None:
    odd = Sm2Signer(sm2.generate_private_key(), agency_id="casebus", distid=b"casebus@ygh")
    with pytest.raises(ConfigError, match="distinguishing id"):
        CheckpointSigner(LOG_KEY, sm2=odd)
    with pytest.raises(ConfigError, match="distinguishing id"):
        sm2_note_signature(CHECKPOINT.body().decode(), ORIGIN, odd)
