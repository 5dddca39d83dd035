"""The canonical bytes of message leaves (bus.audit.events): the fast path that puts the envelope's
base64 in after encoding gives exactly what encoding the whole leaf gives."""

from __future__ import annotations

import base64
import json
import os
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bus.audit.events import canonical_json, decode_leaf, leaf_envelope, message_leaf
from bus.signing import PublicKeyRecord

_AT = datetime(2026, 3, 3, 10, 0, 0, 123456, tzinfo=timezone(timedelta(hours=8)))
_KEY = PublicKeyRecord(
    key_id="police-k1",
    agency_id="police",
    algorithm="ed25519",
    public_key=bytes(range(32)),
    valid_from=datetime(2026, 1, 1, tzinfo=UTC),
)


def _whole(**fields: Any) -> bytes:
    """The leaf encoded in one go, as the log's readers re-encode it to check it."""
    leaf: dict[str, Any] = {
        "v": 1,
        "event": fields["event"],
        "message_id": str(fields["message_id"]),
        "case_id": fields["case_id"],
        "at": "2026-03-03T02:00:00.123Z",
    }
    if fields.get("value") is not None:
        leaf["envelope"] = base64.b64encode(fields["value"]).decode()
    if fields.get("key") is not None:
        k = fields["key"]
        leaf["signing_key"] = {
            "key_id": k.key_id,
            "agency_id": k.agency_id,
            "algorithm": k.algorithm,
            "public_key": base64.b64encode(k.public_key).decode(),
        }
    if fields.get("details"):
        leaf["details"] = dict(fields["details"])
    return _stdlib(leaf)


@pytest.mark.parametrize(
    "value, details",
    [
        (os.urandom(1090), {"kind": "criminal.receipt", "deliver_to": ["bureau", "police"]}),
        (b"", {"deliver_to": ["x"]}),
        (b"\xff" * 3, None),
        # a details field of the same name and value: the fast path must step aside
        (b"abc", {"envelope": ""}),
        (b"abc", {"note": '"envelope":""', "案由": "非法占道经营 \u2028"}),
        (None, {"code": "bad_signature"}),
        # what orjson writes differently (a float) or refuses (an integer beyond 64 bits)
        (b"abc", {"problems": [{"path": "$.amount", "value": 1e-05}]}),
        (None, {"problems": [{"value": 2**70}]}),
    ],
)
def test_a_message_leaf_is_the_canonical_json_of_all_its_fields(
    value: bytes | None, details: dict[str, Any] | None
) -> None:
    message_id = uuid.uuid4()
    for case_id in ("YGH-2026-0001", '阳宗海-2026-"引号"', None):
        for key in (_KEY, None):
            leaf = message_leaf(
                "accepted",
                message_id=message_id,
                case_id=case_id,
                at=_AT,
                value=value,
                key=key,
                details=details,
            )
            assert leaf == _whole(
                event="accepted",
                message_id=message_id,
                case_id=case_id,
                value=value,
                key=key,
                details=details,
            )
            parsed = decode_leaf(leaf)  # canonical: re-encoding gives the same bytes
            assert leaf_envelope(parsed) == value


# -- canonical_json: orjson where it writes what json writes ------------------------------------

_TEXT = st.text(st.characters(codec=None, min_codepoint=0, max_codepoint=0x10FFFF), max_size=12)
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.integers(min_value=-(2**63), max_value=2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _TEXT
)
_JSON = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(_TEXT, inner, max_size=4)
    ),
    max_leaves=20,
)


def _stdlib(value: Any) -> bytes:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


@settings(max_examples=1500, deadline=None)
@given(st.dictionaries(_TEXT, _JSON, max_size=6))
def test_canonical_json_is_what_the_standard_json_writes(value: dict[str, Any]) -> None:
    """Text over every code point (lone surrogates too), integers past 64 bits, floats, nested
    lists, tuples and objects: the fast path and the fallback give the standard bytes, or fail
    as the standard way does."""
    try:
        want = _stdlib(value)
    except (UnicodeEncodeError, ValueError) as e:
        with pytest.raises(type(e)):
            canonical_json(value)
        return
    assert canonical_json(value) == want


@pytest.mark.parametrize(
    "value",
    [
        {"f": 1e-05},  # orjson writes 0.00001
        {"n": [1, {"f": 1e16}]},
        {"big": 2**64},  # orjson refuses it
        {"s": "\ud800"},  # a lone surrogate: UTF-8 cannot hold it
        {"é": 1, "a": 2, "\U0001f600": 3, "\uffff": 4},  # key order by code point
        {"c": '\x00\x1f\x7f\u2028"\\\b\f\n\r\t'},  # what JSON escapes and what it does not
    ],
)
def test_canonical_json_on_what_orjson_writes_differently_or_refuses(value: dict[str, Any]) -> None:
    try:
        want = _stdlib(value)
    except UnicodeEncodeError:
        with pytest.raises(UnicodeEncodeError):
            canonical_json(value)
        return
    assert canonical_json(value) == want
    assert decode_leaf(want) == json.loads(want)
