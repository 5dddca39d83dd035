"""The canonical bytes of audited events: what a leaf of the audit log is.

A leaf is canonical JSON (keys sorted, no spaces, UTF-8, bytes as standard base64) so that a
verifier in any language can read it without our code, and one event always has exactly one
encoding. A leaf about a message carries the whole signed Kafka value and the public key the
router verified it with, so an evidence bundle needs nothing outside the log to check the
sender's signature.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Literal

import orjson

from bus.signing import PublicKeyRecord

__all__ = [
    "LEAF_VERSION",
    "EventKind",
    "canonical_json",
    "decode_leaf",
    "leaf_envelope",
    "message_leaf",
    "plain_leaf",
    "recipients_detail",
]

LEAF_VERSION = 1

EventKind = Literal[
    "accepted", "rejected", "delivered", "acknowledged", "dead_lettered", "sla", "query"
]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@lru_cache(maxsize=1024)
def _ms(at: datetime) -> str:
    # Cached: a router writes two leaves per message (accepted, delivered) at one instant.
    if at.tzinfo is None:
        raise ValueError("audit times must be time-zone aware")
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def canonical_json(value: Mapping[str, Any]) -> bytes:
    """One encoding per value: sorted keys, no insignificant spaces, UTF-8.

    The definition is Python's ``json.dumps(value, sort_keys=True, separators=(",", ":"),
    ensure_ascii=False, allow_nan=False)`` in UTF-8, as every leaf so far was written. orjson
    writes the same bytes ten times faster for a value made only of text, integers, booleans,
    null, lists and objects, and is used for those; it writes some floats differently (``1e-05`` as
    ``0.00001``), so a value holding a float, or anything orjson refuses (an integer beyond 64
    bits, a key that is not text, a lone surrogate), goes the standard way.
    tests/test_audit_events.py holds the two to the same bytes."""
    return _encode(value, plain=_plain(value))


def _encode(value: Mapping[str, Any], *, plain: bool) -> bytes:
    """:func:`canonical_json` of ``value``; ``plain`` says whether it holds no float."""
    if plain:
        try:
            return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError:
            pass
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def _plain(value: object) -> bool:
    """Whether ``value`` holds only text, integers, booleans, None, lists, tuples and dicts
    (exactly those types, not subclasses): the values orjson and json write alike."""
    t = type(value)
    if t is str or t is int or t is bool or value is None:
        return True
    if t is dict:
        return all(map(_plain, value.values()))  # type: ignore[attr-defined]
    if t is list or t is tuple:
        return all(map(_plain, value))  # type: ignore[call-overload]
    return False


def message_leaf(
    event: EventKind,
    *,
    message_id: uuid.UUID,
    case_id: str | None,
    at: datetime,
    value: bytes | None = None,
    key: PublicKeyRecord | None = None,
    details: Mapping[str, Any] | None = None,
) -> bytes:
    """The leaf of an event about one message.

    ``value`` is the Kafka value exactly as received (the signed envelope); ``key`` the
    registry key its signature verified with; ``details`` anything else the event states
    (recipients, the rejection reasons, who acknowledged).
    """
    leaf: dict[str, Any] = {
        "v": LEAF_VERSION,
        "event": event,
        "message_id": str(message_id),
        "case_id": case_id,
        "at": _ms(at),
    }
    if value is not None:
        leaf["envelope"] = ""  # filled in below, after the encoder ran
    if key is not None:
        leaf["signing_key"] = {
            "key_id": key.key_id,
            "agency_id": key.agency_id,
            "algorithm": key.algorithm,
            "public_key": _b64(key.public_key),
        }
    if details:
        leaf["details"] = dict(details)
    # Only the details can hold a float: the rest is text, integers and None, made here, and a
    # subclass of str or int is written alike by both encoders.
    plain = not details or _plain(leaf["details"])
    encoded = _encode(leaf, plain=plain)
    if value is None:
        return encoded
    return _with_envelope(encoded, value) or _encode({**leaf, "envelope": _b64(value)}, plain=plain)


_EMPTY_ENVELOPE = b'"envelope":""'


def _with_envelope(encoded: bytes, value: bytes) -> bytes | None:
    """``encoded`` (a leaf whose ``envelope`` is ``""``) with the base64 of ``value`` put there.

    The same bytes :func:`canonical_json` gives with the text in place: base64 has no character
    JSON escapes, so it goes in as it is, and the encoder need not scan a value's 1-2 KB twice
    per message (it was a tenth of the router's leaf-building). Inside a JSON string every
    ``"`` is escaped, so ``"envelope":""`` unescaped can only be a key and its value; None
    when more than one such key is present (a ``details`` field of that name), and the caller
    encodes the whole leaf instead."""
    at = encoded.find(_EMPTY_ENVELOPE)
    if at < 0 or encoded.find(_EMPTY_ENVELOPE, at + 1) >= 0:
        return None
    cut = at + len(_EMPTY_ENVELOPE) - 1  # just before the closing quote
    return encoded[:cut] + base64.b64encode(value) + encoded[cut:]


def plain_leaf(event: EventKind, *, event_id: uuid.UUID, at: datetime, **fields: Any) -> bytes:
    """The leaf of an event that is not about one message (e.g. a query the procuratorate ran)."""
    return canonical_json(
        {"v": LEAF_VERSION, "event": event, "message_id": str(event_id), "at": _ms(at), **fields}
    )


def decode_leaf(leaf: bytes) -> dict[str, Any]:
    """Parse a leaf and check it is canonical (re-encoding gives the same bytes)."""
    try:
        value = json.loads(leaf.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"leaf is not UTF-8 JSON: {e}") from e
    if not isinstance(value, dict) or canonical_json(value) != leaf:
        raise ValueError("leaf is not canonical JSON")
    return value


def leaf_envelope(leaf: Mapping[str, Any]) -> bytes | None:
    """The Kafka value a message leaf carries, if any."""
    raw = leaf.get("envelope")
    return base64.b64decode(raw, validate=True) if isinstance(raw, str) else None


def recipients_detail(recipients: Sequence[str]) -> dict[str, Any]:
    """The ``details`` of a delivery: who it went to, in order."""
    return {"deliver_to": list(recipients)}
