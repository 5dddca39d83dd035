"""Prove every kind's schema versions FULL_TRANSITIVE compatible, as design §3 requires.

For each kind and every ordered pair of its versions (writer vN → reader vM, N ≠ M) two checks run:

* a **static** walk of the two schemas by the Avro specification's resolution rules: a reader
  field the writer lacks needs a default, a writer enum symbol the reader lacks needs a reader
  enum default, a changed type must be an allowed promotion (int → long/float/double, long →
  float/double, float → double, string ↔ bytes), named types keep their names, unions resolve
  branch by branch, and a changed logical type is flagged because it silently changes meaning;
* a **dynamic** round trip with fastavro: sample records generated from the writer schema (enough
  of them to write every union branch and every enum symbol) are written with the writer schema
  and read back with ``reader_schema=``; values present in both must survive.

Each :class:`CompatProblem` names the kind, the pair and the field at fault.
"""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import fastavro

from schemas import SCHEMA_DIR, envelope_paths_in

__all__ = ["CompatProblem", "PairResult", "check_all", "check_pair", "check_schemas"]

_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
_NAMED = frozenset({"record", "error", "enum", "fixed"})
# Avro specification, "Schema Resolution": the writer's type may be promoted to the reader's.
_PROMOTIONS: dict[str, frozenset[str]] = {
    "int": frozenset({"long", "float", "double"}),
    "long": frozenset({"float", "double"}),
    "float": frozenset({"double"}),
    "string": frozenset({"bytes"}),
    "bytes": frozenset({"string"}),
}
_MAX_MESSAGE = 240


@dataclass(frozen=True, slots=True)
class CompatProblem:
    """One incompatibility: a reader of ``reader_version`` cannot read ``writer_version`` data."""

    kind: str
    writer_version: int
    reader_version: int
    field: str
    rule: str
    message: str

    def __str__(self) -> str:
        return (
            f"{self.kind}: writer v{self.writer_version} → reader v{self.reader_version}: "
            f"field {self.field}: {self.message} ({self.rule})"
        )


@dataclass(frozen=True, slots=True)
class PairResult:
    """The outcome of checking one ordered pair of versions of one kind."""

    kind: str
    writer_version: int
    reader_version: int
    problems: tuple[CompatProblem, ...] = field(default=())

    @property
    def ok(self) -> bool:
        """True when the reader resolves every record the writer can write."""
        return not self.problems


# --- named-type bookkeeping ------------------------------------------------------------------


def _fullname(name: str, namespace: str | None) -> str:
    return name if "." in name or not namespace else f"{namespace}.{name}"


def _short(name: str) -> str:
    return name.rpartition(".")[2]


class _Names:
    """Every named type of one schema by full name, with the namespace its children inherit."""

    def __init__(self, schema: Any) -> None:
        self.types: dict[str, tuple[dict[str, Any], str | None]] = {}
        self._collect(schema, None)

    def _collect(self, s: Any, ns: str | None) -> None:
        if isinstance(s, list):
            for branch in s:
                self._collect(branch, ns)
        elif isinstance(s, dict):
            t = s.get("type")
            if t in _NAMED:
                full = _fullname(s["name"], s.get("namespace", ns))
                inner = full.rpartition(".")[0] or None
                self.types[full] = (s, inner)
                for f in s.get("fields", []):
                    self._collect(f["type"], inner)
            elif t == "array":
                self._collect(s["items"], ns)
            elif t == "map":
                self._collect(s["values"], ns)
            elif isinstance(t, dict | list):
                self._collect(t, ns)

    def deref(self, s: Any, ns: str | None) -> tuple[Any, str | None]:
        """The schema ``s`` stands for (following name references) and its children's namespace."""
        while True:
            if isinstance(s, str) and s not in _PRIMITIVES:
                s, ns = self.types[_fullname(s, ns)]
                continue
            if isinstance(s, dict) and isinstance(s.get("type"), dict | list):
                s = s["type"]
                continue
            if isinstance(s, dict) and s.get("type") in _NAMED:
                ns = _fullname(s["name"], s.get("namespace", ns)).rpartition(".")[0] or None
            return s, ns


def _type(s: Any) -> str:
    if isinstance(s, list):
        return "union"
    if isinstance(s, str):
        return s
    t = s["type"]
    return "record" if t == "error" else str(t)


def _logical(s: Any) -> str | None:
    return s.get("logicalType") if isinstance(s, dict) else None


def _name(s: Any) -> str:
    return _short(str(s["name"]))


# --- static check ------------------------------------------------------------------------------


@dataclass
class _Static:
    writer_names: _Names
    reader_names: _Names
    found: list[tuple[str, str, str]] = field(default_factory=list)
    # Record pairs being walked, so a recursive schema ends instead of looping.
    active: set[tuple[str, str]] = field(default_factory=set)

    def problem(self, path: str, rule: str, message: str) -> None:
        self.found.append((path or "$", rule, message))

    def matches(self, w: Any, wns: str | None, r: Any, rns: str | None) -> bool:
        """The specification's "match" used to pick a reader union branch."""
        w, _ = self.writer_names.deref(w, wns)
        r, _ = self.reader_names.deref(r, rns)
        wt, rt = _type(w), _type(r)
        if wt in _NAMED and wt == rt:
            aliases = {_short(a) for a in r.get("aliases", [])} if rt == "record" else set()
            same = _name(w) == _name(r) or _name(w) in aliases
            return same and (rt != "fixed" or w.get("size") == r.get("size"))
        return wt == rt or rt in _PROMOTIONS.get(wt, frozenset())

    def walk(self, w: Any, wns: str | None, r: Any, rns: str | None, path: str) -> None:
        w, wns = self.writer_names.deref(w, wns)
        r, rns = self.reader_names.deref(r, rns)
        wt, rt = _type(w), _type(r)
        if wt == "union":
            for branch in w:
                self.walk(branch, wns, r, rns, path)
            return
        if rt == "union":
            chosen = next((b for b in r if self.matches(w, wns, b, rns)), None)
            if chosen is None:
                self.problem(path, "type_mismatch", f"no branch of the reader union reads {wt}")
            else:
                self.walk(w, wns, chosen, rns, path)
            return
        if not self.matches(w, wns, r, rns):
            what = f"{wt} {_name(w)}" if wt in _NAMED else wt
            into = f"{rt} {_name(r)}" if rt in _NAMED else rt
            self.problem(path, "type_mismatch", f"writer {what} cannot be read as {into}")
            return
        if _logical(w) != _logical(r):
            self.problem(
                path,
                "logical_type_changed",
                f"logical type {_logical(w)} became {_logical(r)}",
            )
        if rt == "record":
            key = (_fullname(w["name"], wns), _fullname(r["name"], rns))
            if key not in self.active:
                self.active.add(key)
                self._record(w, wns, r, rns, path)
                self.active.discard(key)
        elif rt == "enum":
            self._enum(w, r, path)
        elif rt == "array":
            self.walk(w["items"], wns, r["items"], rns, f"{path}[]")
        elif rt == "map":
            self.walk(w["values"], wns, r["values"], rns, f"{path}{{}}")

    def _record(self, w: Any, wns: str | None, r: Any, rns: str | None, path: str) -> None:
        by_name = {f["name"]: f for f in w["fields"]}
        for rf in r["fields"]:
            fpath = f"{path}.{rf['name']}" if path else rf["name"]
            wf = by_name.get(rf["name"]) or next(
                (by_name[a] for a in rf.get("aliases", []) if a in by_name), None
            )
            if "default" in rf and not self.default_ok(rf["type"], rns, rf["default"]):
                self.problem(fpath, "bad_default", f"default {rf['default']!r} is not of its type")
            if wf is None:
                if "default" not in rf:
                    self.problem(
                        fpath,
                        "missing_default",
                        "reader field is not in the writer schema and has no default",
                    )
                continue
            self.walk(wf["type"], wns, rf["type"], rns, fpath)

    def default_ok(self, s: Any, ns: str | None, value: Any) -> bool:
        """Whether ``value`` (JSON) is a valid default for schema ``s``; unions use branch one."""
        s, ns = self.reader_names.deref(s, ns)
        t = _type(s)
        if t == "union":
            return self.default_ok(s[0], ns, value)
        checks: dict[str, Any] = {
            "null": lambda: value is None,
            "boolean": lambda: isinstance(value, bool),
            "int": lambda: isinstance(value, int) and not isinstance(value, bool),
            "long": lambda: isinstance(value, int) and not isinstance(value, bool),
            "float": lambda: isinstance(value, int | float) and not isinstance(value, bool),
            "double": lambda: isinstance(value, int | float) and not isinstance(value, bool),
            "string": lambda: isinstance(value, str),
            "bytes": lambda: isinstance(value, str),
            "fixed": lambda: isinstance(value, str) and len(value) == s["size"],
            "enum": lambda: value in s["symbols"],
            "array": lambda: (
                isinstance(value, list) and all(self.default_ok(s["items"], ns, v) for v in value)
            ),
            "map": lambda: (
                isinstance(value, dict)
                and all(self.default_ok(s["values"], ns, v) for v in value.values())
            ),
            "record": lambda: (
                isinstance(value, dict)
                and all(
                    self.default_ok(f["type"], ns, value[f["name"]])
                    if f["name"] in value
                    else "default" in f
                    for f in s["fields"]
                )
            ),
        }
        return bool(checks[t]()) if t in checks else True

    def _enum(self, w: Any, r: Any, path: str) -> None:
        removed = [s for s in w["symbols"] if s not in r["symbols"]]
        if removed and "default" not in r:
            self.problem(
                path or "$",
                "enum_symbol_removed",
                f"enum {_name(r)} lacks writer symbol(s) {', '.join(removed)} "
                "and has no default symbol",
            )
        if "default" in r and r["default"] not in r["symbols"]:
            self.problem(path, "bad_default", f"enum default {r['default']!r} is not a symbol")


# --- dynamic check -----------------------------------------------------------------------------

_EPOCH_SAMPLE = datetime(2017, 3, 1, tzinfo=UTC)


def _widest(s: Any, names: _Names, ns: str | None, seen: set[str]) -> int:
    """How many sample records it takes to write every union branch and enum symbol."""
    s, ns = names.deref(s, ns)
    t = _type(s)
    if t == "union":
        return max([len(s), *(_widest(b, names, ns, seen) for b in s)])
    if t == "enum":
        return len(s["symbols"])
    if t == "record":
        full = _fullname(s["name"], ns)
        if full in seen:
            return 1
        seen.add(full)
        return max([1, *(_widest(f["type"], names, ns, seen) for f in s["fields"])])
    if t == "array":
        return _widest(s["items"], names, ns, seen)
    if t == "map":
        return _widest(s["values"], names, ns, seen)
    return 1


def _sample(s: Any, names: _Names, ns: str | None, i: int, depth: int = 0) -> Any:
    """Sample ``i`` of a datum of schema ``s``: variant ``i`` picks union branch and enum symbol."""
    s, ns = names.deref(s, ns)
    t, logical = _type(s), _logical(s)
    if t == "union":
        branches = s
        if depth > 16:  # deep in a recursive schema: stop at a branch that does not recurse
            branches = [b for b in s if _type(names.deref(b, ns)[0]) not in _NAMED] or s
        return _sample(branches[i % len(branches)], names, ns, i, depth + 1)
    if t == "record":
        return {f["name"]: _sample(f["type"], names, ns, i, depth + 1) for f in s["fields"]}
    if t == "enum":
        return s["symbols"][i % len(s["symbols"])]
    if t == "array":
        length = 0 if depth > 8 else 1 + i % 2
        return [_sample(s["items"], names, ns, i + j, depth + 1) for j in range(length)]
    if t == "map":
        return {
            f"k{j}": _sample(s["values"], names, ns, i + j, depth + 1) for j in range(1 + i % 2)
        }
    if t == "fixed":
        return bytes([i % 256]) * int(s["size"])
    if logical in {"timestamp-millis", "timestamp-micros"}:
        return _EPOCH_SAMPLE + timedelta(days=i, milliseconds=i)
    if logical == "date":
        return _EPOCH_SAMPLE.date() + timedelta(days=i)
    if logical == "uuid":
        return str(uuid.UUID(int=i + 1))
    if logical == "decimal":
        return Decimal(i).scaleb(-int(s.get("scale", 0)))
    return {
        "null": None,
        "boolean": i % 2 == 0,
        "int": i,
        "long": i * 1_000_003,
        "float": float(i) / 2,
        "double": float(i) / 4,
        "bytes": b"b" * (1 + i % 3),
        "string": f"s{i}",
    }[t]


def _same(written: Any, read: Any) -> bool:
    if isinstance(read, uuid.UUID):
        read = str(read)
    if isinstance(written, bytes) and isinstance(read, str):
        return written == read.encode()
    if isinstance(written, str) and isinstance(read, bytes):
        return written.encode() == read
    if isinstance(written, datetime | date) != isinstance(read, datetime | date):
        return True  # a changed logical type; the static check reports it
    return bool(written == read)


def _survivors(written: Any, read: Any, path: str) -> Iterator[str]:
    """Paths where a value present in both writer and reader did not survive the round trip."""
    if isinstance(written, dict) and isinstance(read, dict):
        for key, value in written.items():
            if key in read:
                yield from _survivors(value, read[key], f"{path}.{key}" if path else key)
    elif isinstance(written, list) and isinstance(read, list):
        for w, r in zip(written, read, strict=False):
            yield from _survivors(w, r, f"{path}[]")
    elif isinstance(read, str) and isinstance(written, str) and written != read:
        return  # an unknown enum symbol read as the reader's default; allowed
    elif not _same(written, read):
        yield path or "$"


def _round_trip(writer: Any, reader: Any, datum: Any) -> Any:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(writer), datum)
    buf.seek(0)
    return fastavro.schemaless_reader(
        buf, fastavro.parse_schema(writer), fastavro.parse_schema(reader)
    )


def _guilty_field(writer: Any, reader: Any, datum: Any) -> str:
    """Find the top-level field at fault by resolving one field at a time."""
    w_fields = {f["name"]: f for f in writer.get("fields", [])}
    for rf in reader.get("fields", []):
        wf = w_fields.get(rf["name"])
        one_w = {**writer, "fields": [wf] if wf else []}
        one_r = {**reader, "fields": [rf]}
        try:
            _round_trip(one_w, one_r, {rf["name"]: datum[rf["name"]]} if wf else {})
        except Exception:  # any failure here points at this field
            return str(rf["name"])
    return "$"


def _dynamic(writer: Any, reader: Any) -> list[tuple[str, str, str]]:
    names = _Names(writer)
    found: list[tuple[str, str, str]] = []
    for i in range(max(3, _widest(writer, names, None, set()))):
        datum = _sample(writer, names, None, i)
        try:
            read = _round_trip(writer, reader, datum)
        except Exception as e:  # fastavro raises several unrelated types
            message = f"fastavro could not resolve sample {i}: {e}"[:_MAX_MESSAGE]
            found.append((_guilty_field(writer, reader, datum), "resolution_failed", message))
            continue
        for path in _survivors(datum, read, ""):
            found.append((path, "value_changed", f"sample {i} did not survive the round trip"))
    return found


# --- public API --------------------------------------------------------------------------------


def _top(path: str) -> str:
    return path.split(".")[0].split("[")[0]


def check_pair(
    kind: str, writer_version: int, writer: Any, reader_version: int, reader: Any
) -> PairResult:
    """Check that ``reader`` resolves everything ``writer`` can write (one direction)."""
    static = _Static(_Names(writer), _Names(reader))
    static.walk(writer, None, reader, None, "")
    found = list(static.found)
    flagged = {p.split(".")[0].split("[")[0] for p, _, _ in found}
    # Report a round-trip failure only where the static walk missed it, so each fault shows once.
    found += [
        d for d in _dynamic(writer, reader) if d[0].split(".")[0].split("[")[0] not in flagged
    ]
    problems = tuple(
        CompatProblem(kind, writer_version, reader_version, path, rule, message)
        for path, rule, message in dict.fromkeys(found)
    )
    return PairResult(kind, writer_version, reader_version, problems)


def _schema_files(schema_dir: Path) -> dict[str, dict[int, Path]]:
    # The envelope's versions (envelope.avsc, envelope.v<N>.avsc) are held to the same rule:
    # a reader of either version must read what the other writes.
    envelope = envelope_paths_in(schema_dir)
    out: dict[str, dict[int, Path]] = {"envelope": envelope} if envelope else {}
    for path in sorted(schema_dir.glob("*/v*.avsc")):
        if path.stem[1:].isdigit():
            out.setdefault(path.parent.name, {})[int(path.stem[1:])] = path
    return out


def check_schemas(schema_dir: Path | None = None) -> list[PairResult]:
    """Every kind's ordered version pairs under ``schema_dir`` (default: the repo's ``schemas/``).

    A kind with one version yields one self-pair (v1 → v1) proving its schema parses and round
    trips. A schema that does not parse is reported against itself.
    """
    if schema_dir is None:
        schema_dir = SCHEMA_DIR
    results: list[PairResult] = []
    for kind, files in sorted(_schema_files(Path(schema_dir)).items()):
        loaded: dict[int, Any] = {}
        for version, path in sorted(files.items()):
            try:
                loaded[version] = json.loads(path.read_text(encoding="utf-8"))
                fastavro.parse_schema(loaded[version])
            except Exception as e:  # JSON and fastavro parse errors alike
                loaded.pop(version, None)
                problem = CompatProblem(
                    kind, version, version, "$", "unparsable", str(e)[:_MAX_MESSAGE]
                )
                results.append(PairResult(kind, version, version, (problem,)))
        versions = sorted(loaded)
        pairs = [(w, r) for w in versions for r in versions if w != r] or [(v, v) for v in versions]
        for w, r in pairs:
            results.append(check_pair(kind, w, loaded[w], r, loaded[r]))
    return results


def check_all(schema_dir: Path | None = None) -> list[CompatProblem]:
    """Every compatibility problem among all versions of every kind; empty when all is well."""
    return [p for result in check_schemas(schema_dir) for p in result.problems]
