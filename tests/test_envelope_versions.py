"""Envelope schema versions: v2 adds ``Attachment.sm3``; a writer uses the oldest version that
holds the envelope, a reader takes either, and the signature covers the bytes as written."""

from __future__ import annotations

import hashlib
import io
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import fastavro
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from fastavro.schema import fingerprint, to_parsing_canonical_form

from bus import sm2
from bus.codec import HEADER_SIZE, Codec, default_codec, encode_payload
from bus.compat import check_schemas
from bus.errors import DecodeError, SignatureError, ValidationFailedError
from bus.models import PAYLOAD_MODELS, Attachment, Envelope, Signature
from bus.schema_index import SchemaIndex
from bus.signing import (
    DOMAIN_PREFIX,
    InMemoryKeyStore,
    PublicKeyRecord,
    Sm2Signer,
    canonical_bytes,
    generate_keypair,
    sign_and_encode,
    sign_envelope,
    verify_envelope,
)
from schemas import envelope_schema_path, envelope_schema_paths

VECTORS = Path(__file__).parent / "vectors"
SENDER = "ygh.police.bureau"
NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
FILE = "公安移送书".encode() * 100
SHA256 = hashlib.sha256(FILE).hexdigest()
SM3 = sm2.sm3(FILE).hex()
CODEC = default_codec()
INDEX = CODEC.index


def _envelope(*, sm3: str | None) -> Envelope:
    ack = PAYLOAD_MODELS["bus.ack"].model_validate(
        {
            "original_message_id": uuid.UUID("3c1b6f1e-0d2a-4b8e-9f1a-2b3c4d5e6f70"),
            "acknowledged_by": SENDER,
            "acknowledged_at": NOW - timedelta(minutes=2),
        }
    )
    message_id = uuid.UUID("5e1f0a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b")
    return Envelope(
        message_id=message_id,
        kind="bus.ack",
        schema_version=1,
        sender=SENDER,
        recipients=["ygh.enforcement.bureau"],
        case_id="榕公〔2026〕7号",
        correlation_id=str(message_id),
        sent_at=NOW,
        payload=encode_payload("bus.ack", ack),
        attachments=[
            Attachment(
                name="移送书.pdf",
                media_type="application/pdf",
                size_bytes=len(FILE),
                sha256=SHA256,
                uri=f"casebus://attachments/sha256/{SHA256}",
                sm3=sm3,
            )
        ],
        signature=Signature(algorithm="ed25519", key_id="unsigned", value=b""),
    )


def _sm2_signer() -> tuple[Sm2Signer, PublicKeyRecord]:
    private_pem, public_pem, _ = generate_keypair(SENDER, algorithm="sm2-sm3")
    signer = Sm2Signer.from_pem(private_pem, agency_id=SENDER)
    record = PublicKeyRecord.from_pem(
        public_pem, agency_id=SENDER, valid_from=NOW - timedelta(days=1)
    )
    return signer, record


def test_the_index_holds_both_envelope_versions_and_v1_stays_envelope_avsc() -> None:
    assert INDEX.envelope_versions == (1, 2)
    assert INDEX.envelope.path.name == "envelope.avsc"
    assert INDEX.envelope_version(2).path.name == "envelope.v2.avsc"
    assert envelope_schema_path() == INDEX.envelope.path
    assert INDEX.envelope.fingerprint == 0xCE4C43FB71E78A46  # docs/wire-format.md §3
    assert INDEX.envelope_version(2).fingerprint != INDEX.envelope.fingerprint
    assert INDEX.by_fingerprint(INDEX.envelope_version(2).fingerprint) is INDEX.envelope_version(2)


def test_compatibility_check_covers_the_envelope_pair() -> None:
    pairs = [
        (r.writer_version, r.reader_version, r.ok) for r in check_schemas() if r.kind == "envelope"
    ]
    assert sorted(pairs) == [(1, 2, True), (2, 1, True)]


def test_without_sm3_the_envelope_is_written_as_v1() -> None:
    envelope = _envelope(sm3=None)
    value = CODEC.encode_envelope(envelope)
    assert CODEC.envelope_version(envelope) == 1
    assert value[:HEADER_SIZE] == INDEX.envelope.header
    # Exactly what the version-1 schema alone writes: no byte of the old format moved.
    plain = io.BytesIO()
    fastavro.schemaless_writer(plain, INDEX.envelope.schema, envelope.to_avro())
    assert value[HEADER_SIZE:] == plain.getvalue()
    assert CODEC.decode_envelope(value) == envelope


def test_with_sm3_the_envelope_is_written_as_v2_and_round_trips() -> None:
    envelope = _envelope(sm3=SM3)
    value = CODEC.encode_envelope(envelope)
    assert CODEC.envelope_version(envelope) == 2
    assert value[:HEADER_SIZE] == INDEX.envelope_version(2).header
    received = CODEC.decode_envelope(value)
    assert received == envelope
    assert received.attachments[0].sm3 == SM3
    record = CODEC.decode_envelope_record(value)
    assert record["attachments"][0]["sm3"] == SM3


def test_a_mapping_picks_its_version_the_same_way() -> None:
    with_sm3 = _envelope(sm3=SM3).to_avro()
    without = _envelope(sm3=None).to_avro()
    without["attachments"] = [{**a, "sm3": None} for a in without["attachments"]]
    assert CODEC.envelope_version(with_sm3) == 2
    assert CODEC.envelope_version(without) == 1
    assert CODEC.encode_envelope(without) == CODEC.encode_envelope(_envelope(sm3=None))
    assert CODEC.encode_envelope(with_sm3) == CODEC.encode_envelope(_envelope(sm3=SM3))


def test_a_v1_value_reads_as_the_newest_schema_would_resolve_it() -> None:
    value = CODEC.encode_envelope(_envelope(sm3=None))
    resolved = fastavro.schemaless_reader(
        io.BytesIO(value[HEADER_SIZE:]), INDEX.envelope.schema, INDEX.envelope_version(2).schema
    )
    assert isinstance(resolved, dict)
    assert resolved["attachments"][0]["sm3"] is None
    assert Envelope.from_avro(resolved) == CODEC.decode_envelope(value)


def test_a_v2_value_that_v1_could_hold_is_not_canonical() -> None:
    # Written by hand with v2 and sm3 null: a second encoding of a v1 envelope.
    record = _envelope(sm3=None).to_avro()
    record["attachments"] = [{**a, "sm3": None} for a in record["attachments"]]
    body = io.BytesIO()
    fastavro.schemaless_writer(body, INDEX.envelope_version(2).schema, record)
    value = INDEX.envelope_version(2).header + body.getvalue()
    with pytest.raises(DecodeError, match="oldest version"):
        CODEC.decode_envelope(value)
    assert Codec(require_canonical=False).decode_envelope(value) == _envelope(sm3=None)


def test_an_index_without_v2_cannot_write_an_sm3() -> None:
    index = SchemaIndex(envelope_path=envelope_schema_paths()[1], kind_paths={})
    assert index.envelope_versions == (1,)
    with pytest.raises(ValidationFailedError, match="envelope schema version 2"):
        Codec(index).envelope_body(_envelope(sm3=SM3))


def test_an_uppercase_or_short_sm3_is_refused_by_the_model() -> None:
    for bad in (SM3.upper(), SM3[:-2], "zz" * 32):
        with pytest.raises(ValueError, match="sm3"):
            _envelope(sm3=bad)


async def test_signature_covers_the_v2_bytes_sent() -> None:
    signer, record = _sm2_signer()
    envelope = _envelope(sm3=SM3)
    signed, value = sign_and_encode(envelope, signer, codec=CODEC)
    assert value == CODEC.encode_envelope(signed)
    assert value[:HEADER_SIZE] == INDEX.envelope_version(2).header
    signing_input = canonical_bytes(signed)
    # The signing input is the v2 body with signature.value empty: the received value's body,
    # cut, is the same bytes.
    assert signing_input == DOMAIN_PREFIX + CODEC.signed_body_of(value, signed.signature.value)
    assert SM3.encode() in signing_input  # the digest is signed, as its hex text
    store = InMemoryKeyStore([record])
    received = CODEC.decode_envelope(value)
    assert await verify_envelope(received, store, at=NOW, value=value) == record
    assert await verify_envelope(received, store, at=NOW) == record  # re-encoded as v2
    # Dropping the digest gives another (v1) message, which the signature does not cover.
    stripped = received.model_copy(
        update={"attachments": [received.attachments[0].model_copy(update={"sm3": None})]}
    )
    with pytest.raises(SignatureError) as refused:
        await verify_envelope(stripped, store, at=NOW)
    assert refused.value.reason == "bad_signature"


async def test_sign_envelope_and_sign_and_encode_agree_on_v1() -> None:
    signer, record = _sm2_signer()
    envelope = _envelope(sm3=None)
    signed, value = sign_and_encode(envelope, signer, codec=CODEC)
    assert value[:HEADER_SIZE] == INDEX.envelope.header
    assert value == CODEC.encode_envelope(signed)
    other = sign_envelope(envelope, signer)
    received = CODEC.decode_envelope(CODEC.encode_envelope(other))
    assert await verify_envelope(received, InMemoryKeyStore([record]), at=NOW) == record


async def test_the_v1_vector_from_before_the_change_still_decodes_and_verifies() -> None:
    vector = json.loads((VECTORS / "envelope-v1.json").read_text(encoding="utf-8"))
    value = bytes.fromhex(vector["kafka"]["value_hex"])
    envelope = CODEC.decode_envelope(value)
    assert all(a.sm3 is None for a in envelope.attachments)
    assert CODEC.encode_envelope(envelope) == value
    assert canonical_bytes(envelope).hex() == vector["signing_input_hex"]
    key = vector["key"]
    record = PublicKeyRecord(
        key_id=key["key_id"],
        agency_id=key["agency_id"],
        algorithm="ed25519",
        public_key=bytes.fromhex(key["public_key_hex"]),
        valid_from=datetime(2000, 1, 1, tzinfo=UTC),
    )
    store = InMemoryKeyStore([record])
    assert await verify_envelope(envelope, store, at=NOW, value=value) == record
    assert await verify_envelope(envelope, store, at=NOW) == record


def _vector_envelope(vector: dict[str, object]) -> Envelope:
    e = dict(vector["envelope"])  # type: ignore[call-overload]
    sig = e.pop("signature")
    return Envelope(
        **{k: v for k, v in e.items() if k not in ("payload_hex", "sent_at")},
        sent_at=datetime.fromisoformat(e["sent_at"].replace("Z", "+00:00")),
        payload=bytes.fromhex(e["payload_hex"]),
        signature=Signature(
            algorithm=sig["algorithm"], key_id=sig["key_id"], value=bytes.fromhex(sig["value_hex"])
        ),
    )


def test_casebus_reproduces_the_v2_vector() -> None:
    vector = json.loads((VECTORS / "envelope-v2.json").read_text(encoding="utf-8"))
    envelope = _vector_envelope(vector)
    assert canonical_bytes(envelope).hex() == vector["signing_input_hex"]
    assert CODEC.encode_envelope(envelope).hex() == vector["kafka"]["value_hex"]
    assert INDEX.envelope_version(2).fingerprint_bytes.hex() == vector["envelope_fingerprint_hex"]


def test_the_v2_vector_verifies_from_the_documents_alone() -> None:
    # docs/wire-format.md §3, §4.1, §5.1 with fastavro, hashlib and cryptography only.
    vector = json.loads((VECTORS / "envelope-v2.json").read_text(encoding="utf-8"))
    raw = json.loads((Path(__file__).parents[1] / vector["envelope_schema"]).read_text("utf-8"))
    schema = fastavro.parse_schema(raw)
    value = bytes.fromhex(vector["kafka"]["value_hex"])
    expected_fp = fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO")
    assert value[:2] == b"\xc3\x01" and value[2:10].hex() == expected_fp
    record = fastavro.schemaless_reader(io.BytesIO(value[10:]), schema, None)
    assert isinstance(record, dict)
    [attachment] = record["attachments"]
    data = vector["file"]["utf8"].encode()
    assert attachment["sha256"] == hashlib.sha256(data).hexdigest()
    assert attachment["sm3"] == hashlib.new("sm3", data).hexdigest() == vector["file"]["sm3"]
    assert attachment["size_bytes"] == len(data)
    signature = record["signature"]["value"]
    assert len(signature) == 64
    tail = b"\x80\x01" + signature  # §5.1: zigzag varint of 64, then the 64 bytes
    assert value.endswith(tail)
    signing_input = b"casebus-envelope-v1\x00" + value[10 : len(value) - len(tail)] + b"\x00"
    assert signing_input.hex() == vector["signing_input_hex"]
    public = Ed25519PublicKey.from_public_bytes(bytes.fromhex(vector["key"]["public_key_hex"]))
    public.verify(signature, signing_input)  # raises InvalidSignature if not
