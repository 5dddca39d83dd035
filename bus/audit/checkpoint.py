"""Signed tree heads: C2SP checkpoints (c2sp.org/tlog-checkpoint) in C2SP signed notes
(c2sp.org/signed-note), signed with Ed25519.

A checkpoint body is exactly::

    <origin>
    <tree size, decimal, no leading zeros>
    <root hash, standard base64 with padding>
    [timestamp_ms <unix time in milliseconds, decimal>]

The fourth line is the one extension line casebus writes, and only when the checkpoint carries
a time: its name states the unit, so nobody has to guess seconds or milliseconds. Parsing is
strict: lines must be canonical (the parsed :class:`Checkpoint` re-serialises to the very bytes
that were signed), and any other extension line is rejected rather than silently dropped from
what the verifier believes was signed.

The signed note is the body, a blank line, then one line per signature::

    — <key name> <base64(4-byte key id || 64-byte Ed25519 signature)>

with key id = SHA-256(key name || 0x0A || 0x01 || 32-byte public key)[:4]. The signature covers
the body bytes, final newline included, blank line excluded.

**The 国密 (sm2) profile.** Two decisions, and why:

*The Merkle hash stays SHA-256* (RFC 6962, as c2sp.org/tlog-checkpoint assumes), under both
profiles. Every verifier outside casebus computes it: transparency-dev's Go code, third-party
witnesses, the procuratorate's own monitor built from public tools. A tree hashed with SM3
would make the log checkable only by code casebus wrote, which defeats a log meant to be
checked by others. What the profile changes is who vouches: the leaves are the SM2-signed
envelopes themselves, and the checkpoint carries an SM2 signature (below). So the checkpoint
body stays exactly the C2SP body; it would have to name its hash only if the hash ever changed.

*A checkpoint under the sm2 profile carries two signatures.* C2SP signed notes, witnesses
(c2sp.org/tlog-witness, litewitness) and Go's note package know Ed25519 only, so the log's
C2SP signature is always Ed25519, made with the *log key*: ``CASEBUS_AUDIT_LOG_KEY_FILE``, or
the bus key itself when that is Ed25519. When the bus key (``CASEBUS_BUS_KEY_FILE``, agency
``casebus``) is SM2, the note also carries a second line made with it::

    — <key name> <base64(4-byte key id || DER SM2 signature)>

* the key name is the same as the Ed25519 line's (the origin);
* the signature is SM2 with SM3 (GB/T 32918.2) over the note text, the very bytes the Ed25519
  line signs, with ``Z`` computed from GM/T 0009's default distinguishing id
  ``1234567812345678``; the DER ``SEQUENCE { r, s }`` as ``openssl pkeyutl`` writes it;
* signed-note assigns SM2 no type byte, and says what to do then: use ``0xff``, "reserved for
  signature types without an identifier byte assigned by this specification", "followed by a
  longer identifier that is unlikely to collide". Ours is the DER of the OID of SM2-with-SM3
  signatures, 1.2.156.10197.1.501 (GM/T 0006), so the key id follows the spec's recommended
  rule: key id = SHA-256(key name || 0x0A || 0xff || DER OID || 65-byte point 04||x||y)[:4],
  and the vkey is ``<name>+<hex key id>+<base64(0xff || DER OID || point)>``.

Verifiers that know only Ed25519 find a line whose (name, key id) is not a key they know and
ignore it, as the spec requires; casebus's own verifiers, given the bus's SM2 key, require it.
The bus key also signs envelopes, but an envelope's signed bytes start with
``casebus-envelope-v1\x00`` and a note may hold no control character, so neither signature can
stand for the other.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from bus import sm2
from bus.errors import CheckpointError, ConfigError
from bus.signing import Ed25519Signer, Sm2Signer, load_signer

__all__ = [
    "ED25519_SIGNATURE_TYPE",
    "MAX_SIGNATURES",
    "SM2_SIGNATURE_TYPE",
    "SM2_SM3_OID",
    "TIMESTAMP_EXTENSION",
    "Checkpoint",
    "CheckpointSigner",
    "NoteSignature",
    "Sm2VerifierKey",
    "VerifierKey",
    "ed25519_key_id",
    "load_log_key",
    "parse_note",
    "parse_signed_checkpoint",
    "parse_sm2_verifier_key",
    "parse_verifier_key",
    "sign_checkpoint",
    "sign_note",
    "sm2_key_id",
    "sm2_note_signature",
    "sm2_verifier_key_string",
    "verifier_key_string",
    "verify_note",
    "verify_signed_checkpoint",
    "verify_sm2_note",
]

ED25519_SIGNATURE_TYPE = 0x01
"""Signature type byte of Ed25519 in the signed-note key id and verifier key."""

SM2_SIGNATURE_TYPE: Final = 0xFF
"""signed-note's type byte for "signature types without an identifier byte assigned by this
specification"; the SM2 line's key id and vkey follow it with :data:`SM2_SM3_OID`."""

SM2_SM3_OID: Final = bytes.fromhex("06082a811ccf55018375")
"""DER of OID 1.2.156.10197.1.501, SM2 signature with SM3 (GM/T 0006): the "longer identifier
that is unlikely to collide" signed-note asks to follow the 0xff type byte."""

TIMESTAMP_EXTENSION = "timestamp_ms"
"""Name of the checkpoint extension line carrying the signing time in Unix milliseconds."""

MAX_SIGNATURES = 100
"""Notes with more signature lines are rejected; the spec asks verifiers to accept 16."""

_MAX_UINT64 = 2**64 - 1
_MAX_NOTE_BYTES = 1 << 20
_HASH_SIZE = 32
_KEY_ID_SIZE = 4
_ED25519_SIGNATURE_SIZE = 64
_ED25519_KEY_SIZE = 32
_SM2_POINT_SIZE = 65
_LOG_KEY_SETTING = "CASEBUS_AUDIT_LOG_KEY_FILE"
_SIG_PREFIX = "— "
_DECIMAL = re.compile(r"0|[1-9][0-9]*", re.ASCII)
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")
_HEX_KEY_ID = re.compile(r"[0-9a-f]{8}", re.ASCII)


def _malformed(detail: str) -> CheckpointError:
    return CheckpointError("malformed", detail)


def _decimal(text: str, what: str, maximum: int) -> int:
    if not _DECIMAL.fullmatch(text):
        raise _malformed(f"{what} {text!r} is not a decimal number without sign or leading zeros")
    value = int(text)
    if value > maximum:
        raise _malformed(f"{what} {value} is larger than {maximum}")
    return value


def _b64decode(text: str, what: str) -> bytes:
    """Strict standard base64: padded, no whitespace, and no stray bits in the last symbol."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as e:
        raise _malformed(f"{what} is not valid base64") from e
    if base64.b64encode(raw).decode("ascii") != text:
        raise _malformed(f"{what} is not canonical base64")
    return raw


def _check_name(name: str, what: str) -> None:
    """Key names (and our origins) are non-empty, without spaces, plus signs or control codes."""
    if not isinstance(name, str) or not name:
        raise _malformed(f"{what} must be a non-empty string")
    if any(ch.isspace() or ch == "+" for ch in name) or _CONTROL.search(name):
        raise _malformed(f"{what} {name!r} contains a space, a plus sign or a control character")


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """One tree head of the audit log: who (``origin``), how many leaves, which root, when."""

    origin: str
    size: int
    root_hash: bytes
    timestamp_ms: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.origin, str) or not self.origin:
            raise _malformed("origin must be a non-empty string")
        # The spec only recommends this, but a space at the end of the origin line would be
        # invisible, and an origin that cannot double as a key name is not worth allowing.
        if any(ch.isspace() for ch in self.origin) or _CONTROL.search(self.origin):
            raise _malformed(f"origin {self.origin!r} contains a space or a control character")
        if isinstance(self.size, bool) or not isinstance(self.size, int):
            raise _malformed("size must be an int")
        if not 0 <= self.size <= _MAX_UINT64:
            raise _malformed(f"size {self.size} is outside 0..2**64-1")
        if not isinstance(self.root_hash, bytes) or len(self.root_hash) != _HASH_SIZE:
            got = len(self.root_hash) if isinstance(self.root_hash, bytes) else "non-bytes"
            raise CheckpointError("bad_root_length", f"root hash has {got} bytes, want 32")
        if self.timestamp_ms is not None and (
            isinstance(self.timestamp_ms, bool)
            or not isinstance(self.timestamp_ms, int)
            or not 0 <= self.timestamp_ms <= _MAX_UINT64
        ):
            raise _malformed(f"timestamp_ms {self.timestamp_ms!r} is not an int in 0..2**64-1")

    def body(self) -> bytes:
        """The checkpoint note text, UTF-8, ending in a newline: the bytes that get signed."""
        lines = [self.origin, str(self.size), base64.b64encode(self.root_hash).decode("ascii")]
        if self.timestamp_ms is not None:
            lines.append(f"{TIMESTAMP_EXTENSION} {self.timestamp_ms}")
        return ("\n".join(lines) + "\n").encode("utf-8")

    @classmethod
    def from_body(cls, body: str | bytes) -> Checkpoint:
        """Parse checkpoint note text strictly; raises :class:`CheckpointError`."""
        text = _as_text(body)
        if not text.endswith("\n"):
            raise _malformed("checkpoint body does not end in a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise _malformed(f"checkpoint body has {len(lines)} lines, want at least 3")
        if len(lines) > 4:
            raise _malformed(f"checkpoint body has {len(lines)} lines, want at most 4")
        if not all(lines):
            raise _malformed("checkpoint body has an empty line")
        origin, size_text, root_text = lines[:3]
        size = _decimal(size_text, "tree size", _MAX_UINT64)
        root = _b64decode(root_text, "root hash")
        if len(root) != _HASH_SIZE:
            raise CheckpointError("bad_root_length", f"root hash has {len(root)} bytes, want 32")
        timestamp_ms: int | None = None
        if len(lines) == 4:
            name, sep, value = lines[3].partition(" ")
            if name != TIMESTAMP_EXTENSION or not sep:
                raise _malformed(f"unknown extension line {lines[3]!r}")
            timestamp_ms = _decimal(value, TIMESTAMP_EXTENSION, _MAX_UINT64)
        checkpoint = cls(origin=origin, size=size, root_hash=root, timestamp_ms=timestamp_ms)
        if checkpoint.body() != text.encode("utf-8"):
            raise _malformed("checkpoint body is not in canonical form")
        return checkpoint


@dataclass(frozen=True, slots=True)
class NoteSignature:
    """One signature line of a note: key name, 4-byte key id, raw signature bytes."""

    key_name: str
    key_id: bytes
    signature: bytes

    def line(self) -> str:
        """The signature line, without its newline."""
        blob = base64.b64encode(self.key_id + self.signature).decode("ascii")
        return f"{_SIG_PREFIX}{self.key_name} {blob}"


@dataclass(frozen=True, slots=True)
class VerifierKey:
    """A parsed verifier key (vkey): the key name, its key id, the Ed25519 public key."""

    name: str
    key_id: bytes
    public_key: Ed25519PublicKey


def _raw_public(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def ed25519_key_id(key_name: str, public_key: Ed25519PublicKey) -> bytes:
    """The 4-byte key id: SHA-256(key name || 0x0A || 0x01 || public key)[:4]."""
    _check_name(key_name, "key name")
    material = key_name.encode("utf-8") + b"\n" + bytes([ED25519_SIGNATURE_TYPE])
    return hashlib.sha256(material + _raw_public(public_key)).digest()[:_KEY_ID_SIZE]


def verifier_key_string(name: str, public_key: Ed25519PublicKey) -> str:
    """The vkey text ``<name>+<hex key id>+<base64(0x01 || public key)>``."""
    key_id = ed25519_key_id(name, public_key)
    blob = base64.b64encode(bytes([ED25519_SIGNATURE_TYPE]) + _raw_public(public_key))
    return f"{name}+{key_id.hex()}+{blob.decode('ascii')}"


def _vkey_parts(vkey: str) -> tuple[str, str, bytes]:
    """A verifier key's name, key id (hex) and decoded key material, each checked for form;
    CheckpointError (``bad_key``) naming what is wrong."""
    # Split at the first two: base64 key material may itself contain '+'.
    parts = vkey.split("+", 2)
    if len(parts) != 3:
        raise CheckpointError("bad_key", "a verifier key has three parts separated by '+'")
    name, key_id_hex, blob_text = parts
    try:
        _check_name(name, "key name")
        blob = _b64decode(blob_text, "key material")
    except CheckpointError as e:
        raise CheckpointError("bad_key", str(e)) from e
    if not _HEX_KEY_ID.fullmatch(key_id_hex):
        raise CheckpointError("bad_key", "key id must be 8 lowercase hex digits")
    return name, key_id_hex, blob


def parse_verifier_key(vkey: str) -> VerifierKey:
    """Parse an Ed25519 vkey; raises :class:`CheckpointError` (``bad_key``) if it is not one."""
    name, key_id_hex, blob = _vkey_parts(vkey)
    if len(blob) != 1 + _ED25519_KEY_SIZE or blob[0] != ED25519_SIGNATURE_TYPE:
        raise CheckpointError("bad_key", "key material is not 0x01 || 32-byte Ed25519 key")
    public_key = Ed25519PublicKey.from_public_bytes(blob[1:])
    key_id = bytes.fromhex(key_id_hex)
    if key_id != ed25519_key_id(name, public_key):
        raise CheckpointError("bad_key", "key id does not match the key name and public key")
    return VerifierKey(name=name, key_id=key_id, public_key=public_key)


def _as_text(data: str | bytes) -> str:
    if isinstance(data, bytes):
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise _malformed("note is not valid UTF-8") from e
    try:
        data.encode("utf-8")
    except UnicodeEncodeError as e:
        raise _malformed("note is not valid UTF-8") from e
    return data


def _check_note_text(text: str) -> None:
    if not text:
        raise _malformed("note text is empty")
    if not text.endswith("\n"):
        raise _malformed("note text does not end in a newline")
    if _CONTROL.search(text):
        raise _malformed("note contains a control character other than newline")


def sign_note(text: str, key_name: str, private_key: Ed25519PrivateKey) -> str:
    """Sign note ``text`` (which must end in a newline) and return the signed note."""
    _check_note_text(text)
    _check_name(key_name, "key name")
    signature = NoteSignature(
        key_name=key_name,
        key_id=ed25519_key_id(key_name, private_key.public_key()),
        signature=private_key.sign(text.encode("utf-8")),
    )
    return f"{text}\n{signature.line()}\n"


def parse_note(note: str | bytes) -> tuple[str, list[NoteSignature]]:
    """Split a signed note into its text and signatures, checking syntax only."""
    raw = _as_text(note)
    if len(raw.encode("utf-8")) > _MAX_NOTE_BYTES:
        raise _malformed(f"note is larger than {_MAX_NOTE_BYTES} bytes")
    if _CONTROL.search(raw):
        raise _malformed("note contains a control character other than newline")
    cut = raw.rfind("\n\n")
    if cut < 0:
        raise _malformed("note has no blank line before its signatures")
    text, block = raw[: cut + 1], raw[cut + 2 :]
    _check_note_text(text)
    if not block:
        raise _malformed("note has no signatures")
    if not block.endswith("\n"):
        raise _malformed("the last signature line does not end in a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise _malformed(f"note has {len(lines)} signatures, more than {MAX_SIGNATURES}")
    signatures: list[NoteSignature] = []
    for number, line in enumerate(lines, start=1):
        if not line.startswith(_SIG_PREFIX):
            raise _malformed(f"signature line {number} does not start with an em dash and space")
        fields = line[len(_SIG_PREFIX) :].split(" ")
        if len(fields) != 2:
            raise _malformed(f"signature line {number} is not '— <name> <signature>'")
        name, blob_text = fields
        _check_name(name, f"key name on signature line {number}")
        blob = _b64decode(blob_text, f"signature on line {number}")
        if len(blob) <= _KEY_ID_SIZE:
            raise _malformed(f"signature on line {number} is too short")
        signatures.append(NoteSignature(name, blob[:_KEY_ID_SIZE], blob[_KEY_ID_SIZE:]))
    return text, signatures


def verify_note(note: str | bytes, key_name: str, public_key: Ed25519PublicKey) -> str:
    """Return the text of ``note`` if it carries a valid signature by the given key.

    Signatures by other keys are ignored, as the spec requires; but if any signature that
    claims to be by this key (same name and key id) fails, the whole note is rejected.
    """
    text, signatures = parse_note(note)
    key_id = ed25519_key_id(key_name, public_key)
    ours = [s for s in signatures if s.key_name == key_name and s.key_id == key_id]
    if not ours:
        raise CheckpointError("unknown_key", f"note has no signature by {key_name} {key_id.hex()}")
    message = text.encode("utf-8")
    for signature in ours:
        if len(signature.signature) != _ED25519_SIGNATURE_SIZE:
            raise CheckpointError("bad_signature", "Ed25519 signature is not 64 bytes")
        try:
            public_key.verify(signature.signature, message)
        except InvalidSignature as e:
            raise CheckpointError("bad_signature", f"signature by {key_name} is invalid") from e
    return text


# -- the SM2 line (the 国密 profile; see the module docstring) ---------------------------------


def _check_point(public_key: bytes) -> None:
    if (
        not isinstance(public_key, bytes)
        or len(public_key) != _SM2_POINT_SIZE
        or public_key[0] != 0x04
    ):
        raise CheckpointError("bad_key", "an SM2 public key is a 65-byte point 04 || x || y")


def sm2_key_id(key_name: str, public_key: bytes) -> bytes:
    """The 4-byte key id of the SM2 line:
    SHA-256(key name || 0x0A || 0xff || :data:`SM2_SM3_OID` || 65-byte point)[:4]."""
    _check_name(key_name, "key name")
    _check_point(public_key)
    material = key_name.encode("utf-8") + b"\n" + bytes([SM2_SIGNATURE_TYPE]) + SM2_SM3_OID
    return hashlib.sha256(material + public_key).digest()[:_KEY_ID_SIZE]


@dataclass(frozen=True, slots=True)
class Sm2VerifierKey:
    """A parsed SM2 vkey: the key name, its key id, the 65-byte public point."""

    name: str
    key_id: bytes
    public_key: bytes


def sm2_verifier_key_string(name: str, public_key: bytes) -> str:
    """The SM2 vkey ``<name>+<hex key id>+<base64(0xff || OID || point)>`` (casebus's own tools
    read it; Go's note package refuses the unknown type, as it should)."""
    key_id = sm2_key_id(name, public_key)
    blob = base64.b64encode(bytes([SM2_SIGNATURE_TYPE]) + SM2_SM3_OID + public_key)
    return f"{name}+{key_id.hex()}+{blob.decode('ascii')}"


def parse_sm2_verifier_key(vkey: str) -> Sm2VerifierKey:
    """Parse an SM2 vkey; raises :class:`CheckpointError` (``bad_key``) if it is not one."""
    name, key_id_hex, blob = _vkey_parts(vkey.strip())
    head = bytes([SM2_SIGNATURE_TYPE]) + SM2_SM3_OID
    if not blob.startswith(head):
        raise CheckpointError("bad_key", "key material is not 0xff || SM2-with-SM3 OID || point")
    point = blob[len(head) :]
    key_id = bytes.fromhex(key_id_hex)
    if key_id != sm2_key_id(name, point):
        raise CheckpointError("bad_key", "key id does not match the key name and public key")
    return Sm2VerifierKey(name=name, key_id=key_id, public_key=point)


def sm2_note_signature(text: str, key_name: str, signer: Sm2Signer) -> NoteSignature:
    """The SM2 signature line of note ``text``: SM2 with SM3 over the text, ``Z`` from the
    default distinguishing id (a signer set up with another id is refused: a verifier holding
    only the public key could not check it)."""
    _check_note_text(text)
    if signer.distid != sm2.DEFAULT_DISTID:
        raise ConfigError(
            "checkpoints are SM2-signed with GM/T 0009's default distinguishing id "
            f"{sm2.DEFAULT_DISTID.decode()}; this signer uses another"
        )
    return NoteSignature(
        key_name=key_name,
        key_id=sm2_key_id(key_name, signer.public_key),
        signature=signer.sign(text.encode("utf-8")),
    )


def verify_sm2_note(note: str | bytes, key_name: str, public_keys: Sequence[bytes]) -> str:
    """Return the text of ``note`` if it carries a valid SM2 line by one of ``public_keys``.

    Raises :class:`CheckpointError`: ``unknown_key`` when it carries none (an SM2 bus key's
    checkpoint without its SM2 line), ``bad_signature`` when any line claiming to be by one of
    these keys (same name, same key id) does not verify.
    """
    if isinstance(public_keys, bytes | bytearray):
        raise TypeError("public_keys is a sequence of 65-byte points, not one point")
    if not public_keys:
        raise ValueError("no SM2 public key to verify with")
    text, signatures = parse_note(note)
    message = text.encode("utf-8")
    verified = False
    for point in public_keys:
        key_id = sm2_key_id(key_name, point)
        for s in signatures:
            if s.key_name != key_name or s.key_id != key_id:
                continue
            if not sm2.verify(point, s.signature, message):
                raise CheckpointError(
                    "bad_signature", f"the SM2 signature by {key_name} {key_id.hex()} is invalid"
                )
            verified = True
    if not verified:
        ids = ", ".join(sm2_key_id(key_name, p).hex() for p in public_keys)
        raise CheckpointError(
            "unknown_key",
            f"note has no SM2 signature by {key_name} (key id {ids}): the bus key is "
            "sm2-sm3, so each checkpoint must carry one",
        )
    return text


@dataclass(frozen=True, slots=True)
class CheckpointSigner:
    """What signs the audit log's checkpoints: the Ed25519 log key always (C2SP and every
    witness need it), and under the sm2 profile the bus's SM2 key as well (a second line)."""

    log_key: Ed25519PrivateKey
    sm2: Sm2Signer | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.log_key, Ed25519PrivateKey):
            raise ConfigError(f"the log key must be Ed25519, not {type(self.log_key).__name__}")
        if self.sm2 is not None and self.sm2.distid != sm2.DEFAULT_DISTID:
            raise ConfigError(
                "the bus's SM2 key signs checkpoints with the default distinguishing id "
                f"{sm2.DEFAULT_DISTID.decode()}; this signer uses another"
            )

    @classmethod
    def for_bus(
        cls, bus: Ed25519Signer | Sm2Signer, *, log_key: Ed25519PrivateKey | None = None
    ) -> CheckpointSigner:
        """The checkpoint signer of a bus whose own key is ``bus``: an Ed25519 bus key is the
        log key unless ``log_key`` is given; an SM2 bus key needs ``log_key`` (ConfigError
        naming CASEBUS_AUDIT_LOG_KEY_FILE without it) and adds its own line."""
        if isinstance(bus, Sm2Signer):
            if log_key is None:
                raise ConfigError(
                    "the bus key (CASEBUS_BUS_KEY_FILE) is an SM2 key, and C2SP checkpoints and "
                    "their witnesses need an Ed25519 log signature: set "
                    f"{_LOG_KEY_SETTING} to an Ed25519 key of its own "
                    "(`casebus keys generate --agency casebus.log --alg ed25519 --out <folder>`)"
                )
            return cls(log_key, sm2=bus)
        return cls(log_key if log_key is not None else bus.private_key)

    @classmethod
    def load(cls, bus: Ed25519Signer | Sm2Signer, log_key_file: Path | None) -> CheckpointSigner:
        """:meth:`for_bus` with the log key read from ``log_key_file`` (None: the bus key)."""
        return cls.for_bus(
            bus, log_key=None if log_key_file is None else load_log_key(log_key_file)
        )

    def sign(self, checkpoint: Checkpoint, key_name: str) -> str:
        """The signed note of ``checkpoint``: its Ed25519 line, then the SM2 line if any."""
        text = checkpoint.body().decode("utf-8")
        note = sign_note(text, key_name, self.log_key)
        if self.sm2 is None:
            return note
        return f"{note}{sm2_note_signature(text, key_name, self.sm2).line()}\n"


def load_log_key(path: Path) -> Ed25519PrivateKey:
    """The Ed25519 log key in ``path`` (CASEBUS_AUDIT_LOG_KEY_FILE); ConfigError naming the
    setting when it is unreadable, open to others, or not Ed25519."""
    try:
        signer = load_signer(path, agency_id="casebus")
    except ConfigError as e:
        raise ConfigError(f"{_LOG_KEY_SETTING} {path}: {e}") from e
    if not isinstance(signer, Ed25519Signer):
        raise ConfigError(
            f"{_LOG_KEY_SETTING} {path} is an {signer.algorithm} key; the log key must be "
            "Ed25519 (C2SP signed notes and the witnesses know no other)"
        )
    return signer.private_key


# -- checkpoints --------------------------------------------------------------------------------


def sign_checkpoint(
    checkpoint: Checkpoint, key_name: str, private_key: Ed25519PrivateKey | CheckpointSigner
) -> str:
    """The signed note text of ``checkpoint``; ``key_name`` should equal its origin. Given a
    :class:`CheckpointSigner` with an SM2 key, the note carries both lines."""
    if isinstance(private_key, CheckpointSigner):
        return private_key.sign(checkpoint, key_name)
    return sign_note(checkpoint.body().decode("utf-8"), key_name, private_key)


def parse_signed_checkpoint(note: str | bytes) -> tuple[Checkpoint, list[NoteSignature]]:
    """Parse a signed checkpoint without checking any signature: for display and routing."""
    text, signatures = parse_note(note)
    return Checkpoint.from_body(text), signatures


def verify_signed_checkpoint(
    note: str | bytes,
    key_name: str,
    public_key: Ed25519PublicKey,
    *,
    origin: str | None = None,
    sm2_keys: Sequence[bytes] = (),
) -> Checkpoint:
    """The checkpoint in ``note`` if the given key signed it (and, if ``origin`` is given, if
    the checkpoint names that origin); raises :class:`CheckpointError` saying why not.

    With ``sm2_keys`` (the bus's SM2 public points: its key, or every sm2-sm3 key the registry
    holds for ``casebus``), the note must also carry a valid SM2 line by one of them under the
    same key name (:func:`verify_sm2_note`): ``unknown_key`` when it has none,
    ``bad_signature`` when one is forged. Without, an SM2 line is ignored like any unknown
    signature."""
    checkpoint, _ = parse_signed_checkpoint(note)
    verify_note(note, key_name, public_key)
    if sm2_keys:
        verify_sm2_note(note, key_name, sm2_keys)
    if origin is not None and checkpoint.origin != origin:
        raise CheckpointError(
            "wrong_origin", f"checkpoint origin is {checkpoint.origin!r}, want {origin!r}"
        )
    return checkpoint
