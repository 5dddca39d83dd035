"""Case files next to an evidence bundle: are these the very documents the signed message
refers to? Offline, with the files and the bundle alone.

An evidence bundle proves the envelope (and so each attachment's SHA-256 and size, which the
sender's signature covers) is in the audit log. Checking the files is then hashing them: a file
in the folder named as the attachment (``mc``) or as its SHA-256 must hash to it and have its
size, and, when the envelope carries the file's SM3 digest too (the 国密 profile's envelopes,
schema v2), hash to that under SM3 as well: either digest differing is a mismatch. Only call
this on a bundle :func:`bus.audit.evidence.verify_bundle` accepted.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from bus.codec import Codec, default_codec
from bus.errors import CasebusError, DecodeError

__all__ = ["FileCheck", "check_attachment_files"]

FileState = Literal["ok", "missing", "mismatch"]


@dataclass(frozen=True, slots=True)
class FileCheck:
    """One attachment of the message, and what the folder holds of it."""

    name: str
    sha256: str
    size_bytes: int
    state: FileState
    path: Path | None = None
    found_sha256: str | None = None
    sm3: str | None = None
    """The SM3 digest the envelope carries (None: it carries none, so SM3 was not checked)."""
    found_sm3: str | None = None
    found_size: int | None = None

    def line(self) -> str:
        """One line for a person: the state, the name, and what differs."""
        where = f" ({self.path})" if self.path is not None else ""
        sm3 = "" if self.sm3 is None else f", sm3 {self.sm3}"
        if self.state == "ok":
            return f"OK {self.name}{where}: sha256 {self.sha256}{sm3}, {self.size_bytes} bytes"
        if self.state == "missing":
            return f"MISSING {self.name}: no file named so or {self.sha256}"
        differs = []
        if self.found_sha256 != self.sha256:
            differs.append(f"sha256 {self.found_sha256}, expected {self.sha256}")
        if self.sm3 is not None and self.found_sm3 != self.sm3:
            differs.append(f"sm3 {self.found_sm3}, expected {self.sm3}")
        if self.found_size is not None and self.found_size != self.size_bytes:
            differs.append(f"{self.found_size} bytes, expected {self.size_bytes}")
        return f"MISMATCH {self.name}{where}: {'; '.join(differs)}"


def _digest(path: Path) -> tuple[str, str, int]:
    sha = hashlib.sha256()
    sm3 = hashlib.new("sm3")
    size = 0
    with open(path, "rb") as f:
        while piece := f.read(1024 * 1024):
            sha.update(piece)
            sm3.update(piece)
            size += len(piece)
    return sha.hexdigest(), sm3.hexdigest(), size


def check_attachment_files(
    bundle: dict[str, Any], directory: Path, *, codec: Codec | None = None
) -> list[FileCheck]:
    """Each attachment of the bundle's envelope checked against ``directory``."""
    try:
        value = base64.b64decode(str(bundle.get("envelope")), validate=True)
        envelope = (codec or default_codec()).decode_envelope(value)
    except (binascii.Error, ValueError, DecodeError) as e:
        raise CasebusError(f"the bundle's envelope does not decode: {e}") from e
    out: list[FileCheck] = []
    for a in envelope.attachments:
        names = (a.name, a.sha256)
        # A name is the sender's text: only a plain file name may pick a file in the folder.
        candidates = [directory / n for n in names if n and Path(n).name == n]
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            out.append(FileCheck(a.name, a.sha256, a.size_bytes, "missing"))
            continue
        digest, sm3, size = _digest(path)
        ok = digest == a.sha256 and size == a.size_bytes and (a.sm3 is None or sm3 == a.sm3)
        state: FileState = "ok" if ok else "mismatch"
        out.append(FileCheck(a.name, a.sha256, a.size_bytes, state, path, digest, a.sm3, sm3, size))
    return out
