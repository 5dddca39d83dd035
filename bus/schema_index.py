"""Every Avro schema of casebus, parsed once and findable by its wire fingerprint.

A Kafka value names its writer schema only by the 8-byte CRC-64-AVRO fingerprint of that
schema's Parsing Canonical Form (Avro single-object encoding). To decode anything, a reader
must map that fingerprint back to a schema file under ``schemas/``; this module builds that map,
once per process, and answers "which kind and version is this?" and "what is the latest version
of that kind?". The fingerprint is computed here rather than borrowed from a library so the wire
contract does not hinge on one library's helper (the interop tests check it against the
reference ``avro`` package).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import to_parsing_canonical_form

import schemas
from bus.errors import ConfigError

__all__ = [
    "ENVELOPE_KIND",
    "SINGLE_OBJECT_MARKER",
    "SchemaEntry",
    "SchemaIndex",
    "crc64_avro",
    "default_index",
    "kind_paths_in",
]

SINGLE_OBJECT_MARKER = b"\xc3\x01"
"""The two bytes that open every Avro single-object encoded value."""

ENVELOPE_KIND = "envelope"
"""The pseudo-kind under which the envelope's own schema is listed in an index."""

_EMPTY64 = 0xC15D213AA4D7A795
_MASK64 = 0xFFFFFFFFFFFFFFFF


def _fp_table() -> tuple[int, ...]:
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            # (fp >>> 1) ^ (EMPTY & -(fp & 1)), with Java's two's complement spelled out.
            fp = (fp >> 1) ^ (_EMPTY64 if fp & 1 else 0)
        table.append(fp & _MASK64)
    return tuple(table)


_FP_TABLE = _fp_table()


def crc64_avro(data: bytes) -> int:
    """The 64-bit Rabin fingerprint (CRC-64-AVRO) of ``data``, as the Avro spec defines it."""
    fp = _EMPTY64
    table = _FP_TABLE
    for b in data:
        fp = (fp >> 8) ^ table[(fp ^ b) & 0xFF]
    return fp


@dataclass(frozen=True, slots=True)
class SchemaEntry:
    """One schema file: its kind and version, the parsed schema, and its wire identity."""

    kind: str
    version: int
    schema: dict[str, Any] = field(repr=False)
    """The schema as parsed by ``fastavro.parse_schema`` (ready for reader and writer)."""
    canonical_form: str = field(repr=False)
    """The Parsing Canonical Form the fingerprint is taken over."""
    fingerprint: int
    """CRC-64-AVRO of the canonical form, as an unsigned 64-bit integer."""
    path: Path

    @property
    def fingerprint_bytes(self) -> bytes:
        """The fingerprint as it appears on the wire: 8 bytes, little-endian."""
        return self.fingerprint.to_bytes(8, "little")

    @property
    def header(self) -> bytes:
        """The 10-byte single-object header: marker ``C3 01`` then the fingerprint."""
        return SINGLE_OBJECT_MARKER + self.fingerprint_bytes

    @property
    def is_envelope(self) -> bool:
        """Whether this is the envelope's schema rather than a payload kind's."""
        return self.kind == ENVELOPE_KIND


def _load(path: Path, kind: str, version: int) -> SchemaEntry:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        # A fresh name table per file: v1 and v2 of a kind define the same record names.
        parsed = fastavro.parse_schema(raw, named_schemas={})
        canonical = to_parsing_canonical_form(parsed)
        if not isinstance(parsed, dict):
            raise TypeError("the top level must be a JSON object (a named record)")
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise ConfigError(f"schema file {path} cannot be loaded: {e}") from e
    return SchemaEntry(
        kind=kind,
        version=version,
        schema=parsed,
        canonical_form=canonical,
        fingerprint=crc64_avro(canonical.encode("utf-8")),
        path=path,
    )


def _signature_is_last(schema: dict[str, Any]) -> bool:
    fields = schema.get("fields", [])
    if not fields or fields[-1]["name"] != "signature":
        return False
    inner = fields[-1]["type"]
    last = inner.get("fields", [])[-1:] if isinstance(inner, dict) else []
    return bool(last) and last[0]["name"] == "value" and last[0]["type"] == "bytes"


def kind_paths_in(folder: Path) -> dict[str, dict[int, Path]]:
    """Every ``<kind>/v<N>.avsc`` under ``folder`` by kind and version, as ``schemas`` lays out."""
    out: dict[str, dict[int, Path]] = {}
    for path in sorted(folder.glob("*/v*.avsc")):
        version = path.stem[1:]
        if version.isdigit():
            out.setdefault(path.parent.name, {})[int(version)] = path
    return out


class SchemaIndex:
    """The envelope schema and every kind's versions, findable by fingerprint."""

    def __init__(
        self,
        *,
        envelope_path: Path | None = None,
        kind_paths: Mapping[str, Mapping[int, Path]],
        envelope_paths: Mapping[int, Path] | None = None,
    ) -> None:
        # envelope_path alone: an index with envelope version 1 only (older callers, tests).
        paths = dict(envelope_paths or {})
        if envelope_path is not None:
            paths.setdefault(1, envelope_path)
        if 1 not in paths:
            raise ConfigError("an index needs the envelope's schema version 1 (envelope.avsc)")
        self._envelopes: dict[int, SchemaEntry] = {}
        self._by_fp: dict[int, SchemaEntry] = {}
        for version in sorted(paths):
            entry = _load(paths[version], ENVELOPE_KIND, version)
            other = self._by_fp.get(entry.fingerprint)
            if other is not None:
                # The oldest version that fits is the only encoding of an envelope; two versions
                # the wire cannot tell apart would break that.
                raise ConfigError(
                    f"{entry.path} and {other.path} have the same canonical form "
                    f"(fingerprint {entry.fingerprint:016x}); an envelope version must add a field"
                )
            self._envelopes[version] = entry
            self._by_fp[entry.fingerprint] = entry
        self._envelope = self._envelopes[1]
        self._by_kind: dict[str, dict[int, SchemaEntry]] = {}
        for kind in sorted(kind_paths):
            if kind == ENVELOPE_KIND:
                raise ConfigError(f"{ENVELOPE_KIND!r} is reserved and cannot name a message kind")
            versions = kind_paths[kind]
            for version in sorted(versions):
                entry = _load(versions[version], kind, version)
                self._by_kind.setdefault(kind, {})[version] = entry
                other = self._by_fp.get(entry.fingerprint)
                if other is None:
                    self._by_fp[entry.fingerprint] = entry
                elif other.kind != kind:
                    # The wire could not tell these two apart; refuse rather than guess.
                    raise ConfigError(
                        f"{entry.path} and {other.path} have the same canonical form "
                        f"(fingerprint {entry.fingerprint:016x}); give their records distinct names"
                    )
                # Same kind, same canonical form (only docs or defaults changed): the bytes are
                # identical, so the lowest version stands for both as writer.
        self._latest = {kind: max(vs) for kind, vs in self._by_kind.items()}

    @classmethod
    def from_folder(cls, folder: Path) -> SchemaIndex:
        """An index over ``folder/envelope.avsc``, ``folder/envelope.v<N>.avsc`` and
        ``folder/<kind>/v<N>.avsc``."""
        return cls(
            envelope_path=folder / "envelope.avsc",
            envelope_paths=schemas.envelope_paths_in(folder),
            kind_paths=kind_paths_in(folder),
        )

    @property
    def envelope(self) -> SchemaEntry:
        """The envelope's schema version 1, which every envelope is written with unless it
        needs a field of a later version (:meth:`envelope_version`)."""
        return self._envelope

    @property
    def envelope_versions(self) -> tuple[int, ...]:
        """The envelope's schema versions, ascending (``(1, 2)``: v2 adds ``Attachment.sm3``)."""
        return tuple(self._envelopes)

    def envelope_version(self, version: int) -> SchemaEntry:
        """The envelope's schema of ``version``; KeyError if there is none."""
        try:
            return self._envelopes[version]
        except KeyError:
            raise KeyError(
                f"the envelope has no schema version {version} (known: {list(self._envelopes)})"
            ) from None

    @functools.cached_property
    def envelope_signature_is_last(self) -> bool:
        """Whether the envelope's Avro binary ends with ``signature.value`` (bytes), in every
        version: then the signed body can be cut from a received value instead of encoded
        again."""
        return all(_signature_is_last(e.schema) for e in self._envelopes.values())

    @property
    def kinds(self) -> tuple[str, ...]:
        """Every message kind with at least one schema version, sorted."""
        return tuple(sorted(self._by_kind))

    def versions(self, kind: str) -> tuple[int, ...]:
        """The schema versions of ``kind``, ascending; empty if the kind is unknown."""
        return tuple(sorted(self._by_kind.get(kind, ())))

    def latest_version(self, kind: str) -> int:
        """The highest schema version of ``kind``; KeyError if the kind is unknown."""
        try:
            return self._latest[kind]
        except KeyError:
            raise KeyError(f"unknown message kind {kind!r}") from None

    def get(self, kind: str, version: int | None = None) -> SchemaEntry:
        """The schema of ``kind`` at ``version`` (latest if None); KeyError if there is none."""
        versions = self._by_kind.get(kind)
        if versions is None:
            raise KeyError(f"unknown message kind {kind!r}")
        if version is None:
            return versions[self._latest[kind]]
        try:
            return versions[version]
        except KeyError:
            raise KeyError(
                f"{kind!r} has no schema version {version} (known: {sorted(versions)})"
            ) from None

    def by_fingerprint(self, fingerprint: int) -> SchemaEntry | None:
        """The schema (envelope or payload kind) whose fingerprint this is, or None."""
        return self._by_fp.get(fingerprint)

    def __iter__(self) -> Iterator[SchemaEntry]:
        """Every payload schema, by kind then version; the envelope is not included."""
        for kind in sorted(self._by_kind):
            versions = self._by_kind[kind]
            for version in sorted(versions):
                yield versions[version]

    def __len__(self) -> int:
        return sum(len(vs) for vs in self._by_kind.values())


@functools.cache
def default_index() -> SchemaIndex:
    """The index over this checkout's ``schemas/`` folder, built once per process."""
    return SchemaIndex(
        envelope_paths=schemas.envelope_schema_paths(), kind_paths=schemas.kind_schema_paths()
    )
