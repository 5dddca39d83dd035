"""The pydantic models of the message contract: in step with the schemas, lossless, strict.

The models are written by hand rather than generated from the ``.avsc`` files because they carry
rules Avro cannot state (agency-id and hash patterns, money ≥ 0, time-zone-aware UTC millisecond
times, "a refusal states its reasons", the transfer letter in the manifest) plus docstrings and
helpers; a generator would drop those or need a second annotation language. The price is the risk
of drift, which :func:`test_model_mirrors_latest_schema` removes: it walks each latest schema next
to its model and fails on any difference in field names, types, enum symbols, optionality or
defaults.
"""

from __future__ import annotations

import io
import json
import types
import typing
import unicodedata
from datetime import UTC, date, datetime, timedelta, timezone
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin
from uuid import UUID

import annotated_types
import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import AfterValidator, BaseModel, StringConstraints, ValidationError
from pydantic.fields import FieldInfo

from bus.errors import ValidationFailedError
from bus.models import (
    KINDS,
    PAYLOAD_MODELS,
    Attachment,
    CriminalFilingDecision,
    CriminalTransfer,
    Envelope,
    FilingOutcome,
    OpinionRequest,
    PenaltyFeedback,
    Signature,
    TransferDocumentType,
    attachment_refs,
    validate_payload,
)
from bus.models._common import _utc_millis
from bus.models._identifier import check_identifier
from schemas import envelope_schema_paths, kind_schema_paths

SCHEMA_FILES = kind_schema_paths()
INT_RANGE = (-(2**31), 2**31 - 1)
LONG_RANGE = (-(2**63), 2**63 - 1)


def _latest(kind: str) -> tuple[int, Path]:
    version = max(SCHEMA_FILES[kind])
    return version, SCHEMA_FILES[kind][version]


def _parsed(path: Path) -> Any:
    return fastavro.parse_schema(json.loads(path.read_text(encoding="utf-8")))


def _model_and_schema() -> list[tuple[str, type[BaseModel], Path]]:
    # The envelope model mirrors the newest envelope version, as a payload model its kind's.
    envelope = envelope_schema_paths()[max(envelope_schema_paths())]
    out: list[tuple[str, type[BaseModel], Path]] = [("envelope", Envelope, envelope)]
    out += [(kind, PAYLOAD_MODELS[kind], _latest(kind)[1]) for kind in KINDS]
    return out


CASES = _model_and_schema()
IDS = [c[0] for c in CASES]


# --- the sync walker --------------------------------------------------------------------------


def _unwrap(tp: Any, metadata: list[Any]) -> tuple[Any, list[Any]]:
    metadata = list(metadata)
    while get_origin(tp) is Annotated:
        tp, *extra = get_args(tp)
        metadata.extend(extra)
    return tp, metadata


def _optional_inner(tp: Any) -> Any | None:
    if get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(get_args(tp)) == 2:
            return args[0]
    return None


def _bounds(metadata: list[Any]) -> tuple[int | None, int | None]:
    lo = hi = None
    for m in metadata:
        if isinstance(m, annotated_types.Ge):
            lo = int(m.ge)
        elif isinstance(m, annotated_types.Gt):
            lo = int(m.gt) + 1
        elif isinstance(m, annotated_types.Le):
            hi = int(m.le)
        elif isinstance(m, annotated_types.Lt):
            hi = int(m.lt) - 1
    return lo, hi


class _Walker:
    """Compares one Avro schema with one pydantic model, collecting every difference."""

    def __init__(self, parsed: Any) -> None:
        self.named: dict[str, Any] = parsed["__named_schemas"]
        self.diffs: list[str] = []

    def deref(self, s: Any) -> Any:
        return self.named[s] if isinstance(s, str) and s in self.named else s

    def diff(self, path: str, text: str) -> None:
        self.diffs.append(f"{path or '$'}: {text}")

    def compare(self, s: Any, tp: Any, metadata: list[Any], path: str) -> None:
        s = self.deref(s)
        tp, metadata = _unwrap(tp, metadata)
        inner = _optional_inner(tp)
        if isinstance(s, list):
            if not (len(s) == 2 and s[0] == "null"):
                self.diff(path, f"union {s} has no model counterpart; use [null, X]")
            elif inner is None:
                self.diff(path, "optional in the schema but required in the model")
            else:
                self.compare(s[1], inner, [], path)
            return
        if inner is not None:
            self.diff(path, "optional in the model but not in the schema")
            return
        avro_type = s if isinstance(s, str) else s["type"]
        logical = s.get("logicalType") if isinstance(s, dict) else None
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            if avro_type != "record":
                self.diff(path, f"model record vs schema {avro_type}")
            else:
                self.record(s, tp, path)
        elif isinstance(tp, type) and issubclass(tp, Enum):
            self.symbols(s, avro_type, {str(m.value) for m in tp}, path)
        elif get_origin(tp) is Literal:
            if avro_type != "string" or logical is not None:
                self.symbols(s, avro_type, {str(a) for a in get_args(tp)}, path)
        elif get_origin(tp) is list:
            if avro_type != "array":
                self.diff(path, f"model list vs schema {avro_type}")
            else:
                self.compare(s["items"], get_args(tp)[0], [], f"{path}[]")
        else:
            self.scalar(avro_type, logical, tp, metadata, path)

    def symbols(self, s: Any, avro_type: str, model_symbols: set[str], path: str) -> None:
        if avro_type != "enum":
            self.diff(path, f"model enum vs schema {avro_type}")
        elif set(s["symbols"]) != model_symbols:
            self.diff(path, f"enum symbols differ: schema {s['symbols']} vs model {model_symbols}")

    def scalar(
        self, avro_type: str, logical: str | None, tp: Any, metadata: list[Any], path: str
    ) -> None:
        if tp is datetime:
            ok = avro_type == "long" and logical == "timestamp-millis"
            if ok and not any(
                isinstance(m, AfterValidator) and m.func is _utc_millis for m in metadata
            ):
                self.diff(path, "timestamp-millis must use UtcDatetime (aware UTC, ms)")
        elif tp is date:
            ok = avro_type == "int" and logical == "date"
        elif tp is UUID:
            ok = avro_type == "string" and logical == "uuid"
        elif tp is str:
            ok = avro_type == "string" and logical is None
        elif tp is bool:
            ok = avro_type == "boolean"
        elif tp is bytes:
            ok = avro_type == "bytes"
        elif tp is int:
            ok = avro_type in {"int", "long"} and logical is None
            lo, hi = _bounds(metadata)
            lo_max, hi_max = INT_RANGE if avro_type == "int" else LONG_RANGE
            if ok and (lo is None or hi is None or lo < lo_max or hi > hi_max):
                self.diff(path, f"int bounds {lo}..{hi} do not fit Avro {avro_type}")
        else:
            ok = False
        if not ok:
            self.diff(path, f"model {tp!r} vs schema {avro_type}/{logical}")

    def record(self, s: Any, model: type[BaseModel], path: str) -> None:
        avro_fields = {f["name"]: f for f in s["fields"]}
        model_fields: dict[str, FieldInfo] = model.model_fields
        if list(avro_fields) != list(model_fields):
            self.diff(
                path, f"fields differ: schema {list(avro_fields)} vs model {list(model_fields)}"
            )
        for name in avro_fields.keys() & model_fields.keys():
            avro_field, info = avro_fields[name], model_fields[name]
            fpath = f"{path}.{name}" if path else name
            self.compare(avro_field["type"], info.annotation, list(info.metadata), fpath)
            if ("default" in avro_field) == info.is_required():
                self.diff(fpath, "has a default in one of schema and model only")
            elif "default" in avro_field:
                model_default = info.get_default(call_default_factory=True)
                if avro_field["default"] != model_default:
                    self.diff(fpath, f"defaults {avro_field['default']!r} vs {model_default!r}")


@pytest.mark.parametrize(("kind", "model", "path"), CASES, ids=IDS)
def test_model_mirrors_latest_schema(kind: str, model: type[BaseModel], path: Path) -> None:
    walker = _Walker(_parsed(path))
    walker.record(walker.deref(walker.named[_parsed(path)["name"]]), model, "")
    assert walker.diffs == [], f"{kind}: model and {path.name} differ"


def test_walker_notices_drift() -> None:
    """The sync test is only worth something if it fails on a difference."""
    schema = json.loads(_latest("opinion.request")[1].read_text(encoding="utf-8"))
    schema["fields"] = [f for f in schema["fields"] if f["name"] != "contact_phone"]
    schema["fields"][1]["type"]["symbols"].append("NEW_TYPE")
    schema["fields"][0]["type"] = ["null", "string"]
    walker = _Walker(fastavro.parse_schema(schema))
    walker.record(walker.named["casebus.v1.OpinionRequest"], OpinionRequest, "")
    text = "\n".join(walker.diffs)
    assert "contact_phone" in text
    assert "NEW_TYPE" in text
    assert "request_no: optional in the schema" in text


@pytest.mark.parametrize("kind", KINDS)
def test_model_names_its_kind_and_latest_version(kind: str) -> None:
    model = PAYLOAD_MODELS[kind]
    assert (kind, _latest(kind)[0]) == (model.KIND, model.SCHEMA_VERSION)


def test_registry_covers_every_kind_in_order() -> None:
    assert tuple(PAYLOAD_MODELS) == KINDS
    assert len(set(KINDS)) == 27


# --- hypothesis strategies from the models ----------------------------------------------------

_TIMEZONES = st.sampled_from([UTC, timezone(timedelta(hours=8)), timezone(timedelta(hours=-5))])
_TEXT = st.text(min_size=1, max_size=12)
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


def _strategy(tp: Any, metadata: list[Any]) -> st.SearchStrategy[Any]:
    tp, metadata = _unwrap(tp, metadata)
    inner = _optional_inner(tp)
    if inner is not None:
        return st.none() | _strategy(inner, [])
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return _model_strategy(tp)
    if isinstance(tp, type) and issubclass(tp, Enum):
        return st.sampled_from(list(tp))
    if get_origin(tp) is Literal:
        return st.sampled_from(get_args(tp))
    min_len = max([m.min_length for m in metadata if isinstance(m, annotated_types.MinLen)] or [0])
    if get_origin(tp) is list:
        return st.lists(_strategy(get_args(tp)[0], []), min_size=min_len, max_size=min_len + 2)
    if tp is datetime:
        return st.datetimes(
            min_value=datetime(1950, 1, 1), max_value=datetime(2200, 1, 1), timezones=_TIMEZONES
        )
    if tp is date:
        return st.dates(min_value=date(1950, 1, 1), max_value=date(2200, 1, 1))
    if tp is UUID:
        return st.uuids()
    if tp is bool:
        return st.booleans()
    if tp is bytes:
        max_len = min(
            [m.max_length for m in metadata if isinstance(m, annotated_types.MaxLen)] or [40]
        )
        return st.binary(min_size=min_len, max_size=max_len)
    if tp is int:
        lo, hi = _bounds(metadata)
        return st.integers(min_value=lo, max_value=hi)
    if tp is str:
        if any(isinstance(m, AfterValidator) and m.func is check_identifier for m in metadata):
            return _IDENTIFIERS
        for m in metadata:
            if isinstance(m, StringConstraints) and m.pattern:
                return st.from_regex(m.pattern, fullmatch=True)
        return _TEXT
    raise AssertionError(f"no strategy for {tp!r}")


def _valid_or_none(model: type[BaseModel], data: dict[str, Any]) -> BaseModel | None:
    try:
        return model.model_validate(data)
    except ValidationError:
        return None  # a cross-field rule said no; hypothesis draws again


def _model_strategy(model: type[BaseModel]) -> st.SearchStrategy[Any]:
    required = {
        n: _strategy(f.annotation, list(f.metadata))
        for n, f in model.model_fields.items()
        if f.is_required()
    }
    optional = {
        n: _strategy(f.annotation, list(f.metadata))
        for n, f in model.model_fields.items()
        if not f.is_required()
    }
    return (
        st.fixed_dictionaries(required, optional=optional)
        .map(lambda d: _valid_or_none(model, d))
        .filter(lambda m: m is not None)
    )


def _avro_round_trip(parsed: Any, datum: dict[str, Any]) -> Any:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, parsed, datum)
    buf.seek(0)
    return fastavro.schemaless_reader(buf, parsed, parsed)


@pytest.mark.parametrize(("kind", "model", "path"), CASES, ids=IDS)
def test_model_survives_avro_round_trip(kind: str, model: type[BaseModel], path: Path) -> None:
    parsed = _parsed(path)

    @settings(
        max_examples=40,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(_model_strategy(model))
    def check(instance: Any) -> None:
        datum = instance.to_avro()
        read = _avro_round_trip(parsed, datum)
        # Read back through the model: an envelope's to_avro() leaves out an absent sm3 (so it
        # stays a version-1 record) and the reader fills in the schema's default, None.
        assert type(instance).from_avro(read).to_avro() == datum
        assert type(instance).from_avro(read) == instance

    check()


# --- rules and errors -------------------------------------------------------------------------

SHA = "ab" * 32


def _transfer(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "transfer_letter_no": "昆阳城执移〔2017〕3号",
        "case_id": "YGH-2017-0042",
        "case_name": "某公司非法占用农用地案",
        "suspected_offence": "非法占用农用地罪",
        "parties": [
            {"name": "张三", "role": "SUSPECT", "id_type": "RESIDENT_ID_CARD", "id_number": "5301"}
        ],
        "facts_summary": "擅自改变林地用途。",
        "approval": {"approver": "李四", "approved_at": datetime(2017, 5, 2, 9, tzinfo=UTC)},
        "documents": [
            {
                "document_type": "TRANSFER_LETTER",
                "title": "移送书",
                "attachment_name": "letter.pdf",
                "attachment_sha256": SHA,
            }
        ],
    }
    data.update(changes)
    return data


def test_validate_payload_lists_every_problem_at_once() -> None:
    bad = {
        "report_no": "",
        "period_start": "2017-01-01",
        "decisions": [
            {
                "case_id": "C1",
                "decision_no": "D1",
                "decided_on": "2017-01-05",
                "party": {"name": "王五", "id_type": "NOT_A_TYPE", "id_number": "1"},
                "violation": "占道经营",
                "legal_basis": "《城市市容和环境卫生管理条例》第三十六条",
                "penalty_type": "FINE",
                "amount_fen": -100,
                "execution_status": "EXECUTED",
                "surprise": True,
            }
        ],
    }
    with pytest.raises(ValidationFailedError) as caught:
        validate_payload("penalty.feedback", bad)
    found = {(p.path, p.rule) for p in caught.value.problems}
    assert found == {
        ("report_no", "string_too_short"),
        ("period_end", "missing"),
        ("decisions[0].party.id_type", "enum"),
        ("decisions[0].amount_fen", "greater_than_equal"),
        ("decisions[0].surprise", "extra_forbidden"),
    }
    assert all(p.message and p.message_zh for p in caught.value.problems)
    amount = next(p for p in caught.value.problems if p.rule == "greater_than_equal")
    assert amount.value == -100
    assert amount.message_zh == "数值应不小于 0"


def test_unknown_kind_is_a_validation_failure() -> None:
    with pytest.raises(ValidationFailedError) as caught:
        validate_payload("criminal.nonsense", {})
    assert [(p.path, p.rule) for p in caught.value.problems] == [("kind", "unknown_kind")]


def test_refusal_to_file_must_give_reasons() -> None:
    data = {
        "transfer_letter_no": "T1",
        "decision": "NOT_FILED",
        "decision_no": "N1",
        "decided_at": datetime(2017, 5, 3, tzinfo=UTC),
    }
    with pytest.raises(ValidationFailedError) as caught:
        CriminalFilingDecision.from_avro(data)
    assert [(p.path, p.rule) for p in caught.value.problems] == [("reasons", "reasons_required")]
    ok = CriminalFilingDecision.from_avro({**data, "reasons": ["情节显著轻微"]})
    assert ok.decision is FilingOutcome.NOT_FILED


def test_transfer_needs_its_letter_and_reports_missing_art6_documents() -> None:
    transfer = CriminalTransfer.model_validate(_transfer())
    assert transfer.missing_mandatory_documents() == [
        TransferDocumentType.INVESTIGATION_REPORT,
        TransferDocumentType.SEIZED_ITEMS_LIST,
        TransferDocumentType.INSPECTION_OR_APPRAISAL_REPORT,
    ]
    no_letter = _transfer(
        documents=[
            {
                "document_type": "INVESTIGATION_REPORT",
                "title": "调查报告",
                "attachment_name": "report.pdf",
                "attachment_sha256": SHA,
            }
        ]
    )
    with pytest.raises(ValidationFailedError) as caught:
        validate_payload("criminal.transfer", no_letter)
    assert [(p.path, p.rule) for p in caught.value.problems] == [
        ("documents", "transfer_letter_missing")
    ]
    assert caught.value.problems[0].message_zh == "移送材料清单须包含移送书"


def test_times_must_be_aware_and_are_kept_in_utc_milliseconds() -> None:
    beijing = timezone(timedelta(hours=8))
    approved = datetime(2017, 5, 2, 17, 30, 1, 123456, tzinfo=beijing)
    transfer = CriminalTransfer.model_validate(
        _transfer(approval={"approver": "李四", "approved_at": approved})
    )
    assert transfer.approval.approved_at == datetime(2017, 5, 2, 9, 30, 1, 123000, tzinfo=UTC)
    assert transfer.approval.approved_at.tzinfo is UTC
    # Already UTC: rounded down to the millisecond all the same, and kept when it is whole.
    for given_at, kept in (
        (datetime(2017, 5, 2, 9, 30, 1, 123999, tzinfo=UTC), 123000),
        (datetime(2017, 5, 2, 9, 30, 1, 123000, tzinfo=UTC), 123000),
    ):
        t = CriminalTransfer.model_validate(
            _transfer(approval={"approver": "李四", "approved_at": given_at})
        )
        assert t.approval.approved_at == given_at.replace(microsecond=kept)
    with pytest.raises(ValidationFailedError) as caught:
        validate_payload(
            "criminal.transfer",
            _transfer(approval={"approver": "李四", "approved_at": datetime(2017, 5, 2)}),
        )
    assert [(p.path, p.rule) for p in caught.value.problems] == [
        ("approval.approved_at", "timezone_aware")
    ]


def test_old_opinion_request_reads_into_the_latest_model() -> None:
    v1 = _parsed(SCHEMA_FILES["opinion.request"][1])
    v2 = _parsed(SCHEMA_FILES["opinion.request"][2])
    datum = {
        "request_no": "R1",
        "opinion_type": "APPRAISAL",
        "subject": "违法建筑面积认定",
        "background": None,
        "questions": ["建筑面积是多少？"],
        "materials": [],
        "due_at": None,
        "contact_name": None,
        "contact_phone": None,
    }
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, v1, datum)
    buf.seek(0)
    request = OpinionRequest.from_avro(fastavro.schemaless_reader(buf, v1, v2))
    assert request.reference_standards == []
    assert request.questions == ["建筑面积是多少？"]


def test_penalty_feedback_period_must_be_in_order() -> None:
    with pytest.raises(ValidationFailedError) as caught:
        PenaltyFeedback.from_avro(
            {
                "report_no": "F1",
                "period_start": date(2017, 2, 1),
                "period_end": date(2017, 1, 1),
                "decisions": [],
            }
        )
    assert [(p.path, p.rule) for p in caught.value.problems] == [("period_end", "period_reversed")]


def test_envelope_attachment_names_are_unique() -> None:
    attachment = {
        "name": "a.pdf",
        "media_type": "application/pdf",
        "size_bytes": 1,
        "sha256": SHA,
        "uri": "u",
    }
    envelope = {
        "message_id": UUID(int=1),
        "kind": "criminal.transfer",
        "schema_version": 1,
        "sender": "ygh.enforcement",
        "recipients": ["ygh.police"],
        "case_id": "C1",
        "correlation_id": str(UUID(int=1)),
        "sent_at": datetime(2017, 5, 2, tzinfo=UTC),
        "payload": b"\xc3\x01",
        "attachments": [attachment, attachment],
        "signature": {"algorithm": "ed25519", "key_id": "k1", "value": b"s"},
    }
    with pytest.raises(ValidationFailedError) as caught:
        Envelope.from_avro(envelope)
    assert [(p.path, p.rule) for p in caught.value.problems] == [("attachments", "duplicate_name")]
    assert Envelope.from_avro({**envelope, "attachments": [attachment]}).attachment("a.pdf")


def test_envelope_checks_the_payloads_attachment_references() -> None:
    transfer = CriminalTransfer.model_validate(
        _transfer(
            documents=[
                *_transfer()["documents"],
                {
                    "document_type": "INVESTIGATION_REPORT",
                    "title": "调查报告",
                    "attachment_name": "report.pdf",
                    "attachment_sha256": "cd" * 32,
                },
                {
                    "document_type": "SEIZED_ITEMS_LIST",
                    "title": "涉案物品清单",
                    "attachment_name": "items.pdf",
                    "attachment_sha256": SHA,
                },
            ]
        )
    )
    assert [ref[0] for ref in attachment_refs(transfer)] == [
        "documents[0].",
        "documents[1].",
        "documents[2].",
    ]

    def attachment(name: str) -> Attachment:
        return Attachment(
            name=name, media_type="application/pdf", size_bytes=1, sha256=SHA, uri="u"
        )

    envelope = Envelope(
        message_id=UUID(int=2),
        kind="criminal.transfer",
        schema_version=1,
        sender="ygh.enforcement",
        recipients=["ygh.police"],
        case_id="YGH-2017-0042",
        correlation_id=str(UUID(int=2)),
        sent_at=datetime(2017, 5, 2, tzinfo=UTC),
        payload=b"",
        attachments=[attachment("letter.pdf"), attachment("report.pdf")],
        signature=Signature(algorithm="ed25519", key_id="k1", value=b"s"),
    )
    found = [(p.path, p.rule) for p in envelope.check_attachment_refs(transfer)]
    assert found == [
        ("documents[1].attachment_sha256", "attachment_hash_mismatch"),
        ("documents[2].attachment_name", "unknown_attachment"),
    ]


def _every_ref(value: object, path: str) -> list[tuple[str, str, str]]:
    """attachment_refs as it was before it learned to skip fields: visit every field."""
    found: list[tuple[str, str, str]] = []
    if isinstance(value, BaseModel):
        name = getattr(value, "attachment_name", None)
        sha256 = getattr(value, "attachment_sha256", None)
        if isinstance(name, str) and isinstance(sha256, str):
            found.append((path, name, sha256))
        for field in type(value).model_fields:
            found += _every_ref(getattr(value, field), f"{path}{field}.")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += _every_ref(item, f"{path[:-1]}[{i}].")
    return found


@pytest.mark.parametrize("seed", range(8))
def test_attachment_refs_skips_no_field_that_can_hold_a_reference(seed: int) -> None:
    import random

    from bus.samples import sample_payload

    refs = 0
    for kind in KINDS:
        payload = sample_payload(kind, random.Random(seed))
        assert attachment_refs(payload) == _every_ref(payload, ""), kind
        refs += len(attachment_refs(payload))
    assert refs > 0  # the samples do carry references, so the comparison means something
