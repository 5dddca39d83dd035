"""The canonical bytes of message leaves (bus.audit.events): the fast path that puts the envelope's
base64 in after encoding gives exactly what encoding the whole leaf gives."""

from __future__ import annotations

import base64
import os
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

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
    return canonical_json(leaf)


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
