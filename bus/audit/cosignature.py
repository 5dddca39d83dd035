"""Witness cosignatures (c2sp.org/tlog-cosignature, Ed25519 ``cosignature/v1``).

A witness's cosignature is one more signature line on the log's signed checkpoint note. It
says: "at this time, the largest tree of this log that I checked to be consistent with every
earlier one I saw has this root". The log's own signature says only that the log's key holder
made the checkpoint; the cosignatures are what stop that holder (or whoever owns the database)
from showing a rewritten history to anyone who requires them.

The format, from the spec:

* key id = SHA-256(name || 0x0A || 0x04 || 32-byte public key)[:4] (0x04: cosignature/v1);
* the signed message is ``cosignature/v1\\ntime <seconds>\\n`` followed by the checkpoint
  body, extension lines and final newline included;
* the signature line carries base64(key id || 8-byte big-endian seconds || 64-byte signature).

Both ends live here because the witness (:mod:`bus.witness`) signs with them and every
verifier (``casebus audit verify``, evidence bundles) checks with them.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from bus.audit.checkpoint import NoteSignature, VerifierKey, parse_note
from bus.errors import CheckpointError

__all__ = [
    "COSIGNATURE_V1_TYPE",
    "Cosignature",
    "add_signature_lines",
    "cosign",
    "cosigner_key_id",
    "cosigner_vkey",
    "parse_cosigner_key",
    "verify_cosignature",
]

COSIGNATURE_V1_TYPE = 0x04
"""Signature type byte of Ed25519 cosignature/v1 in key ids and vkeys."""

_MAX_TIMESTAMP = 2**63 - 1
_TIMESTAMP_SIZE = 8
_SIGNATURE_SIZE = 64
_KEY_SIZE = 32


def _raw(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def _check_name(name: str) -> None:
    if not name or any(ch.isspace() or ch == "+" for ch in name):
        raise CheckpointError("bad_key", f"cosigner name {name!r} is empty or has a space or +")


def cosigner_key_id(name: str, public_key: Ed25519PublicKey) -> bytes:
    """The 4-byte key id of an Ed25519 cosigner: SHA-256(name || 0x0A || 0x04 || key)[:4]."""
    _check_name(name)
    material = name.encode("utf-8") + b"\n" + bytes([COSIGNATURE_V1_TYPE]) + _raw(public_key)
    return hashlib.sha256(material).digest()[:4]


def cosigner_vkey(name: str, public_key: Ed25519PublicKey) -> str:
    """The cosigner's vkey ``<name>+<hex key id>+<base64(0x04 || public key)>``."""
    blob = base64.b64encode(bytes([COSIGNATURE_V1_TYPE]) + _raw(public_key)).decode("ascii")
    return f"{name}+{cosigner_key_id(name, public_key).hex()}+{blob}"


def parse_cosigner_key(vkey: str) -> VerifierKey:
    """Parse a cosigner vkey (type 0x04); raises :class:`CheckpointError` (``bad_key``)."""
    parts = vkey.strip().split("+", 2)
    if len(parts) != 3:
        raise CheckpointError("bad_key", "a verifier key has three parts separated by '+'")
    name, key_id_hex, blob_text = parts
    _check_name(name)
    try:
        blob = base64.b64decode(blob_text, validate=True)
        key_id = bytes.fromhex(key_id_hex)
    except ValueError as e:
        raise CheckpointError("bad_key", "key id or key material is not well encoded") from e
    if len(blob) != 1 + _KEY_SIZE or blob[0] != COSIGNATURE_V1_TYPE:
        raise CheckpointError("bad_key", "key material is not 0x04 || 32-byte Ed25519 key")
    public_key = Ed25519PublicKey.from_public_bytes(blob[1:])
    if len(key_id) != 4 or key_id != cosigner_key_id(name, public_key):
        raise CheckpointError("bad_key", "key id does not match the name and public key")
    return VerifierKey(name=name, key_id=key_id, public_key=public_key)


def _message(body: bytes, timestamp_s: int) -> bytes:
    return b"cosignature/v1\ntime %d\n" % timestamp_s + body


@dataclass(frozen=True, slots=True)
class Cosignature:
    """A checked cosignature: who (the cosigner's name) and when (Unix seconds)."""

    cosigner: str
    timestamp_s: int


def cosign(
    body: bytes, name: str, private_key: Ed25519PrivateKey, *, timestamp_s: int
) -> NoteSignature:
    """The cosignature of checkpoint ``body`` (the note text, final newline included)."""
    if not 0 <= timestamp_s <= _MAX_TIMESTAMP:
        raise ValueError(f"timestamp {timestamp_s} is outside 0..2**63-1")
    signature = private_key.sign(_message(body, timestamp_s))
    return NoteSignature(
        key_name=name,
        key_id=cosigner_key_id(name, private_key.public_key()),
        signature=struct.pack(">Q", timestamp_s) + signature,
    )


def verify_cosignature(note: str | bytes, key: VerifierKey) -> Cosignature:
    """The cosignature on ``note`` by ``key``; raises :class:`CheckpointError`:
    ``unknown_key`` when the note carries none, ``bad_signature`` when one claiming to be by
    that key does not verify (then the whole note is suspect, as for the log's own key)."""
    text, signatures = parse_note(note)
    ours = [s for s in signatures if s.key_name == key.name and s.key_id == key.key_id]
    if not ours:
        raise CheckpointError("unknown_key", f"no cosignature by {key.name} {key.key_id.hex()}")
    body = text.encode("utf-8")
    newest = -1
    for s in ours:
        if len(s.signature) != _TIMESTAMP_SIZE + _SIGNATURE_SIZE:
            raise CheckpointError("bad_signature", f"cosignature by {key.name} has a bad length")
        (timestamp_s,) = struct.unpack(">Q", s.signature[:_TIMESTAMP_SIZE])
        if timestamp_s > _MAX_TIMESTAMP:
            raise CheckpointError("bad_signature", f"cosignature by {key.name}: bad timestamp")
        try:
            key.public_key.verify(s.signature[_TIMESTAMP_SIZE:], _message(body, timestamp_s))
        except InvalidSignature as e:
            raise CheckpointError("bad_signature", f"cosignature by {key.name} is invalid") from e
        newest = max(newest, timestamp_s)
    return Cosignature(key.name, newest)


def add_signature_lines(note: str, lines: list[str]) -> str:
    """``note`` with the signature ``lines`` (each ``— name base64``) appended, skipping any
    it already carries; the lines are checked for syntax, not for validity."""
    have = note.splitlines()
    extra = [line for line in lines if line and line not in have]
    merged = note + "".join(f"{line}\n" for line in extra)
    parse_note(merged)  # a malformed line is refused here, not stored
    return merged
