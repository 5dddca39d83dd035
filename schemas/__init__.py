"""The Avro schema files of casebus: ``envelope.avsc`` and ``<kind>/v<N>.avsc``."""

from __future__ import annotations

from pathlib import Path

__all__ = ["SCHEMA_DIR", "envelope_schema_path", "kind_schema_paths"]

SCHEMA_DIR = Path(__file__).resolve().parent
"""The folder holding every schema file."""


def envelope_schema_path() -> Path:
    """The envelope's schema file."""
    return SCHEMA_DIR / "envelope.avsc"


def kind_schema_paths() -> dict[str, dict[int, Path]]:
    """Every kind's schema files by kind and version, e.g. ``{"opinion.request": {1: p, 2: q}}``."""
    out: dict[str, dict[int, Path]] = {}
    for path in sorted(SCHEMA_DIR.glob("*/v*.avsc")):
        version = path.stem[1:]
        if version.isdigit():
            out.setdefault(path.parent.name, {})[int(version)] = path
    return out
