"""The SM2 test modules' shared pieces: a small SM2 written from GB/T 32918.2 §5-7 (the
recommended curve, affine arithmetic, no library; DER and PKCS#8 by hand), the constants and the
vector's envelope that tests/test_sm2.py and tests/test_sm2_interop.py both use.

The small SM2 is the independent witness both modules hold casebus's SM2 to: it reproduces the
standard's published r, s from the published k, and checks signatures casebus, the ``openssl``
CLI and the wire-format vector made.
"""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime
from typing import Any

from bus import sm2
from bus.models import Attachment, Envelope, Signature
from bus.settings import REPO_ROOT
from bus.signing import PublicKeyRecord, Sm2Signer

__all__ = [
    "AT",
    "DEFAULT_ID",
    "GX",
    "GY",
    "VALID_FROM",
    "VECTOR_PATH",
    "N",
    "P",
    "_der_signature",
    "_fields",
    "_independently_valid",
    "_mul",
    "_on_curve",
    "_pkcs8_pem",
    "_rs_of_der",
    "_sign_with_k",
    "_vector",
    "_vector_envelope",
    "_verify_rs",
    "_z",
]

VECTOR_PATH = REPO_ROOT / "tests" / "vectors" / "envelope-sm2.json"
DEFAULT_ID = b"1234567812345678"
AT = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)
VALID_FROM = datetime(2026, 1, 1, tzinfo=UTC)

# -- the recommended curve and a small SM2 on it (GB/T 32918.2, GB/T 32918.5-2017) -------------

P = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF
A = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC
B = 0x28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93
N = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123
GX = 0x32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7
GY = 0xBC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0

Point = tuple[int, int] | None  # None is the point at infinity


def _add(p: Point, q: Point) -> Point:
    if p is None:
        return q
    if q is None:
        return p
    (x1, y1), (x2, y2) = p, q
    if x1 == x2 and (y1 + y2) % P == 0:
        return None
    if p == q:
        slope = (3 * x1 * x1 + A) * pow(2 * y1, -1, P) % P
    else:
        slope = (y2 - y1) * pow(x2 - x1, -1, P) % P
    x3 = (slope * slope - x1 - x2) % P
    return x3, (slope * (x1 - x3) - y1) % P


def _mul(k: int, p: Point) -> Point:
    out: Point = None
    while k:
        if k & 1:
            out = _add(out, p)
        p = _add(p, p)
        k >>= 1
    return out


def _on_curve(x: int, y: int) -> bool:
    return (y * y - (x * x * x + A * x + B)) % P == 0


def _z(distid: bytes, x: int, y: int) -> bytes:
    """GB/T 32918.2 §5.5: Z = SM3(ENTL || ID || a || b || xG || yG || xA || yA)."""
    entl = (8 * len(distid)).to_bytes(2, "big")
    fields = b"".join(v.to_bytes(32, "big") for v in (A, B, GX, GY, x, y))
    return sm2.sm3(entl + distid + fields)


def _e(distid: bytes, point: bytes, message: bytes) -> int:
    x, y = int.from_bytes(point[1:33], "big"), int.from_bytes(point[33:], "big")
    return int.from_bytes(sm2.sm3(_z(distid, x, y) + message), "big")


def _sign_with_k(e: int, d: int, k: int) -> tuple[int, int]:
    """GB/T 32918.2 §6.1 with the nonce given."""
    kg = _mul(k, (GX, GY))
    assert kg is not None
    r = (e + kg[0]) % N
    s = pow(1 + d, -1, N) * (k - r * d) % N
    return r, s


def _verify_rs(e: int, r: int, s: int, point: bytes) -> bool:
    """GB/T 32918.2 §7.1."""
    if not (1 <= r < N and 1 <= s < N):
        return False
    t = (r + s) % N
    if t == 0:
        return False
    pa = (int.from_bytes(point[1:33], "big"), int.from_bytes(point[33:], "big"))
    x1y1 = _add(_mul(s, (GX, GY)), _mul(t, pa))
    return x1y1 is not None and (e + x1y1[0]) % N == r


def _der_int(v: int) -> bytes:
    body = v.to_bytes(v.bit_length() // 8 + 1, "big")  # a leading 00 when the top bit is set
    return b"\x02" + bytes([len(body)]) + body


def _der_signature(r: int, s: int) -> bytes:
    body = _der_int(r) + _der_int(s)
    return b"\x30" + bytes([len(body)]) + body


def _rs_of_der(der: bytes) -> tuple[int, int]:
    """SM2Signature ::= SEQUENCE { r INTEGER, s INTEGER } (GM/T 0009), short lengths only."""
    assert der[0] == 0x30 and der[1] == len(der) - 2, der.hex()
    values, at = [], 2
    for _ in range(2):
        assert der[at] == 0x02
        length = der[at + 1]
        values.append(int.from_bytes(der[at + 2 : at + 2 + length], "big"))
        at += 2 + length
    assert at == len(der)
    return values[0], values[1]


def _independently_valid(der: bytes, data: bytes, point: bytes, distid: bytes = DEFAULT_ID) -> bool:
    r, s = _rs_of_der(der)
    return _verify_rs(_e(distid, point, data), r, s, point)


def _pkcs8_pem(d: int) -> bytes:
    """An SM2 private key as PKCS#8 (RFC 5208) holding an RFC 5915 ECPrivateKey with its public
    point, AlgorithmIdentifier id-ecPublicKey with the curve sm2p256v1: the layout
    ``openssl genpkey -algorithm SM2`` writes."""
    point = _mul(d, (GX, GY))
    assert point is not None
    raw = b"\x04" + point[0].to_bytes(32, "big") + point[1].to_bytes(32, "big")
    ec_key = b"\x02\x01\x01" + b"\x04\x20" + d.to_bytes(32, "big")
    ec_key += b"\xa1\x44\x03\x42\x00" + raw
    ec_key = b"\x30" + bytes([len(ec_key)]) + ec_key
    algorithm = bytes.fromhex("301306072a8648ce3d020106082a811ccf5501822d")
    body = b"\x02\x01\x00" + algorithm + b"\x04" + bytes([len(ec_key)]) + ec_key
    der = b"\x30\x81" + bytes([len(body)]) + body

    text = base64.b64encode(der).decode()
    lines = [text[i : i + 64] for i in range(0, len(text), 64)]
    return (
        "-----BEGIN PRIVATE KEY-----\n" + "\n".join(lines) + "\n-----END PRIVATE KEY-----\n"
    ).encode()


def _fields(record: PublicKeyRecord) -> dict[str, Any]:
    return {f: getattr(record, f) for f in record.__dataclass_fields__}


# -- the wire-format vector --------------------------------------------------------------------


def _vector() -> dict[str, Any]:
    return json.loads(VECTOR_PATH.read_text(encoding="utf-8"))


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _vector_envelope(signer: Sm2Signer | None = None) -> Envelope:
    """The vector's envelope with an empty signature value (its key id, or ``signer``'s)."""
    e = _vector()["envelope"]
    key_id = signer.key_id if signer else e["signature"]["key_id"]
    return Envelope(
        message_id=uuid.UUID(e["message_id"]),
        kind=e["kind"],
        schema_version=e["schema_version"],
        sender=e["sender"],
        recipients=e["recipients"],
        case_id=e["case_id"],
        correlation_id=e["correlation_id"],
        causation_id=e["causation_id"],
        sent_at=_time(e["sent_at"]),
        due_at=None if e["due_at"] is None else _time(e["due_at"]),
        payload=bytes.fromhex(e["payload_hex"]),
        attachments=[Attachment(**a) for a in e["attachments"]],
        signature=Signature(algorithm=e["signature"]["algorithm"], key_id=key_id, value=b""),
    )
