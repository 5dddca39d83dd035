"""Evidence bundles: everything needed to prove one audited event offline.

A bundle holds the signed Kafka value, the leaf that records it, the leaf's index, an
inclusion proof, and a signed checkpoint. :func:`verify_bundle` needs only the bundle and the
log's public key: no database, no network. It checks, in order, the checkpoint's signature,
the inclusion proof against the checkpoint's root, that the leaf is about this message and
carries exactly these envelope bytes, and the sender's signature with the key the leaf names.
The checkpoint carries the witnesses' cosignatures stored with it; given the witnesses' keys,
:func:`verify_bundle` also requires a quorum of them. Given the bus's SM2 key (the 国密
profile), it also requires the checkpoint's SM2 line by that key (:mod:`bus.audit.checkpoint`).
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from bus.audit.checkpoint import VerifierKey, parse_signed_checkpoint, verify_signed_checkpoint
from bus.audit.cosignature import verify_cosignature
from bus.audit.events import decode_leaf, leaf_envelope
from bus.audit.log import AuditLog
from bus.audit.merkle import leaf_hash, verify_inclusion
from bus.audit.witnessing import cosigned_note, latest_cosigned_covering
from bus.codec import Codec, default_codec
from bus.errors import (
    BundleError,
    CheckpointError,
    DecodeError,
    EntryNotFoundError,
    ProofError,
    SignatureError,
)
from bus.signing import InMemoryKeyStore, PublicKeyRecord, verify_envelope

__all__ = [
    "BUNDLE_FORMAT",
    "Verdict",
    "build_bundle",
    "load_bundle",
    "verify_bundle",
]

BUNDLE_FORMAT = "casebus-evidence/1"


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a bundle proved."""

    message_id: str
    event_kind: str
    leaf_index: int
    tree_size: int
    sender: str
    key_id: str
    cosigners: tuple[str, ...] = ()
    sm2_checked: bool = False
    """Whether the checkpoint's SM2 line by the bus was required and verified."""

    def line(self) -> str:
        """The one-line verdict the CLI prints."""
        witnessed = f", cosigned by {', '.join(self.cosigners)}" if self.cosigners else ""
        sm2 = " (with the bus's SM2 signature)" if self.sm2_checked else ""
        return (
            f"OK: {self.event_kind} of message {self.message_id} from {self.sender} "
            f"(key {self.key_id}) is entry {self.leaf_index} of the log of size "
            f"{self.tree_size}, signed checkpoint{sm2} verified{witnessed}"
        )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


async def build_bundle(
    db: asyncpg.Pool | asyncpg.Connection,
    message_id: uuid.UUID,
    *,
    event_kind: str = "accepted",
    checkpoint_size: int | None = None,
    audit_log: AuditLog | None = None,
) -> dict[str, Any]:
    """The evidence bundle of one event, proven against a stored checkpoint: the one of
    ``checkpoint_size``, else the latest cosigned one that covers it, else the latest."""
    log = audit_log or AuditLog()
    entry = await log.entry(db, message_id, event_kind)
    if checkpoint_size is None:
        # A checkpoint the witnesses cosigned, if one covers the entry: the latest one may be
        # seconds old and not cosigned yet (or held back because they refused it).
        cosigned = await latest_cosigned_covering(db, entry.index)
        if cosigned is not None:
            cp = await log.checkpoint(db, cosigned)
        else:
            cp = await log.checkpoint_covering(db, entry.index)
        if cp is None:
            raise EntryNotFoundError(
                f"entry {entry.index} is not covered by a checkpoint yet; try again shortly"
            )
    else:
        cp = await log.checkpoint(db, checkpoint_size)
        if cp is None:
            raise EntryNotFoundError(f"no checkpoint of size {checkpoint_size}")
        if cp.tree_size <= entry.index:
            raise EntryNotFoundError(
                f"checkpoint {cp.tree_size} does not include entry {entry.index}"
            )
    proof = await log.inclusion_proof(db, entry.index, cp.tree_size)
    envelope = leaf_envelope(decode_leaf(entry.leaf))
    return {
        "format": BUNDLE_FORMAT,
        "message_id": str(message_id),
        "event_kind": event_kind,
        "envelope": _b64(envelope) if envelope is not None else None,
        "leaf": _b64(entry.leaf),
        "leaf_index": entry.index,
        "tree_size": cp.tree_size,
        "inclusion_proof": [_b64(p) for p in proof],
        "checkpoint": await cosigned_note(db, cp),
    }


def _field(bundle: dict[str, Any], name: str, kind: type) -> Any:
    value = bundle.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise BundleError("malformed", f"field {name!r} is missing or not a {kind.__name__}")
    return value


def _unb64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as e:
        raise BundleError("malformed", f"{what} is not base64") from e


async def verify_bundle(
    bundle: dict[str, Any],
    *,
    log_key: Ed25519PublicKey,
    origin: str | None = None,
    codec: Codec | None = None,
    witnesses: Sequence[VerifierKey] = (),
    quorum: int | None = None,
    sm2_keys: Sequence[bytes] = (),
) -> Verdict:
    """Check a bundle offline; raise :class:`BundleError` naming the first failure. With
    ``witnesses``, ``quorum`` of them (default all) must have cosigned its checkpoint. With
    ``sm2_keys`` (the bus's SM2 points), its checkpoint must carry a valid SM2 line by one
    (``checkpoint_signature`` otherwise, as for the log's own signature)."""
    if bundle.get("format") != BUNDLE_FORMAT:
        raise BundleError("malformed", f"format is not {BUNDLE_FORMAT!r}")
    message_id = _field(bundle, "message_id", str)
    event_kind = _field(bundle, "event_kind", str)
    index = _field(bundle, "leaf_index", int)
    size = _field(bundle, "tree_size", int)
    note = _field(bundle, "checkpoint", str)
    leaf = _unb64(_field(bundle, "leaf", str), "leaf")
    proof = [_unb64(p, "proof") for p in _field(bundle, "inclusion_proof", list)]

    try:
        checkpoint, _ = parse_signed_checkpoint(note)
        key_name = origin or checkpoint.origin
        checkpoint = verify_signed_checkpoint(note, key_name, log_key, sm2_keys=sm2_keys)
    except ProofError as e:
        raise BundleError("checkpoint_signature", str(e)) from e
    if origin is not None and checkpoint.origin != origin:
        raise BundleError("checkpoint_origin", f"checkpoint is of {checkpoint.origin!r}")
    if checkpoint.size != size:
        raise BundleError("tree_size", f"bundle says {size}, checkpoint says {checkpoint.size}")
    cosigners = _cosigners(note, witnesses, len(witnesses) if quorum is None else quorum)
    try:
        verify_inclusion(leaf_hash(leaf), index, size, proof, checkpoint.root_hash)
    except ProofError as e:
        raise BundleError("inclusion_proof", str(e)) from e

    try:
        record = decode_leaf(leaf)
    except ValueError as e:
        raise BundleError("leaf", str(e)) from e
    if record.get("message_id") != message_id or record.get("event") != event_kind:
        raise BundleError("leaf", "the leaf is about another message or event")
    value = leaf_envelope(record)
    given = bundle.get("envelope")
    if value is None or not isinstance(given, str) or _unb64(given, "envelope") != value:
        raise BundleError("envelope", "the envelope is not the one the leaf records")

    try:
        envelope = (codec or default_codec()).decode_envelope(value)
    except DecodeError as e:
        raise BundleError("envelope", str(e)) from e
    if str(envelope.message_id) != message_id:
        raise BundleError("envelope", "the envelope carries another message id")
    key = record.get("signing_key")
    if not isinstance(key, dict):
        raise BundleError("leaf", "the leaf names no signing key")
    try:
        public = PublicKeyRecord(
            key_id=str(key["key_id"]),
            agency_id=str(key["agency_id"]),
            algorithm=str(key["algorithm"]),
            public_key=_unb64(str(key["public_key"]), "signing key"),
            valid_from=datetime.min.replace(tzinfo=envelope.sent_at.tzinfo),
        )
        await verify_envelope(envelope, InMemoryKeyStore([public]), at=envelope.sent_at)
    except (KeyError, ValueError) as e:
        raise BundleError("leaf", f"the leaf's signing key is malformed: {e}") from e
    except SignatureError as e:
        raise BundleError("sender_signature", str(e)) from e
    return Verdict(
        message_id,
        event_kind,
        index,
        size,
        envelope.sender,
        public.key_id,
        cosigners,
        sm2_checked=bool(sm2_keys),
    )


def _cosigners(note: str, witnesses: Sequence[VerifierKey], quorum: int) -> tuple[str, ...]:
    """The witnesses whose cosignature on ``note`` verifies; at least ``quorum`` of them."""
    if not witnesses:
        return ()
    names = []
    for key in witnesses:
        try:
            names.append(verify_cosignature(note, key).cosigner)
        except CheckpointError as e:
            if e.reason != "unknown_key":
                raise BundleError("cosignature", str(e)) from e
    if len(names) < quorum:
        raise BundleError(
            "witnesses",
            f"the checkpoint is cosigned by {len(names)} of the {len(witnesses)} witnesses "
            f"given, fewer than {quorum}",
        )
    return tuple(names)


def load_bundle(text: str) -> dict[str, Any]:
    """Parse a bundle file's JSON."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise BundleError("malformed", f"not JSON: {e}") from e
    if not isinstance(value, dict):
        raise BundleError("malformed", "a bundle is a JSON object")
    return value
