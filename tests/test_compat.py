"""Schema evolution: every kind's versions are FULL_TRANSITIVE compatible, and breaks are caught."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from bus import compat
from bus.cli.schemas import app
from bus.compat import check_all, check_pair, check_schemas
from schemas import SCHEMA_DIR

_MAIN = "from bus.cli import main; main()"

Mutation = Callable[[dict[str, Any]], None]


def test_repo_schemas_are_full_transitive_compatible() -> None:
    assert check_all() == []


def test_every_ordered_pair_of_opinion_request_versions_is_checked() -> None:
    pairs = {
        (r.writer_version, r.reader_version) for r in check_schemas() if r.kind == "opinion.request"
    }
    assert pairs == {(1, 2), (2, 1)}


def _copy_with_v2(tmp_path: Path, kind: str, mutate: Mutation) -> Path:
    """A schema folder holding ``kind`` v1 from the repo and a mutated v2."""
    shutil.copytree(SCHEMA_DIR / kind, tmp_path / kind)
    schema = json.loads((tmp_path / kind / "v1.avsc").read_text(encoding="utf-8"))
    mutate(schema)
    (tmp_path / kind / "v2.avsc").write_text(json.dumps(schema, ensure_ascii=False), "utf-8")
    return tmp_path


def _drop_field(name: str) -> Mutation:
    def mutate(schema: dict[str, Any]) -> None:
        schema["fields"] = [f for f in schema["fields"] if f["name"] != name]

    return mutate


def _add_required_field(name: str) -> Mutation:
    def mutate(schema: dict[str, Any]) -> None:
        schema["fields"].append({"name": name, "type": "string", "doc": "新增。 Added."})

    return mutate


def _drop_enum_symbol(field: str, symbol: str) -> Mutation:
    def mutate(schema: dict[str, Any]) -> None:
        enum = next(f for f in schema["fields"] if f["name"] == field)["type"]
        enum["symbols"].remove(symbol)
        enum.pop("default", None)

    return mutate


BREAKS = [
    # (kind, mutation, the pair that fails, the field named, the rule)
    ("clue.receipt", _drop_field("clue_no"), "v2 → v1", "clue_no", "missing_default"),
    ("bus.ack", _add_required_field("channel"), "v1 → v2", "channel", "missing_default"),
    (
        "supervision.notice",
        _drop_enum_symbol("notice_type", "FILE_CASE"),
        "v1 → v2",
        "notice_type",
        "enum_symbol_removed",
    ),
]
BREAK_IDS = ["field-removed", "field-added-without-default", "enum-symbol-removed"]


@pytest.mark.parametrize(("kind", "mutate", "pair", "field", "rule"), BREAKS, ids=BREAK_IDS)
def test_check_cli_fails_naming_kind_pair_and_field(
    tmp_path: Path, kind: str, mutate: Mutation, pair: str, field: str, rule: str
) -> None:
    folder = _copy_with_v2(tmp_path, kind, mutate)
    result = CliRunner().invoke(app, ["check", "--schema-dir", str(folder)])
    assert result.exit_code == 1, result.output
    line = next(line for line in result.output.splitlines() if f"field {field}:" in line)
    assert kind in line
    writer, reader = pair.split(" → ")
    assert f"writer {writer} → reader {reader}" in line
    assert f"({rule})" in line
    assert "compatibility problem(s)" in result.output


@pytest.mark.parametrize(("kind", "mutate", "pair", "field", "rule"), BREAKS, ids=BREAK_IDS)
def test_fastavro_round_trip_alone_also_catches_the_break(
    tmp_path: Path, kind: str, mutate: Mutation, pair: str, field: str, rule: str
) -> None:
    """The dynamic half does not lean on the static walk: it finds the same field by itself."""
    folder = _copy_with_v2(tmp_path, kind, mutate)
    v1 = json.loads((folder / kind / "v1.avsc").read_text(encoding="utf-8"))
    v2 = json.loads((folder / kind / "v2.avsc").read_text(encoding="utf-8"))
    writer, reader = (v2, v1) if pair == "v2 → v1" else (v1, v2)
    found = compat._dynamic(writer, reader)
    assert [(path, r) for path, r, _ in found][:1] == [(field, "resolution_failed")]


def test_check_cli_passes_on_the_repo_schemas() -> None:
    result = CliRunner().invoke(app, ["check"])
    assert result.exit_code == 0, result.output
    assert "ok    opinion.request  v1 → v2" in result.output
    assert "ok    opinion.request  v2 → v1" in result.output
    assert "all " in result.output


def test_casebus_schemas_check_is_registered_on_the_root_cli(tmp_path: Path) -> None:
    folder = _copy_with_v2(tmp_path, "clue.receipt", _drop_field("clue_no"))
    casebus = Path(sys.executable).with_name("casebus")
    command = [str(casebus)] if casebus.exists() else [sys.executable, "-c", _MAIN]
    ok = subprocess.run([*command, "schemas", "check"], capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = subprocess.run(
        [*command, "schemas", "check", "--schema-dir", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 1
    assert "clue.receipt: writer v2 → reader v1: field clue_no" in bad.stdout


def test_promotions_allowed_by_the_spec_pass_and_narrowing_fails() -> None:
    def record(t: str) -> dict[str, Any]:
        return {"type": "record", "name": "R", "fields": [{"name": "n", "type": t}]}

    assert check_pair("k", 1, record("int"), 2, record("long")).ok
    assert check_pair("k", 1, record("string"), 2, record("bytes")).ok
    narrowing = check_pair("k", 1, record("long"), 2, record("int"))
    assert [(p.field, p.rule) for p in narrowing.problems] == [("n", "type_mismatch")]


def test_enum_default_lets_a_reader_take_unknown_symbols(tmp_path: Path) -> None:
    # criminal.case_update's status has default OTHER, so dropping a symbol is still compatible.
    folder = _copy_with_v2(tmp_path, "criminal.case_update", _drop_enum_symbol_keep_default)
    assert check_all(folder) == []


def _drop_enum_symbol_keep_default(schema: dict[str, Any]) -> None:
    enum = next(f for f in schema["fields"] if f["name"] == "status")["type"]
    enum["symbols"].remove("PROSECUTED")


def test_optional_field_added_with_default_is_compatible(tmp_path: Path) -> None:
    def add(schema: dict[str, Any]) -> None:
        schema["fields"].append(
            {"name": "memo", "type": ["null", "string"], "default": None, "doc": "备注。 Memo."}
        )

    assert check_all(_copy_with_v2(tmp_path, "bus.ack", add)) == []


def test_unparsable_schema_is_reported(tmp_path: Path) -> None:
    (tmp_path / "bus.ack").mkdir()
    (tmp_path / "bus.ack" / "v1.avsc").write_text('{"type": "record", "name": "BusAck"', "utf-8")
    problems = check_all(tmp_path)
    assert [(p.kind, p.rule) for p in problems] == [("bus.ack", "unparsable")]


def test_changed_logical_type_is_flagged() -> None:
    def record(logical: str) -> dict[str, Any]:
        t = {"type": "long", "logicalType": logical}
        return {"type": "record", "name": "R", "fields": [{"name": "seen_at", "type": t}]}

    result = check_pair("k", 1, record("timestamp-millis"), 2, record("timestamp-micros"))
    assert [(p.field, p.rule) for p in result.problems] == [("seen_at", "logical_type_changed")]


def test_default_of_the_wrong_type_is_flagged() -> None:
    writer = {"type": "record", "name": "R", "fields": [{"name": "a", "type": "int"}]}
    reader = {
        "type": "record",
        "name": "R",
        "fields": [
            {"name": "a", "type": "int"},
            {"name": "b", "type": ["null", "string"], "default": "x"},
        ],
    }
    result = check_pair("k", 1, writer, 2, reader)
    assert [(p.field, p.rule) for p in result.problems] == [("b", "bad_default")]


def test_recursive_schemas_are_walked_without_looping() -> None:
    def node(value_type: str) -> dict[str, Any]:
        return {
            "type": "record",
            "name": "Node",
            "fields": [
                {"name": "value", "type": value_type},
                {"name": "next", "type": ["null", "Node"], "default": None},
            ],
        }

    assert check_pair("k", 1, node("int"), 2, node("long")).ok
    narrowing = check_pair("k", 1, node("long"), 2, node("int"))
    assert [(p.field, p.rule) for p in narrowing.problems] == [("value", "type_mismatch")]
