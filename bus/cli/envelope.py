"""``casebus envelope``: encode and decode Kafka values by hand, for people debugging the bus.

``encode --key KEY.pem < envelope.json > value.bin`` takes an envelope as JSON with its payload
as a JSON object, validates the payload for its kind (every problem listed), signs it as the
sender and writes the Kafka value. ``decode < value.bin`` prints the envelope as JSON with its
payload decoded and, when the registry is reachable, ``signature_valid``.
"""

from __future__ import annotations

import asyncio
import base64
import enum
import json
import sys
import uuid
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import typer

from bus.agency_db import PgKeyStore
from bus.codec import default_codec
from bus.db import create_pool
from bus.errors import CasebusError, DecodeError, SignatureError, ValidationFailedError
from bus.models import Attachment, Envelope, Signature, validate_payload
from bus.settings import load_settings
from bus.signing import load_signer, sign_envelope, verify_envelope

app = typer.Typer(help="Encode and decode Kafka values by hand.", no_args_is_help=True)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if isinstance(value, date | uuid.UUID):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    return value


def _problems(e: ValidationFailedError) -> None:
    typer.echo(json.dumps({"problems": e.as_list()}, ensure_ascii=False, indent=2), err=True)


@app.command("encode")
def encode_cmd(
    key: Path = typer.Option(
        ...,
        "--key",
        exists=True,
        dir_okay=False,
        help="The sender's private key (PKCS#8 PEM, Ed25519 or SM2: the key says which).",
    ),
) -> None:
    """Read an envelope as JSON on stdin; write the signed Kafka value to stdout."""
    try:
        doc = json.load(sys.stdin)
    except json.JSONDecodeError as e:
        typer.echo(f"stdin is not JSON: {e}", err=True)
        raise typer.Exit(2) from e
    if not isinstance(doc, dict) or not isinstance(doc.get("payload"), dict):
        typer.echo("give a JSON object with a 'payload' object", err=True)
        raise typer.Exit(2)
    kind = str(doc.get("kind", ""))
    try:
        payload = validate_payload(kind, doc["payload"])
        signer = load_signer(key, agency_id=str(doc.get("sender", "")))
        mid = uuid.UUID(str(doc["message_id"])) if doc.get("message_id") else uuid.uuid4()
        envelope = Envelope.model_validate(
            {
                "message_id": mid,
                "kind": kind,
                "schema_version": payload.SCHEMA_VERSION,
                "sender": doc.get("sender"),
                "recipients": doc.get("recipients"),
                "case_id": doc.get("case_id"),
                "correlation_id": doc.get("correlation_id") or str(mid),
                "causation_id": doc.get("causation_id"),
                "sent_at": doc.get("sent_at") or datetime.now(UTC),
                "due_at": doc.get("due_at"),
                "payload": default_codec().encode_payload(kind, payload),
                "attachments": [Attachment.model_validate(a) for a in doc.get("attachments", [])],
                "signature": Signature(algorithm=signer.algorithm, key_id=signer.key_id, value=b""),
            }
        )
        value = default_codec().encode_envelope(sign_envelope(envelope, signer))
    except ValidationFailedError as e:
        _problems(e)
        raise typer.Exit(2) from e
    except (CasebusError, ValueError, KeyError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from e
    sys.stdout.buffer.write(value)
    sys.stdout.buffer.flush()


async def _check_signature(envelope: Envelope) -> dict[str, Any]:
    settings = load_settings()
    try:
        pool = await asyncio.wait_for(create_pool(settings.database_url, max_size=1), 5)
    except (CasebusError, OSError, TimeoutError):
        return {"signature_valid": None, "signature_note": "registry not reachable"}
    try:
        record = await verify_envelope(envelope, PgKeyStore(pool))
        return {"signature_valid": True, "signing_key": record.key_id}
    except SignatureError as e:
        return {"signature_valid": False, "signature_error": e.reason, "detail": str(e)}
    finally:
        await pool.close()


@app.command("decode")
def decode_cmd(
    no_registry: bool = typer.Option(False, "--no-registry", help="Do not check the signature."),
) -> None:
    """Read a Kafka value on stdin; print the envelope and its payload as JSON."""
    codec = default_codec()
    value = sys.stdin.buffer.read()
    try:
        envelope = codec.decode_envelope(value)
        kind, version, payload = codec.decode_envelope_payload(envelope)
    except (DecodeError, ValidationFailedError) as e:
        typer.echo(f"cannot decode: {e}", err=True)
        raise typer.Exit(1) from e
    out: dict[str, Any] = envelope.to_avro()
    out["payload"] = payload
    out["payload_schema"] = {
        "kind": kind,
        "version": version,
        "fingerprint": codec.writer_entry(envelope.payload).fingerprint_bytes.hex(),
    }
    if not no_registry:
        out.update(asyncio.run(_check_signature(envelope)))
    typer.echo(json.dumps(_jsonable(out), ensure_ascii=False, indent=2))
