"""Envelope signatures: what they cover, and each way a signature is refused, by reason code."""

from __future__ import annotations

import hashlib
import hmac
import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from typer.testing import CliRunner

from bus import signing
from bus.cli.keys import app as keys_app
from bus.codec import Codec, decode_envelope, default_codec, encode_envelope, encode_payload
from bus.errors import ConfigError, DecodeError, SignatureError, ValidationFailedError
from bus.models import PAYLOAD_MODELS, Envelope, Signature
from bus.signing import (
    DOMAIN_PREFIX,
    Ed25519Signer,
    InMemoryKeyStore,
    PublicKeyRecord,
    Signer,
    canonical_bytes,
    generate_keypair,
    key_id_for,
    raw_public_key_from_pem,
    sign_envelope,
    verify_envelope,
    write_keypair,
)

SENDER = "ygh.enforcement.city"
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
YEAR_AGO = NOW - timedelta(days=365)


def _signer(agency: str = SENDER) -> tuple[Ed25519Signer, PublicKeyRecord]:
    private_pem, public_pem, key_id = generate_keypair(agency)
    signer = Ed25519Signer.from_pem(private_pem, agency_id=agency)
    record = PublicKeyRecord.from_pem(public_pem, agency_id=agency, valid_from=YEAR_AGO)
    assert signer.key_id == record.key_id == key_id
    return signer, record


def _envelope(sender: str = SENDER) -> Envelope:
    ack = PAYLOAD_MODELS["bus.ack"].model_validate(
        {
            "original_message_id": uuid.UUID("3c1b6f1e-0d2a-4b8e-9f1a-2b3c4d5e6f70"),
            "acknowledged_by": sender,
            "acknowledged_at": NOW - timedelta(minutes=2),
        }
    )
    message_id = uuid.UUID("5e1f0a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b")
    return Envelope(
        message_id=message_id,
        kind="bus.ack",
        schema_version=1,
        sender=sender,
        recipients=["ygh.police.city", "ygh.procuratorate.city"],
        case_id="榕执〔2025〕12号",
        correlation_id=str(message_id),
        sent_at=NOW - timedelta(minutes=1),
        payload=encode_payload("bus.ack", ack),
        signature=Signature(algorithm="ed25519", key_id="unsigned", value=b""),
    )


async def _refused(envelope: Envelope, store: InMemoryKeyStore, **kw: object) -> str:
    with pytest.raises(SignatureError) as e:
        await verify_envelope(envelope, store, **kw)  # type: ignore[arg-type]
    assert e.value.message_id == str(envelope.message_id)
    return e.value.reason


# -- what is signed ----------------------------------------------------------------------------


def test_canonical_bytes_are_prefix_plus_envelope_with_empty_signature_value() -> None:
    env = _envelope()
    data = canonical_bytes(env)
    assert data.startswith(DOMAIN_PREFIX)
    filled = env.model_copy(
        update={"signature": Signature(algorithm="ed25519", key_id="unsigned", value=b"x" * 64)}
    )
    assert canonical_bytes(filled) == data  # the value itself is not covered
    assert env.payload in data  # the exact payload bytes are
    other_key = env.model_copy(
        update={"signature": Signature(algorithm="ed25519", key_id="other", value=b"")}
    )
    assert canonical_bytes(other_key) != data  # algorithm and key id are covered


def test_key_id_is_agency_and_sha256_prefix_of_the_raw_public_key() -> None:
    _, public_pem, key_id = generate_keypair(SENDER)
    raw = raw_public_key_from_pem(public_pem)
    assert len(raw) == 32
    assert key_id == key_id_for(SENDER, raw) == f"{SENDER}:{hashlib.sha256(raw).hexdigest()[:16]}"


def test_ed25519_signer_satisfies_the_signer_port() -> None:
    signer, _ = _signer()
    assert isinstance(signer, Signer)
    assert signer.algorithm == "ed25519"


# -- verifying ---------------------------------------------------------------------------------


async def test_signed_envelope_verifies_and_names_its_key() -> None:
    signer, record = _signer()
    signed = sign_envelope(_envelope(), signer)
    assert signed.signature.key_id == signer.key_id
    assert len(signed.signature.value) == 64
    assert await verify_envelope(signed, InMemoryKeyStore([record]), at=NOW) == record


async def test_signature_survives_the_wire() -> None:
    signer, record = _signer()
    signed = sign_envelope(_envelope(), signer)
    received = decode_envelope(encode_envelope(signed))
    assert await verify_envelope(received, InMemoryKeyStore([record]), at=NOW) == record


async def test_tampering_and_key_state_each_have_their_own_reason() -> None:
    signer, record = _signer()
    store = InMemoryKeyStore([record])
    signed = sign_envelope(_envelope(), signer)
    payload = bytearray(signed.payload)
    payload[-1] ^= 0x01
    reasons = {
        "payload byte": await _refused(
            signed.model_copy(update={"payload": bytes(payload)}), store, at=NOW
        ),
        "recipients": await _refused(
            signed.model_copy(update={"recipients": ["ygh.police.city"]}), store, at=NOW
        ),
        "case_id": await _refused(
            signed.model_copy(update={"case_id": "榕执〔2025〕13号"}), store, at=NOW
        ),
        "sent_at": await _refused(
            signed.model_copy(update={"sent_at": signed.sent_at + timedelta(milliseconds=1)}),
            store,
            at=NOW,
        ),
    }
    # A signature cannot say which byte changed: every tampering is bad_signature ...
    assert set(reasons.values()) == {"bad_signature"}
    # ... while each key problem has a code of its own.
    store.revoke(record.key_id, at=NOW - timedelta(hours=1))
    assert await _refused(signed, store, at=NOW) == "revoked_key"


async def test_every_flipped_byte_of_the_kafka_value_is_refused() -> None:
    signer, record = _signer()
    store = InMemoryKeyStore([record])
    value = encode_envelope(sign_envelope(_envelope(), signer))
    outcomes: set[str] = set()
    for pos in range(len(value)):
        bad = bytearray(value)
        bad[pos] ^= 0x01
        try:
            envelope = decode_envelope(bytes(bad))
        except (DecodeError, ValidationFailedError) as e:
            outcomes.add(type(e).__name__)
            continue
        outcomes.add(await _refused(envelope, store, at=NOW))
    assert "bad_signature" in outcomes
    assert outcomes <= {
        "DecodeError",
        "ValidationFailedError",
        "bad_signature",
        "unknown_key",
        "sender_mismatch",
        "unsupported_algorithm",
    }


async def test_revoked_key_still_verifies_what_it_signed_before_revocation() -> None:
    signer, record = _signer()
    store = InMemoryKeyStore([record])
    signed = sign_envelope(_envelope(), signer)
    store.revoke(record.key_id, at=NOW)
    assert await verify_envelope(signed, store, at=NOW - timedelta(seconds=1)) is not None
    assert await _refused(signed, store, at=NOW) == "revoked_key"


async def test_expired_key_is_refused() -> None:
    signer, record = _signer()
    store = InMemoryKeyStore([PublicKeyRecord(**{**_fields(record), "valid_to": NOW})])
    signed = sign_envelope(_envelope(), signer)
    assert await _refused(signed, store, at=NOW) == "expired_key"
    assert await verify_envelope(signed, store, at=NOW - timedelta(milliseconds=1))


async def test_key_not_yet_valid_is_refused() -> None:
    signer, record = _signer()
    store = InMemoryKeyStore([PublicKeyRecord(**{**_fields(record), "valid_from": NOW})])
    signed = sign_envelope(_envelope(), signer)
    assert await _refused(signed, store, at=NOW - timedelta(seconds=1)) == "key_not_yet_valid"


async def test_unknown_key_is_refused() -> None:
    signer, _ = _signer()
    signed = sign_envelope(_envelope(), signer)
    assert await _refused(signed, InMemoryKeyStore(), at=NOW) == "unknown_key"


async def test_key_of_another_agency_is_a_sender_mismatch() -> None:
    other, record = _signer("ygh.regulator.planning")
    signed = sign_envelope(_envelope(sender=SENDER), other)
    assert await _refused(signed, InMemoryKeyStore([record]), at=NOW) == "sender_mismatch"


async def test_unsupported_algorithm_is_refused() -> None:
    signer, record = _signer()
    signed = sign_envelope(_envelope(), signer)
    sm2 = signed.model_copy(
        update={"signature": signed.signature.model_copy(update={"algorithm": "sm2-sm3"})}
    )
    assert await _refused(sm2, InMemoryKeyStore([record]), at=NOW) == "unsupported_algorithm"


async def test_a_registered_algorithm_is_verified_through_the_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Stands in for an SM2/SM3 signer: only the Signer and verifier ports are exercised.
    secret = b"k" * 32

    class MacSigner:
        algorithm = "test-mac"
        key_id = f"{SENDER}:mac"

        def sign(self, data: bytes) -> bytes:
            return hmac.digest(secret, data, "sha256")

    def verify_mac(public_key: bytes, signature: bytes, data: bytes) -> bool:
        return hmac.compare_digest(hmac.digest(public_key, data, "sha256"), signature)

    monkeypatch.setitem(signing._VERIFIERS, "test-mac", verify_mac)
    record = PublicKeyRecord(
        key_id=MacSigner.key_id,
        agency_id=SENDER,
        algorithm="test-mac",
        public_key=secret,
        valid_from=YEAR_AGO,
    )
    signed = sign_envelope(_envelope(), MacSigner())
    assert await verify_envelope(signed, InMemoryKeyStore([record]), at=NOW) == record
    assert "test-mac" in signing.supported_algorithms()
    # A key registered for one algorithm does not verify a signature claiming another.
    ed_signer, _ = _signer()
    assert (
        await _refused(
            sign_envelope(_envelope(), ed_signer).model_copy(
                update={
                    "signature": Signature(
                        algorithm="ed25519", key_id=MacSigner.key_id, value=b"\x00" * 64
                    )
                }
            ),
            InMemoryKeyStore([record]),
            at=NOW,
        )
        == "unsupported_algorithm"
    )


async def test_verifying_at_a_naive_time_is_a_usage_error() -> None:
    signer, record = _signer()
    with pytest.raises(ValueError, match="time-zone aware"):
        await verify_envelope(
            sign_envelope(_envelope(), signer),
            InMemoryKeyStore([record]),
            at=datetime(2025, 1, 1),
        )


def _fields(record: PublicKeyRecord) -> dict[str, object]:
    return {
        "key_id": record.key_id,
        "agency_id": record.agency_id,
        "algorithm": record.algorithm,
        "public_key": record.public_key,
        "valid_from": record.valid_from,
        "valid_to": record.valid_to,
        "revoked_at": record.revoked_at,
    }


# -- key files ---------------------------------------------------------------------------------


def test_private_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    files = write_keypair(SENDER, tmp_path)
    for mode in (0o644, 0o640, 0o604, 0o660):
        os.chmod(files.private_key, mode)
        with pytest.raises(ConfigError, match=f"mode {mode:04o}.*chmod 600"):
            Ed25519Signer.from_file(files.private_key, agency_id=SENDER)
    os.chmod(files.private_key, 0o600)
    assert Ed25519Signer.from_file(files.private_key, agency_id=SENDER).key_id == files.key_id


def test_written_key_pair_has_private_mode_0600_and_is_not_overwritten(tmp_path: Path) -> None:
    files = write_keypair(SENDER, tmp_path / "keys")
    assert files.private_key.name == f"{SENDER}.key.pem"
    assert files.public_key.name == f"{SENDER}.pub.pem"
    assert files.private_key.stat().st_mode & 0o777 == 0o600
    assert b"BEGIN PRIVATE KEY" in files.private_key.read_bytes()  # PKCS#8
    before = files.private_key.read_bytes()
    with pytest.raises(FileExistsError):
        write_keypair(SENDER, tmp_path / "keys")
    assert files.private_key.read_bytes() == before
    again = write_keypair(SENDER, tmp_path / "keys", overwrite=True)
    assert again.key_id != files.key_id
    assert again.private_key.stat().st_mode & 0o777 == 0o600


def test_non_ed25519_or_garbage_key_is_a_config_error() -> None:
    ec_pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(ConfigError, match="Ed25519"):
        Ed25519Signer.from_pem(ec_pem, agency_id=SENDER)
    with pytest.raises(ConfigError, match="PEM"):
        Ed25519Signer.from_pem(b"not a key", agency_id=SENDER)
    with pytest.raises(ConfigError, match="agency id"):
        generate_keypair("../etc")


def test_public_key_record_needs_aware_times_and_a_32_byte_key() -> None:
    with pytest.raises(ValueError, match="time-zone aware"):
        PublicKeyRecord("k", SENDER, "ed25519", b"\x00" * 32, datetime(2025, 1, 1))
    with pytest.raises(ValueError, match="32 raw bytes"):
        PublicKeyRecord("k", SENDER, "ed25519", b"\x00" * 31, YEAR_AGO)


def test_cli_generates_a_key_pair_and_prints_the_key_id(tmp_path: Path) -> None:
    runner = CliRunner()
    # --alg ed25519: this test is of the Ed25519 key, whatever CASEBUS_CRYPTO_PROFILE says.
    ed25519 = ["--alg", "ed25519"]
    result = runner.invoke(
        keys_app, ["generate", "--agency", SENDER, "--out", str(tmp_path), *ed25519]
    )
    assert result.exit_code == 0, result.output
    key_id = result.stdout.strip()
    public = raw_public_key_from_pem((tmp_path / f"{SENDER}.pub.pem").read_bytes())
    assert key_id == key_id_for(SENDER, public)
    assert (tmp_path / f"{SENDER}.key.pem").stat().st_mode & 0o777 == 0o600
    signer = Ed25519Signer.from_file(tmp_path / f"{SENDER}.key.pem", agency_id=SENDER)
    assert signer.key_id == key_id
    again = runner.invoke(
        keys_app, ["generate", "--agency", SENDER, "--out", str(tmp_path), *ed25519]
    )
    assert again.exit_code == 1
    assert "--force" in again.stderr
    bad = runner.invoke(keys_app, ["generate", "--agency", "Bad Id", "--out", str(tmp_path)])
    assert bad.exit_code == 2


# -- the router's shortcuts: the same bytes without encoding twice -----------------------------


def _sample_envelopes(count: int) -> list[tuple[Envelope, Ed25519Signer, PublicKeyRecord]]:
    import random

    from bus.models import KINDS
    from bus.samples import sample_payload

    out = []
    rng = random.Random(7)
    for n in range(count):
        kind = KINDS[n % len(KINDS)]
        signer, record = _signer()
        payload = sample_payload(kind, rng)
        env = _envelope().model_copy(
            update={
                "kind": kind,
                "schema_version": type(payload).SCHEMA_VERSION,
                "payload": encode_payload(kind, payload),
                "message_id": uuid.UUID(int=rng.getrandbits(128), version=4),
            }
        )
        out.append((env, signer, record))
    return out


def test_sign_and_encode_writes_the_bytes_sign_then_encode_would() -> None:
    for env, signer, _ in _sample_envelopes(60):
        signed, value = signing.sign_and_encode(env, signer)
        assert signed == sign_envelope(env, signer)
        assert value == encode_envelope(signed)


def test_the_signed_body_cut_from_a_value_is_the_canonical_body() -> None:
    codec = default_codec()
    for env, signer, _ in _sample_envelopes(60):
        value = encode_envelope(sign_envelope(env, signer))
        received = decode_envelope(value)
        body = codec.signed_body_of(value, received.signature.value)
        assert body is not None
        assert DOMAIN_PREFIX + body == canonical_bytes(received)


def test_a_value_whose_tail_is_not_its_signature_gives_no_body() -> None:
    codec = default_codec()
    env, signer, _ = _sample_envelopes(1)[0]
    value = encode_envelope(sign_envelope(env, signer))
    signature = decode_envelope(value).signature.value
    assert codec.signed_body_of(value, bytes(64)) is None  # another signature
    assert codec.signed_body_of(value[:-1], signature) is None  # truncated
    # A codec that reads leniently has not proved the bytes canonical: it must re-encode.
    assert Codec(require_canonical=False).signed_body_of(value, signature) is None


async def test_verifying_from_the_value_accepts_and_refuses_as_re_encoding_does() -> None:
    for env, signer, record in _sample_envelopes(12):
        store = InMemoryKeyStore([record])
        value = encode_envelope(sign_envelope(env, signer))
        received = decode_envelope(value)
        assert await verify_envelope(received, store, at=NOW, value=value) == record
        # A signature over other bytes fails the same way by either path.
        forged = bytearray(value)
        forged[-1] ^= 1
        tampered = decode_envelope(bytes(forged))
        for kw in ({}, {"value": bytes(forged)}):
            assert await _refused(tampered, store, at=NOW, **kw) == "bad_signature"
