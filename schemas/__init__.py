"""The Avro schema files of casebus: ``envelope.avsc`` (the envelope, version 1),
``envelope.v<N>.avsc`` (its later versions) and ``<kind>/v<N>.avsc``."""

from __future__ import annotations

import re
from pathlib import Path

__all__ = [
    "SCHEMA_DIR",
    "envelope_paths_in",
    "envelope_schema_path",
    "envelope_schema_paths",
    "kind_schema_paths",
]

SCHEMA_DIR = Path(__file__).resolve().parent
"""The folder holding every schema file."""

_LATER_ENVELOPE = re.compile(r"^envelope\.v([0-9]+)\.avsc$")


def envelope_paths_in(folder: Path) -> dict[int, Path]:
    """The envelope's schema files under ``folder`` by version: ``envelope.avsc`` is version 1
    (its name predates the later versions, and outside verifiers name it), ``envelope.v<N>.avsc``
    version N. Empty when ``folder`` holds none."""
    out: dict[int, Path] = {}
    first = folder / "envelope.avsc"
    if first.is_file():
        out[1] = first
    for path in sorted(folder.glob("envelope.v*.avsc")):
        found = _LATER_ENVELOPE.match(path.name)
        if found is not None and int(found.group(1)) > 1:
            out[int(found.group(1))] = path
    return dict(sorted(out.items()))


def envelope_schema_paths() -> dict[int, Path]:
    """Every version of the envelope's schema, e.g. ``{1: envelope.avsc, 2: envelope.v2.avsc}``."""
    return envelope_paths_in(SCHEMA_DIR)


def envelope_schema_path(version: int = 1) -> Path:
    """The envelope's schema file of ``version``: version 1 by default, the one every value
    is written with unless it needs a later version's field (docs/wire-format.md §4.1)."""
    return envelope_schema_paths()[version]


def kind_schema_paths() -> dict[str, dict[int, Path]]:
    """Every kind's schema files by kind and version, e.g. ``{"opinion.request": {1: p, 2: q}}``."""
    out: dict[str, dict[int, Path]] = {}
    for path in sorted(SCHEMA_DIR.glob("*/v*.avsc")):
        version = path.stem[1:]
        if version.isdigit():
            out.setdefault(path.parent.name, {})[int(version)] = path
    return out
