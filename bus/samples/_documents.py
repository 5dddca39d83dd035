"""Fake documents for sample payloads: deterministic bytes, the references to them, attachments.

A document's bytes depend on its file name alone. That is what lets :func:`sample_attachments`
rebuild, from nothing but a payload, the very attachments whose SHA-256 the payload names — no
side table has to travel from the payload builder to the envelope builder.
"""

from __future__ import annotations

import functools
import hashlib
import random
from pathlib import PurePosixPath
from urllib.parse import quote

from pydantic import BaseModel

from bus.models import Attachment, AttachmentRef, attachment_refs

__all__ = [
    "DOCS_BASE_URI",
    "document_bytes",
    "document_sha256",
    "sample_attachments",
    "sample_ref",
]

DOCS_BASE_URI = "https://docs.ygh.example"
"""Where sample attachments claim to live (the ``.example`` domain never resolves)."""

# suffix → (media type, smallest and largest size in KiB, leading magic bytes)
_FORMATS: dict[str, tuple[str, int, int, bytes]] = {
    ".pdf": ("application/pdf", 12, 96, b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"),
    ".ofd": ("application/ofd", 8, 64, b"PK\x03\x04"),  # GB/T 33190 OFD is a ZIP container
    ".jpg": ("image/jpeg", 60, 320, b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"),
    ".mp4": ("video/mp4", 256, 1024, b"\x00\x00\x00\x18ftypmp42"),
    ".xlsx": (
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        8,
        48,
        b"PK\x03\x04",
    ),
}


def _format(name: str) -> tuple[str, int, int, bytes]:
    suffix = PurePosixPath(name).suffix.lower()
    try:
        return _FORMATS[suffix]
    except KeyError:
        known = ", ".join(_FORMATS)
        raise ValueError(f"sample document {name!r} has no known suffix ({known})") from None


@functools.lru_cache(maxsize=512)
def document_bytes(name: str) -> bytes:
    """The fake content of the sample document called ``name``: same name, same bytes."""
    media_type, low_kib, high_kib, magic = _format(name)
    rng = random.Random(f"casebus.samples.document:{name}")
    size = rng.randint(low_kib * 1024, high_kib * 1024)
    label = f"\ncasebus sample document {name} ({media_type})\n".encode()
    return (magic + label + rng.randbytes(size))[:size]


def document_sha256(name: str) -> str:
    """The lower-case hex SHA-256 of :func:`document_bytes`."""
    return hashlib.sha256(document_bytes(name)).hexdigest()


def sample_ref(title: str, name: str) -> AttachmentRef:
    """A payload's reference to the sample document ``name``, titled ``title``."""
    return AttachmentRef(title=title, attachment_name=name, attachment_sha256=document_sha256(name))


def sample_attachments(payload: BaseModel) -> list[Attachment]:
    """The envelope attachments every attachment reference in ``payload`` points at.

    One attachment per distinct name, in the order the payload first names them. A reference
    whose SHA-256 is not that of the sample document of its name (a hand-made reference) raises
    :class:`ValueError` naming its path: no sample can match it.
    """
    out: dict[str, Attachment] = {}
    for path, name, sha256 in attachment_refs(payload):
        data = document_bytes(name)
        digest = hashlib.sha256(data).hexdigest()
        if digest != sha256:
            raise ValueError(
                f"{path}attachment_sha256: {name!r} is not a sample document "
                f"(payload says {sha256[:12]}…, the sample hashes to {digest[:12]}…)"
            )
        if name not in out:
            out[name] = Attachment(
                name=name,
                media_type=_format(name)[0],
                size_bytes=len(data),
                sha256=digest,
                uri=f"{DOCS_BASE_URI}/sha256/{digest}/{quote(name)}",
            )
    return list(out.values())
