"""The codec and schema index: every kind round-trips, and corrupt bytes never decode silently."""

from __future__ import annotations

import io
import json
import re
import shutil
import unicodedata
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import fastavro
import pytest
from fastavro.schema import fingerprint as fastavro_fingerprint
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

import schemas
from bus.codec import (
    HEADER_SIZE,
    Codec,
    decode_envelope,
    decode_envelope_payload,
    decode_payload,
    default_codec,
    encode_envelope,
    encode_payload,
)
from bus.errors import ConfigError, DecodeError, ValidationFailedError
from bus.models import KINDS, PAYLOAD_MODELS, Envelope, Signature
from bus.models._identifier import IDENTIFIER_FORMAT
from bus.schema_index import (
    ENVELOPE_KIND,
    SINGLE_OBJECT_MARKER,
    SchemaEntry,
    SchemaIndex,
    crc64_avro,
    default_index,
)

INDEX = default_index()
ENTRIES = list(INDEX)
FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- strategies: Avro values straight from a schema --------------------------------------------

_MIN_TIME = datetime(1900, 1, 1, tzinfo=UTC)
_MAX_TIME = datetime(2999, 12, 31, tzinfo=UTC)
utc_millis = st.datetimes(
    min_value=_MIN_TIME.replace(tzinfo=None), max_value=_MAX_TIME.replace(tzinfo=None)
).map(lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000, tzinfo=UTC))
short_text = st.text(max_size=12)
# Valid identifiers (bus/models/_identifier.py): visible characters and inner plain spaces, NFC.
_IDENTIFIERS = (
    st.text(
        st.characters(exclude_categories=["Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs"])
        | st.just(" "),
        min_size=1,
        max_size=24,
    )
    .map(lambda s: unicodedata.normalize("NFC", s).strip())
    .filter(bool)
)


def avro_values(schema: Any, named: dict[str, Any] | None = None) -> st.SearchStrategy[Any]:
    """Any datum of an Avro schema, as fastavro reads it back (so equality is identity)."""
    named = {} if named is None else named
    if isinstance(schema, str):
        if schema in named:
            return st.deferred(lambda: avro_values(named[schema], named))
        return {
            "null": st.none(),
            "boolean": st.booleans(),
            "int": st.integers(-(2**31), 2**31 - 1),
            "long": st.integers(-(2**63), 2**63 - 1),
            "float": st.floats(width=32, allow_nan=False),
            "double": st.floats(allow_nan=False),
            "bytes": st.binary(max_size=12),
            "string": short_text,
        }[schema]
    if isinstance(schema, list):
        return st.one_of([avro_values(s, named) for s in schema])
    logical = schema.get("logicalType")
    if logical == "timestamp-millis":
        return utc_millis
    if logical == "date":
        return st.dates(min_value=date(1900, 1, 1))
    if logical == "uuid":
        return st.uuids()
    kind = schema["type"]
    if kind == "record":
        named[schema["name"]] = schema
        return st.fixed_dictionaries(
            {f["name"]: avro_values(f["type"], named) for f in schema["fields"]}
        )
    if kind == "enum":
        named[schema["name"]] = schema
        return st.sampled_from(schema["symbols"])
    if kind == "array":
        return st.lists(avro_values(schema["items"], named), max_size=3)
    if kind == "map":
        return st.dictionaries(short_text, avro_values(schema["values"], named), max_size=3)
    if kind == "fixed":
        named[schema["name"]] = schema
        return st.binary(min_size=schema["size"], max_size=schema["size"])
    return avro_values(kind, named)


# -- strategies: valid pydantic models from their JSON schema ----------------------------------


def _json_values(node: Mapping[str, Any], defs: Mapping[str, Any]) -> st.SearchStrategy[Any]:
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        return st.deferred(lambda: _json_values(target, defs))
    if "anyOf" in node:
        return st.one_of([_json_values(n, defs) for n in node["anyOf"]])
    if "enum" in node:
        return st.sampled_from(node["enum"])
    kind = node.get("type")
    if kind == "null":
        return st.none()
    if kind == "boolean":
        return st.booleans()
    if kind == "integer":
        return st.integers(node.get("minimum", -(2**31)), node.get("maximum", 2**31 - 1))
    if kind == "array":
        return st.lists(
            _json_values(node["items"], defs),
            min_size=node.get("minItems", 0),
            max_size=max(node.get("minItems", 0), node.get("maxItems", 3)),
        )
    if kind == "object":
        props = node["properties"]
        required = set(node.get("required", ()))
        return st.fixed_dictionaries(
            {k: _json_values(v, defs) for k, v in props.items() if k in required},
            optional={k: _json_values(v, defs) for k, v in props.items() if k not in required},
        )
    if kind == "string":
        fmt = node.get("format")
        if fmt == "date-time":
            return utc_millis
        if fmt == "date":
            return st.dates(min_value=date(1900, 1, 1))
        if fmt == "uuid":
            return st.uuids()
        if fmt == IDENTIFIER_FORMAT:
            return _IDENTIFIERS
        lo, hi = node.get("minLength", 0), node.get("maxLength", 24)
        if fmt in ("base64url", "base64", "binary"):
            return st.binary(min_size=lo, max_size=max(lo, min(hi, 24)))
        if "pattern" in node:
            return st.from_regex(node["pattern"], fullmatch=True).filter(
                lambda s: lo <= len(s) <= node.get("maxLength", 10**6)
            )
        return st.text(min_size=lo, max_size=max(lo, min(hi, 24)))
    raise AssertionError(f"no strategy for JSON schema node {node!r}")


def models(model: type[BaseModel]) -> st.SearchStrategy[BaseModel]:
    """Valid instances of ``model``: random field values, kept when every model rule holds."""
    schema = model.model_json_schema()

    def build(data: dict[str, Any]) -> BaseModel | None:
        try:
            return model.model_validate(data)
        except ValueError:  # a cross-field rule (reasons, periods, names) said no
            return None

    values = _json_values(schema, schema.get("$defs", {}))
    return values.map(build).filter(lambda m: m is not None)  # type: ignore[return-value]


def envelope_for(payload: bytes, kind: str, version: int) -> st.SearchStrategy[Envelope]:
    """Envelopes carrying ``payload`` of ``kind``/``version``, every other field random."""

    def fix(env: BaseModel) -> Envelope:
        assert isinstance(env, Envelope)
        return env.model_copy(update={"kind": kind, "schema_version": version, "payload": payload})

    return models(Envelope).map(fix)


# -- the schema index ---------------------------------------------------------------------------


@given(st.binary(max_size=200))
@FAST
def test_crc64_avro_agrees_with_fastavro_implementation(data: bytes) -> None:
    text = data.decode("latin-1")
    expected = int.from_bytes(bytes.fromhex(fastavro_fingerprint(text, "CRC-64-AVRO")), "little")
    assert crc64_avro(text.encode("utf-8")) == expected


def test_crc64_avro_of_spec_examples() -> None:
    assert crc64_avro(b"") == 0xC15D213AA4D7A795  # the spec's EMPTY
    # Java's SchemaNormalization.parsingFingerprint64 of the primitive "null" (Avro test vectors).
    assert crc64_avro(b'"null"') == 7195948357588979594


def test_index_lists_every_schema_file_once_with_distinct_fingerprints() -> None:
    files = schemas.kind_schema_paths()
    assert {(e.kind, e.version) for e in ENTRIES} == {
        (k, v) for k, versions in files.items() for v in versions
    }
    fingerprints = [INDEX.envelope.fingerprint, *(e.fingerprint for e in ENTRIES)]
    assert len(set(fingerprints)) == len(fingerprints)
    for entry in [INDEX.envelope, *ENTRIES]:
        assert INDEX.by_fingerprint(entry.fingerprint) is entry
        assert entry.header == SINGLE_OBJECT_MARKER + entry.fingerprint.to_bytes(8, "little")


def test_index_serves_latest_version_and_exact_versions() -> None:
    for kind in INDEX.kinds:
        latest = INDEX.get(kind)
        assert latest.version == max(INDEX.versions(kind)) == INDEX.latest_version(kind)
    with pytest.raises(KeyError, match="unknown message kind"):
        INDEX.get("no.such_kind")
    with pytest.raises(KeyError, match="no schema version 99"):
        INDEX.get(ENTRIES[0].kind, 99)


def test_every_model_kind_has_a_schema() -> None:
    assert set(PAYLOAD_MODELS) <= set(INDEX.kinds)
    assert set(INDEX.kinds) <= set(KINDS)


THING_V1 = {
    "type": "record",
    "name": "Thing",
    "namespace": "test.v1",
    "fields": [
        {"name": "flag", "type": "boolean"},
        {"name": "count", "type": "long"},
        {"name": "label", "type": "string"},
        {"name": "ref", "type": {"type": "string", "logicalType": "uuid"}},
    ],
}
THING_V2 = {
    **THING_V1,
    "fields": [
        *THING_V1["fields"],
        {"name": "tags", "type": {"type": "array", "items": "string"}, "default": []},
    ],
}


def _throwaway_index(
    folder: Path, extra: Mapping[str, Mapping[int, Any]] | None = None
) -> SchemaIndex:
    shutil.copy(schemas.envelope_schema_path(), folder / "envelope.avsc")
    for kind, versions in {"test.thing": {1: THING_V1, 2: THING_V2}, **(extra or {})}.items():
        (folder / kind).mkdir()
        for version, schema in versions.items():
            (folder / kind / f"v{version}.avsc").write_text(json.dumps(schema), encoding="utf-8")
    return SchemaIndex.from_folder(folder)


@pytest.fixture
def thing_codec(tmp_path: Path) -> Codec:
    return Codec(_throwaway_index(tmp_path))


def test_index_over_another_folder(tmp_path: Path) -> None:
    index = _throwaway_index(tmp_path)
    assert index.kinds == ("test.thing",)
    assert index.versions("test.thing") == (1, 2)
    assert index.get("test.thing").version == 2
    assert index.envelope.fingerprint == INDEX.envelope.fingerprint


def test_index_refuses_two_kinds_with_the_same_canonical_form(tmp_path: Path) -> None:
    # Only the doc differs: the wire could not tell the two kinds apart.
    twin = {**THING_V1, "doc": "a twin"}
    with pytest.raises(ConfigError, match="same canonical form"):
        _throwaway_index(tmp_path, {"test.twin": {1: twin}})


def test_index_reports_a_broken_schema_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be loaded"):
        _throwaway_index(
            tmp_path,
            {
                "test.broken": {
                    1: {
                        "type": "record",
                        "name": "B",
                        "fields": [{"name": "x", "type": "no_such_type"}],
                    }
                }
            },
        )


# -- round trips ----------------------------------------------------------------------------------


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: f"{e.kind}-v{e.version}")
@given(data=st.data())
@FAST
def test_every_kind_and_version_round_trips_as_a_record(
    entry: SchemaEntry, data: st.DataObject
) -> None:
    raw = json.loads(entry.path.read_text(encoding="utf-8"))
    record = data.draw(avro_values(raw))
    encoded = encode_payload(entry.kind, record, version=entry.version)
    assert encoded[:HEADER_SIZE] == entry.header
    assert decode_payload(encoded, reader_version=entry.version) == (
        entry.kind,
        entry.version,
        record,
    )


@pytest.mark.parametrize("kind", sorted(PAYLOAD_MODELS))
@given(data=st.data())
@FAST
def test_every_payload_model_round_trips_through_bytes(kind: str, data: st.DataObject) -> None:
    model = data.draw(models(PAYLOAD_MODELS[kind]))
    encoded = encode_payload(kind, model)
    found, version, back = default_codec().decode_payload_model(encoded, kind=kind)
    assert (found, version) == (kind, INDEX.latest_version(kind))
    assert back == model


def test_payload_models_exist_for_round_trips() -> None:
    # The model round trip above is parametrised over PAYLOAD_MODELS; fail loudly if it is empty.
    assert PAYLOAD_MODELS, "bus.models.PAYLOAD_MODELS is empty: no model round trip ran"


@given(data=st.data())
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_envelope_round_trips_with_its_payload_bytes_untouched(data: st.DataObject) -> None:
    entry = data.draw(st.sampled_from(ENTRIES))
    record = data.draw(avro_values(json.loads(entry.path.read_text(encoding="utf-8"))))
    payload = encode_payload(entry.kind, record, version=entry.version)
    envelope = data.draw(envelope_for(payload, entry.kind, entry.version))
    value = encode_envelope(envelope)
    # The oldest envelope version that holds it: 2 only once an attachment carries sm3.
    version = 2 if any(a.sm3 is not None for a in envelope.attachments) else 1
    assert value[:HEADER_SIZE] == INDEX.envelope_version(version).header
    back = decode_envelope(value)
    assert back == envelope
    assert back.payload == payload
    assert decode_envelope_payload(back, reader_version=entry.version)[2] == record


@given(data=st.data())
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_arbitrary_envelope_round_trips(data: st.DataObject) -> None:
    envelope = data.draw(models(Envelope))
    assert decode_envelope(encode_envelope(envelope)) == envelope


# -- schema evolution -----------------------------------------------------------------------------


def _opinion_request_v1() -> dict[str, Any]:
    return {
        "request_no": "闽环协〔2025〕7号",
        "opinion_type": "APPRAISAL",
        "subject": "污水排放检测",
        "background": None,
        "questions": ["是否超标？"],
        "materials": [],
        "due_at": datetime(2025, 3, 1, 8, 0, tzinfo=UTC),
        **_other_required("opinion.request", 1),
    }


def _other_required(kind: str, version: int) -> dict[str, Any]:
    """Deterministic values for the fields of ``kind`` this test module does not name itself."""
    known = {
        "request_no",
        "opinion_type",
        "subject",
        "background",
        "questions",
        "materials",
        "due_at",
    }
    raw = json.loads(INDEX.get(kind, version).path.read_text(encoding="utf-8"))
    out = {}
    for f in raw["fields"]:
        if f["name"] not in known:
            out[f["name"]] = f["default"] if "default" in f else _sample(f["type"])
    return out


def _sample(schema: Any) -> Any:
    if isinstance(schema, list):
        return _sample(schema[0])
    if isinstance(schema, dict):
        if schema.get("logicalType") == "timestamp-millis":
            return datetime(2025, 1, 1, tzinfo=UTC)
        if schema.get("logicalType") == "date":
            return date(2025, 1, 1)
        if schema.get("logicalType") == "uuid":
            return uuid.UUID(int=1)
        if schema["type"] == "enum":
            return schema["symbols"][0]
        if schema["type"] == "array":
            return []
        if schema["type"] == "record":
            return {f["name"]: _sample(f["type"]) for f in schema["fields"]}
        return _sample(schema["type"])
    return {"null": None, "boolean": False, "int": 1, "long": 1, "string": "x", "bytes": b"x"}[
        schema
    ]


def test_opinion_request_v1_writer_is_read_by_v2_reader_with_the_default() -> None:
    assert INDEX.versions("opinion.request")[:2] == (1, 2)
    v1 = _opinion_request_v1()
    encoded = encode_payload("opinion.request", v1, version=1)
    kind, version, record = decode_payload(encoded)  # latest reader
    assert (kind, version) == ("opinion.request", 1)
    assert record == {**v1, "reference_standards": []}
    # And back: a v1 reader ignores what v2 added (FULL_TRANSITIVE).
    v2 = {**v1, "reference_standards": ["HJ 91.1-2019"]}
    encoded = encode_payload("opinion.request", v2, version=2)
    assert decode_payload(encoded, reader_version=1) == ("opinion.request", 2, v1)
    assert decode_payload(encoded) == ("opinion.request", 2, v2)


def test_throwaway_schema_resolves_v1_writer_to_v2_reader(thing_codec: Codec) -> None:
    v1 = {"flag": True, "count": -5, "label": "案", "ref": uuid.UUID(int=7)}
    data = thing_codec.encode_payload("test.thing", v1, version=1)
    assert thing_codec.decode_payload(data) == ("test.thing", 1, {**v1, "tags": []})
    assert thing_codec.decode_payload(data, reader_version=1) == ("test.thing", 1, v1)


# -- encoding refuses bad input -----------------------------------------------------------------


def test_encoding_a_record_of_wrong_types_lists_each_field(thing_codec: Codec) -> None:
    bad = {"flag": 1, "count": 1.5, "label": "x", "ref": uuid.UUID(int=1)}
    with pytest.raises(ValidationFailedError) as e:
        thing_codec.encode_payload("test.thing", bad, version=1)
    assert {p.path for p in e.value.problems} == {"flag", "count"}
    assert {p.rule for p in e.value.problems} == {"avro_type"}


def test_encoding_refuses_an_unknown_field_rather_than_dropping_it(thing_codec: Codec) -> None:
    record = {"flag": True, "count": 1, "label": "x", "ref": uuid.UUID(int=1), "lable": "typo"}
    with pytest.raises(ValidationFailedError, match="avro_write"):
        thing_codec.encode_payload("test.thing", record, version=1)


def test_encoding_an_unknown_kind_or_version_is_refused(thing_codec: Codec) -> None:
    with pytest.raises(ValidationFailedError, match="unknown_kind"):
        thing_codec.encode_payload("test.nothing", {})
    with pytest.raises(ValidationFailedError, match="no schema version 3"):
        thing_codec.encode_payload("test.thing", {}, version=3)


def test_encoding_something_that_is_neither_model_nor_mapping_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        encode_payload("opinion.request", ["not", "a", "record"])


# -- corrupt bytes never decode silently -------------------------------------------------------


def _thing(codec: Codec) -> bytes:
    return codec.encode_payload(
        "test.thing",
        {"flag": True, "count": 300, "label": "移送", "ref": uuid.UUID(int=42), "tags": ["a"]},
    )


MESSAGE_ID = uuid.UUID("9b2f6c1e-4d3a-4f5b-8a7c-1e2d3f4a5b6c")


def _sample_envelope() -> Envelope:
    payload = encode_payload("opinion.request", _opinion_request_v1(), version=1)
    return Envelope(
        message_id=MESSAGE_ID,
        kind="opinion.request",
        schema_version=1,
        sender="ygh.enforcement.city",
        recipients=["ygh.regulator.planning"],
        case_id="榕执〔2025〕12号",
        correlation_id=str(MESSAGE_ID),
        sent_at=datetime(2025, 2, 1, 9, 30, 15, 123000, tzinfo=UTC),
        due_at=datetime(2025, 3, 1, tzinfo=UTC),
        payload=payload,
        signature=Signature(algorithm="ed25519", key_id="ygh.enforcement.city:00", value=b"s" * 64),
    )


def _decoders(thing_codec: Codec) -> list[tuple[str, bytes, Callable[[bytes], Any]]]:
    return [
        ("payload", _thing(thing_codec), thing_codec.decode_payload),
        ("envelope", encode_envelope(_sample_envelope()), decode_envelope),
    ]


def test_every_truncation_is_a_decode_error(thing_codec: Codec) -> None:
    for what, good, decode in _decoders(thing_codec):
        for cut in range(len(good)):
            with pytest.raises(DecodeError):
                decode(good[:cut])
            assert what


def test_trailing_bytes_are_a_decode_error(thing_codec: Codec) -> None:
    for _, good, decode in _decoders(thing_codec):
        for garbage in (b"\x00", b"\x01", b"trailing garbage"):
            with pytest.raises(DecodeError, match="trailing"):
                decode(good + garbage)


def test_a_bad_marker_is_a_decode_error(thing_codec: Codec) -> None:
    for _, good, decode in _decoders(thing_codec):
        for marker in (b"\xc3\x00", b"\xc2\x01", b"\x00\x00", b'{"'):
            with pytest.raises(DecodeError, match="marker"):
                decode(marker + good[2:])


def test_every_flipped_fingerprint_bit_is_an_unknown_schema(thing_codec: Codec) -> None:
    for _, good, decode in _decoders(thing_codec):
        for bit in range(64):
            bad = bytearray(good)
            bad[2 + bit // 8] ^= 1 << (bit % 8)
            with pytest.raises(DecodeError, match="unknown schema"):
                decode(bytes(bad))


@given(st.binary(max_size=300))
@settings(max_examples=300, deadline=None)
def test_random_bytes_are_a_decode_error(data: bytes) -> None:
    for decode in (decode_payload, decode_envelope):
        with pytest.raises(DecodeError):
            decode(data)


@given(body=st.binary(max_size=200), entry=st.sampled_from([INDEX.envelope, *ENTRIES]))
@settings(max_examples=300, deadline=None)
def test_random_body_behind_a_valid_header_never_crashes(body: bytes, entry: SchemaEntry) -> None:
    data = entry.header + body
    try:
        if entry.is_envelope:
            decode_envelope(data)
        else:
            decode_payload(data)
    except (DecodeError, ValidationFailedError):
        pass


def test_every_flipped_body_byte_fails_or_decodes_to_a_different_value(thing_codec: Codec) -> None:
    for what, good, decode in _decoders(thing_codec):
        original = decode(good)
        for pos in range(HEADER_SIZE, len(good)):
            for mask in (0x01, 0x02, 0x40, 0x80, 0xFF):
                bad = bytearray(good)
                bad[pos] ^= mask
                try:
                    value = decode(bytes(bad))
                except (DecodeError, ValidationFailedError):
                    continue
                assert value != original, f"{what}: byte {pos} ^ {mask:#x} decoded equal"


def test_non_canonical_encodings_are_refused(thing_codec: Codec) -> None:
    good = _thing(thing_codec)
    body = good[HEADER_SIZE:]
    assert body[0] == 0x01  # flag = true
    with pytest.raises(DecodeError, match="canonical"):
        thing_codec.decode_payload(good[:HEADER_SIZE] + b"\x03" + body[1:])  # true, spelt 3
    count = fastavro_long(300)
    assert body[1 : 1 + len(count)] == count
    overlong = count[:-1] + bytes([count[-1] | 0x80, 0x00])
    with pytest.raises(DecodeError, match="canonical"):
        thing_codec.decode_payload(
            good[:HEADER_SIZE] + body[:1] + overlong + body[1 + len(count) :]
        )
    # An upper-case UUID is the same UUID in other bytes: refused too.
    envelope = encode_envelope(_sample_envelope())
    text = str(MESSAGE_ID).encode()
    assert text in envelope
    with pytest.raises(DecodeError, match="canonical"):
        decode_envelope(envelope.replace(text, text.upper()))
    assert (
        Codec(thing_codec.index, require_canonical=False).decode_payload(
            good[:HEADER_SIZE] + b"\x03" + body[1:]
        )[2]["flag"]
        is True
    )


def fastavro_long(n: int) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, "long", n)
    return out.getvalue()


def test_payload_of_the_wrong_kind_is_refused(thing_codec: Codec) -> None:
    data = _thing(thing_codec)
    with pytest.raises(DecodeError, match=re.escape("test.thing v2, but opinion.request")):
        thing_codec.decode_payload(data, kind="opinion.request")


def test_envelope_and_payload_are_not_mistaken_for_each_other(thing_codec: Codec) -> None:
    envelope = encode_envelope(_sample_envelope())
    with pytest.raises(DecodeError, match="is an envelope"):
        decode_payload(envelope)
    with pytest.raises(DecodeError, match="envelope expected"):
        decode_envelope(_sample_envelope().payload)
    assert INDEX.envelope.kind == ENVELOPE_KIND


def test_unknown_reader_version_is_a_decode_error(thing_codec: Codec) -> None:
    with pytest.raises(DecodeError, match="no schema version 9"):
        thing_codec.decode_payload(_thing(thing_codec), reader_version=9)


def test_non_bytes_input_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="must be bytes"):
        decode_payload("C3 01")  # type: ignore[arg-type]


def test_envelope_payload_must_match_the_kind_and_version_it_states() -> None:
    envelope = _sample_envelope()
    wrong_version = envelope.model_copy(update={"schema_version": 2})
    with pytest.raises(DecodeError, match="states schema_version 2") as e:
        decode_envelope_payload(wrong_version)
    assert (e.value.message_id, e.value.agency) == (str(envelope.message_id), envelope.sender)
    wrong_kind = envelope.model_copy(update={"kind": "clue.handover"})
    with pytest.raises(DecodeError, match=r"but clue\.handover was expected") as e:
        decode_envelope_payload(wrong_kind)
    assert e.value.case_id == envelope.case_id


def test_envelope_breaking_model_rules_is_validation_failed_with_context() -> None:
    record = _sample_envelope().to_avro()
    record["sender"] = "Not An Agency"
    value = encode_envelope(record)  # a mapping is checked against Avro types only
    with pytest.raises(ValidationFailedError) as e:
        decode_envelope(value)
    assert e.value.agency == "Not An Agency"
    assert e.value.message_id == str(MESSAGE_ID)
    assert [p.path for p in e.value.problems] == ["sender"]


def test_timestamps_survive_with_millisecond_precision() -> None:
    envelope = _sample_envelope()
    back = decode_envelope(encode_envelope(envelope))
    assert back.sent_at == envelope.sent_at
    assert back.sent_at.utcoffset() == timedelta(0)
