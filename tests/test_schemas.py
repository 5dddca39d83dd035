"""The Avro schema files: one per kind of ``KINDS``, parseable, documented, named by convention."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastavro
import pytest

from bus.models import KINDS
from schemas import SCHEMA_DIR, envelope_schema_paths, kind_schema_paths

SCHEMA_FILES = kind_schema_paths()
ALL_FILES: list[tuple[str, Path]] = [
    (f"envelope/v{v}", path) for v, path in envelope_schema_paths().items()
] + [
    (f"{kind}/v{v}", path)
    for kind, files in sorted(SCHEMA_FILES.items())
    for v, path in sorted(files.items())
]
FILE_IDS = [name for name, _ in ALL_FILES]
CJK = re.compile(r"[\u4e00-\u9fff]")
LATIN_WORD = re.compile(r"[A-Za-z]{2,}")
SNAKE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
UPPER_SNAKE = re.compile(r"^[A-Z][A-Z0-9]*(_[A-Z0-9]+)*$")
CAMEL = re.compile(r"^[A-Z][A-Za-z0-9]*$")


def _load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _camel(kind: str) -> str:
    return "".join(part.capitalize() for part in re.split(r"[._]", kind))


def _named(schema: Any) -> Iterator[dict[str, Any]]:
    """Every record, enum and fixed defined in ``schema``, depth first."""
    if isinstance(schema, list):
        for branch in schema:
            yield from _named(branch)
    elif isinstance(schema, dict):
        t = schema.get("type")
        if t in ("record", "enum", "fixed"):
            yield schema
            for f in schema.get("fields", []):
                yield from _named(f["type"])
        elif t == "array":
            yield from _named(schema["items"])
        elif t == "map":
            yield from _named(schema["values"])


def _fields(schema: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    """(record name, field) for every field of every record in ``schema``."""
    for named in _named(schema):
        for f in named.get("fields", []):
            yield named["name"], f


def _non_null(t: Any) -> Any:
    if isinstance(t, list):
        rest = [b for b in t if b != "null"]
        return rest[0] if len(rest) == 1 else t
    return t


def test_every_kind_has_a_v1_schema_and_nothing_else_is_there() -> None:
    assert sorted(SCHEMA_FILES) == sorted(KINDS)
    for kind in KINDS:
        assert 1 in SCHEMA_FILES[kind], kind
        assert (SCHEMA_DIR / kind / "v1.avsc").is_file()


def test_versions_are_numbered_without_gaps() -> None:
    for kind, files in SCHEMA_FILES.items():
        assert sorted(files) == list(range(1, len(files) + 1)), kind


@pytest.mark.parametrize(("name", "path"), ALL_FILES, ids=FILE_IDS)
def test_schema_parses_with_fastavro(name: str, path: Path) -> None:
    parsed = fastavro.parse_schema(_load(path))
    assert parsed["type"] == "record"


@pytest.mark.parametrize(("name", "path"), ALL_FILES, ids=FILE_IDS)
def test_every_type_and_field_is_documented_in_chinese_and_english(name: str, path: Path) -> None:
    schema = _load(path)
    undocumented = [n["name"] for n in _named(schema) if not _bilingual(n.get("doc"))]
    undocumented += [
        f"{rec}.{f['name']}" for rec, f in _fields(schema) if not _bilingual(f.get("doc"))
    ]
    assert undocumented == []


def _bilingual(doc: object) -> bool:
    return isinstance(doc, str) and bool(CJK.search(doc)) and bool(LATIN_WORD.search(doc))


@pytest.mark.parametrize(("name", "path"), ALL_FILES, ids=FILE_IDS)
def test_names_follow_the_conventions(name: str, path: Path) -> None:
    schema = _load(path)
    assert schema["namespace"] == "casebus.v1"
    if name != "envelope":
        assert schema["name"] == _camel(name.split("/")[0])
    names = [n["name"] for n in _named(schema)]
    assert len(names) == len(set(names)), "named types must be unique within a schema"
    for n in _named(schema):
        assert CAMEL.match(n["name"]), n["name"]
        for symbol in n.get("symbols", []):
            assert UPPER_SNAKE.match(symbol), symbol
        if "default" in n and n["type"] == "enum":
            assert n["default"] in n["symbols"]
    for rec, f in _fields(schema):
        where = f"{rec}.{f['name']}"
        assert SNAKE.match(f["name"]), where
        t = _non_null(f["type"])
        logical = t.get("logicalType") if isinstance(t, dict) else None
        if f["name"].endswith("_at") or logical == "timestamp-millis":
            assert logical == "timestamp-millis" and t["type"] == "long", where
            assert f["name"].endswith("_at"), where
        if f["name"].endswith("_fen"):
            assert t == "long", f"{where}: money is integer fen in a long"
        if f["name"].endswith("_on"):
            assert logical == "date", where
        if isinstance(f["type"], list):
            assert f["type"][0] == "null" and f.get("default", "absent") is None, (
                f"{where}: an optional field is [null, X] with default null"
            )


def test_nested_type_names_are_unique_across_kinds() -> None:
    """A codec may parse several kinds into one name table; no two kinds define the same name."""
    owner: dict[str, str] = {}
    for kind, files in SCHEMA_FILES.items():
        for path in files.values():
            for n in _named(_load(path)):
                assert owner.setdefault(n["name"], kind) == kind, n["name"]


def test_same_full_name_across_versions() -> None:
    for kind, files in SCHEMA_FILES.items():
        full = {(s["namespace"], s["name"]) for s in map(_load, files.values())}
        assert len(full) == 1, kind


def test_opinion_request_v2_adds_one_optional_field_with_a_default() -> None:
    v1 = _load(SCHEMA_FILES["opinion.request"][1])
    v2 = _load(SCHEMA_FILES["opinion.request"][2])
    added = [f for f in v2["fields"] if f["name"] not in {g["name"] for g in v1["fields"]}]
    assert [f["name"] for f in added] == ["reference_standards"]
    assert added[0]["default"] == []
    assert [f for f in v2["fields"] if f not in added] == v1["fields"]


def test_penalty_decisions_carry_the_suspected_crime_flag() -> None:
    schema = _load(SCHEMA_FILES["penalty.feedback"][1])
    decision = {f["name"]: f for rec, f in _fields(schema) if rec == "PenaltyFeedbackDecision"}
    assert decision["suspected_crime"]["type"] == "boolean"
    assert decision["suspected_crime"]["default"] is False
    assert decision["amount_fen"]["type"] == "long"
    assert "case_id" in decision
