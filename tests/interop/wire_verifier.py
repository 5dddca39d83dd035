"""A verifier of casebus envelopes and webhooks written from docs/wire-format.md and
docs/webhooks.md alone, the way an integrator without casebus's code would write one.

Why it exists: the issue's acceptance is that the docs suffice. So this file uses only the
Python standard library, fastavro, ``cryptography`` and the schema file it is given, and
tests/test_wire_format.py runs it in a fresh interpreter where importing casebus's packages
fails. Usage: ``python wire_verifier.py VECTOR.json ENVELOPE.avsc [NOW_UNIX_S]``; prints one JSON
object of check name → passed, and exits 1 unless every check passed.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fastavro
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from fastavro.schema import fingerprint, to_parsing_canonical_form

DOMAIN = b"casebus-envelope-v1\x00"  # wire-format.md §5.1
MARKER = b"\xc3\x01"  # §3
MAX_SKEW_S = 300  # webhooks.md, "Checking it"


def _rfc3339_ms(value: datetime) -> str:
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S") + f".{value.microsecond // 1000:03d}Z"


def _as_json(record: dict[str, Any]) -> dict[str, Any]:
    """The decoded envelope in the vector's JSON conventions (hex bytes, RFC 3339 times)."""
    out: dict[str, Any] = {}
    for name, value in record.items():
        if isinstance(value, bytes):
            out[f"{name}_hex"] = value.hex()
        elif isinstance(value, datetime):
            out[name] = _rfc3339_ms(value)
        elif isinstance(value, uuid.UUID):
            out[name] = str(value)
        elif name == "signature":
            out[name] = {**value, "value_hex": value["value"].hex()}
            del out[name]["value"]
        else:
            out[name] = value
    return out


def _avro_long(n: int) -> bytes:
    """Avro's zig-zag varint of ``n >= 0``."""
    z, out = n << 1, bytearray()
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def check(vector: dict[str, Any], schema_path: Path, *, now_s: int) -> dict[str, bool]:
    """Every check of the two documents against ``vector``, by name, at Unix time ``now_s``."""
    schema = fastavro.parse_schema(json.loads(schema_path.read_text(encoding="utf-8")))
    # fastavro, like Java's SchemaNormalization, gives the 8 bytes already in wire order (§3).
    fp = fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO")
    value = bytes.fromhex(vector["kafka"]["value_hex"])
    results: dict[str, bool] = {}

    # §3: marker, the envelope schema's fingerprint (8 bytes, little-endian), then one record.
    results["framing"] = value[:2] == MARKER and value[2:10] == bytes.fromhex(fp)
    body = io.BytesIO(value[10:])
    record = fastavro.schemaless_reader(body, schema, None)
    assert isinstance(record, dict)
    results["no_trailing_bytes"] = body.tell() == len(value) - 10
    # §4: one canonical encoding, so re-encoding gives the received bytes back.
    again = io.BytesIO()
    fastavro.schemaless_writer(again, schema, record)
    results["canonical"] = again.getvalue() == value[10:]
    results["fields"] = _as_json(record) == vector["envelope"]

    # §5.3: the key id is the agency and the first 16 hex digits of SHA-256(raw key).
    raw_key = bytes.fromhex(vector["key"]["public_key_hex"])
    key_id = f"{record['sender']}:{hashlib.sha256(raw_key).hexdigest()[:16]}"
    results["key_id"] = record["signature"]["key_id"] == key_id
    results["algorithm"] = record["signature"]["algorithm"] == "ed25519"

    # §5.1: the prefix, then the Avro binary without header with signature.value empty.
    signature = record["signature"]["value"]
    blank = {**record, "signature": {**record["signature"], "value": b""}}
    encoded = io.BytesIO()
    fastavro.schemaless_writer(encoded, schema, blank)
    signing_input = DOMAIN + encoded.getvalue()
    results["signing_input"] = signing_input.hex() == vector["signing_input_hex"]
    # ... and the same bytes cut from the value, since signature.value is the last field.
    tail = _avro_long(len(signature)) + signature
    cut = DOMAIN + value[10 : len(value) - len(tail)] + b"\x00" if value.endswith(tail) else b""
    results["signing_input_cut"] = cut == signing_input

    # §5.2: pure Ed25519 over the signing input.
    key = Ed25519PublicKey.from_public_bytes(raw_key)
    try:
        key.verify(signature, signing_input)
        results["signature"] = True
    except InvalidSignature:
        results["signature"] = False

    # §4: the payload's own header names schemas/<kind>/v<N>.avsc; here, read it with that file.
    payload = record["payload"]
    kind_schema = fastavro.parse_schema(
        json.loads(
            (schema_path.parent / record["kind"] / f"v{record['schema_version']}.avsc").read_text(
                encoding="utf-8"
            )
        )
    )
    kind_fp = fingerprint(to_parsing_canonical_form(kind_schema), "CRC-64-AVRO")
    results["payload_framing"] = payload[:2] == MARKER and payload[2:10] == bytes.fromhex(kind_fp)
    inner = fastavro.schemaless_reader(io.BytesIO(payload[10:]), kind_schema, None)
    assert isinstance(inner, dict)
    results["payload"] = _as_json(inner) == vector["payload"]["record"]

    # §2: headers are unsigned conveniences; they must agree with the decoded envelope.
    headers = vector["kafka"]["headers"]
    results["headers"] = headers == {
        "ce_specversion": "1.0",
        "ce_id": str(record["message_id"]),
        "ce_source": record["sender"],
        "ce_type": record["kind"],
        "ce_time": _rfc3339_ms(record["sent_at"]),
        "ce_subject": record["case_id"],
        "content-type": "application/avro",
    }
    results["kafka_key"] = vector["kafka"]["key_utf8"] == record["case_id"]

    # webhooks.md: HMAC-SHA256(secret, timestamp + "." + body), fresh within 300 s.
    hook = vector["webhook"]
    stamp, raw_body = hook["timestamp"], hook["body_utf8"].encode("utf-8")
    mac = hmac.new(hook["secret_utf8"].encode(), stamp.encode("ascii") + b"." + raw_body, "sha256")
    fresh = stamp.isascii() and stamp.isdigit() and abs(now_s - int(stamp)) <= MAX_SKEW_S
    results["webhook"] = fresh and hmac.compare_digest(
        hook["signature_header"].encode(), b"sha256=" + mac.hexdigest().encode()
    )
    return results


def main() -> int:
    vector = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    now_s = int(sys.argv[3]) if len(sys.argv) > 3 else int(time.time())
    results = check(vector, Path(sys.argv[2]), now_s=now_s)
    print(json.dumps(results, sort_keys=True))
    return 0 if all(results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
