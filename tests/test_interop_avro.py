"""Our Kafka values read with the reference Apache ``avro`` package, not with fastavro.

Design §3 promises that any Avro implementation holding ``schemas/`` can decode a casebus value:
find the writer schema by the 8-byte fingerprint after the ``C3 01`` marker, then read Avro
binary. These tests do exactly that with an independent implementation.

One wrinkle found on the way: ``avro`` 1.12's Python ``canonical_form`` keeps a logical-typed
primitive as ``{"type":"string"}`` where the spec's [PRIMITIVES] rule (and Java's
``SchemaNormalization``) write ``"string"``, so its fingerprint of a schema with logical types
differs from Java's and ours. The tests below pin that down: the forms differ only there, and
``avro`` agrees with our fingerprint once the (parse-irrelevant) ``logicalType`` attributes are
stripped, as the spec's [STRIP] rule does anyway.
"""

from __future__ import annotations

import io
import json
import re
import uuid
from datetime import UTC, date, datetime
from typing import Any

import avro.io
import avro.schema
import pytest
from keykit import new_signer

from bus.codec import HEADER_SIZE, decode_payload, encode_envelope, encode_payload
from bus.models import Envelope, Signature
from bus.schema_index import SINGLE_OBJECT_MARKER, SchemaEntry, default_index
from bus.signing import sign_envelope

INDEX = default_index()
ALL = [INDEX.envelope, *INDEX]
_LOGICAL_WRAPPER = re.compile(r'\{"type":"(null|boolean|int|long|float|double|bytes|string)"\}')


def _raw(entry: SchemaEntry) -> Any:
    return json.loads(entry.path.read_text(encoding="utf-8"))


def _strip_logical_types(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip_logical_types(v) for k, v in node.items() if k != "logicalType"}
    if isinstance(node, list):
        return [_strip_logical_types(v) for v in node]
    return node


def _avro_schema(entry: SchemaEntry) -> avro.schema.Schema:
    return avro.schema.parse(entry.path.read_text(encoding="utf-8"))


def _avro_fingerprint(entry: SchemaEntry) -> bytes:
    """``avro``'s own CRC-64-AVRO of the schema, logical types stripped (see module doc)."""
    return avro.schema.parse(json.dumps(_strip_logical_types(_raw(entry)))).fingerprint(
        "CRC-64-AVRO"
    )


# The reader's side: schemas found by fingerprint, computed by `avro` alone.
AVRO_BY_FINGERPRINT = {_avro_fingerprint(e): _avro_schema(e) for e in ALL}


@pytest.mark.parametrize("entry", ALL, ids=lambda e: f"{e.kind}-v{e.version}")
def test_our_fingerprint_is_avros_crc64_avro_fingerprint(entry: SchemaEntry) -> None:
    assert _avro_fingerprint(entry) == entry.fingerprint_bytes
    parsed = _avro_schema(entry)
    if parsed.fingerprint("CRC-64-AVRO") != entry.fingerprint_bytes:
        # Only the known avro-python deviation may explain a difference: nothing else.
        assert _LOGICAL_WRAPPER.sub(r'"\1"', parsed.canonical_form) == entry.canonical_form


def _sample(schema: Any, full: bool, named: dict[str, Any]) -> Any:
    """A deterministic datum: ``full`` fills every optional, list and non-ASCII string."""
    if isinstance(schema, str):
        if schema in named:
            return _sample(named[schema], full, named)
        return {
            "null": None,
            "boolean": full,
            "int": -123456 if full else 0,
            "long": -(2**62) if full else 7,
            "float": 1.5,
            "double": -2.25,
            "bytes": b"\x00\xff" if full else b"",
            "string": "两法衔接 §6 – ünïcode" if full else "x",
        }[schema]
    if isinstance(schema, list):
        branch = next((b for b in schema if b != "null"), "null") if full else schema[0]
        return _sample(branch, full, named)
    logical = schema.get("logicalType")
    if logical == "timestamp-millis":
        return datetime(2025, 2, 28, 23, 59, 59, 999000, tzinfo=UTC)
    if logical == "date":
        return date(2024, 2, 29)
    if logical == "uuid":
        return "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"
    kind = schema["type"]
    if kind == "record":
        named[schema.get("namespace", "") + "." + schema["name"]] = schema
        named[schema["name"]] = schema
        return {f["name"]: _sample(f["type"], full, named) for f in schema["fields"]}
    if kind == "enum":
        named[schema["name"]] = schema
        return schema["symbols"][-1 if full else 0]
    if kind == "array":
        return [_sample(schema["items"], full, named)] * (2 if full else 0)
    if kind == "map":
        return {"键": _sample(schema["values"], full, named)} if full else {}
    return _sample(kind, full, named)


def _avro_read(schema: avro.schema.Schema, body: bytes) -> Any:
    stream = io.BytesIO(body)
    value = avro.io.DatumReader(schema).read(avro.io.BinaryDecoder(stream))
    assert stream.tell() == len(body), "avro left bytes unread"
    return value


def _find_with_avro(value: bytes) -> avro.schema.Schema:
    assert value[:2] == SINGLE_OBJECT_MARKER
    return AVRO_BY_FINGERPRINT[value[2:HEADER_SIZE]]


_SIGNER = new_signer("ygh.enforcement.city")


def _kafka_value(entry: SchemaEntry, record: dict[str, Any]) -> tuple[Envelope, bytes]:
    payload = encode_payload(entry.kind, record, version=entry.version)
    envelope = sign_envelope(
        Envelope(
            message_id=uuid.UUID("7d9c1b2a-3e4f-4a5b-9c6d-7e8f9a0b1c2d"),
            kind=entry.kind,
            schema_version=entry.version,
            sender="ygh.enforcement.city",
            recipients=["ygh.police.city"],
            case_id="穗执〔2025〕88号",
            correlation_id="thread-1",
            causation_id="7d9c1b2a-0000-4a5b-9c6d-7e8f9a0b1c2d",
            sent_at=datetime(2025, 5, 4, 3, 2, 1, 5000, tzinfo=UTC),
            payload=payload,
            attachments=[
                {
                    "name": "移送书.pdf",
                    "media_type": "application/pdf",
                    "size_bytes": 123456,
                    "sha256": "ab" * 32,
                    "uri": "s3://casebus/att/1",
                }
            ],
            signature=Signature(algorithm="ed25519", key_id="x", value=b""),
        ),
        _SIGNER,
    )
    return envelope, encode_envelope(envelope)


def _plain(value: Any) -> Any:
    """Values as the ``avro`` package reads them: UUIDs as text."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


@pytest.mark.parametrize("full", [False, True], ids=["minimal", "full"])
@pytest.mark.parametrize("entry", list(INDEX), ids=lambda e: f"{e.kind}-v{e.version}")
def test_avro_package_decodes_our_kafka_value_and_its_payload(
    entry: SchemaEntry, full: bool
) -> None:
    record = _sample(_raw(entry), full, {})
    envelope, value = _kafka_value(entry, record)

    got = _avro_read(_find_with_avro(value), value[HEADER_SIZE:])
    assert got == _plain(envelope.to_avro())
    assert got["signature"]["value"] == envelope.signature.value

    payload = got["payload"]
    assert payload[2:HEADER_SIZE] == entry.fingerprint_bytes
    assert _avro_read(_find_with_avro(payload), payload[HEADER_SIZE:]) == _plain(record)


@pytest.mark.parametrize("full", [False, True], ids=["minimal", "full"])
@pytest.mark.parametrize("entry", list(INDEX), ids=lambda e: f"{e.kind}-v{e.version}")
def test_avro_package_writes_the_same_bytes_we_accept(entry: SchemaEntry, full: bool) -> None:
    record = _sample(_raw(entry), full, {})
    out = io.BytesIO()
    avro.io.DatumWriter(_avro_schema(entry)).write(record, avro.io.BinaryEncoder(out))
    theirs = SINGLE_OBJECT_MARKER + _avro_fingerprint(entry) + out.getvalue()
    assert theirs == encode_payload(entry.kind, record, version=entry.version)
    kind, version, back = decode_payload(theirs, reader_version=entry.version)
    assert (kind, version, _plain(back)) == (entry.kind, entry.version, _plain(record))
