"""The wire format and the webhook signature as documented (docs/wire-format.md,
docs/webhooks.md): casebus produces exactly the test vector in tests/vectors/envelope-v1.json,
and code written from the documents alone — the Python verifier in tests/interop/, run where
casebus cannot be imported, and the documents' own Python and Java examples — verifies it and
refuses it once tampered with."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from toolkit import jdk

from adapters._framework.outbound import sign_webhook
from bus.codec import cloudevents_headers, default_codec, kafka_key
from bus.models import Attachment, Envelope, Signature
from bus.models.criminal import CriminalReceipt
from bus.settings import REPO_ROOT
from bus.signing import (
    DOMAIN_PREFIX,
    Ed25519Signer,
    InMemoryKeyStore,
    PublicKeyRecord,
    canonical_bytes,
    sign_envelope,
    verify_envelope,
)

VECTOR_PATH = REPO_ROOT / "tests" / "vectors" / "envelope-v1.json"
VECTOR: dict[str, Any] = json.loads(VECTOR_PATH.read_text(encoding="utf-8"))
ENVELOPE_SCHEMA = REPO_ROOT / "schemas" / "envelope.avsc"
VERIFIER = REPO_ROOT / "tests" / "interop" / "wire_verifier.py"
DOCS = REPO_ROOT / "docs"
NOW = int(VECTOR["webhook"]["timestamp"])

# Runs a script in a fresh interpreter (-I: no current directory, no user site) in which
# importing casebus's own packages fails, so the script can only know what the docs say.
_SEALED = """
import importlib.abc, runpy, sys
OURS = {"bus", "adapters", "schemas", "buskit", "securekit", "slakit", "s3kit"}
class Ours(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in OURS:
            raise ImportError(f"{name} is casebus's code; the docs must suffice")
        return None
sys.meta_path.insert(0, Ours())
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _signer() -> Ed25519Signer:
    seed = bytes.fromhex(VECTOR["key"]["private_seed_hex"])
    return Ed25519Signer(
        Ed25519PrivateKey.from_private_bytes(seed), agency_id=VECTOR["key"]["agency_id"]
    )


def _envelope_from_vector() -> Envelope:
    e = VECTOR["envelope"]
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
        signature=Signature(
            algorithm=e["signature"]["algorithm"], key_id=e["signature"]["key_id"], value=b""
        ),
    )


async def test_casebus_produces_exactly_the_vector() -> None:
    codec = default_codec()
    record = VECTOR["payload"]["record"]
    payload = CriminalReceipt(**{**record, "received_at": _time(record["received_at"])})
    assert (
        codec.encode_payload("criminal.receipt", payload).hex() == VECTOR["envelope"]["payload_hex"]
    )
    assert VECTOR["payload"]["single_object_hex"] == VECTOR["envelope"]["payload_hex"]

    signer = _signer()
    assert signer.public_key.hex() == VECTOR["key"]["public_key_hex"]
    assert signer.key_id == VECTOR["key"]["key_id"]
    signed = sign_envelope(_envelope_from_vector(), signer)
    signing_input = canonical_bytes(signed)
    assert signing_input.startswith(DOMAIN_PREFIX)
    assert signing_input.hex() == VECTOR["signing_input_hex"]
    assert signed.signature.value.hex() == VECTOR["signature_hex"]
    value = codec.encode_envelope(signed)
    assert value.hex() == VECTOR["kafka"]["value_hex"]
    assert (
        dict((k, v.decode()) for k, v in cloudevents_headers(signed)) == VECTOR["kafka"]["headers"]
    )
    assert kafka_key(signed).decode() == VECTOR["kafka"]["key_utf8"]

    # The router's own check accepts it, cutting the signed bytes from the value as it does.
    assert codec.decode_envelope(value) == signed
    keys = InMemoryKeyStore(
        [
            PublicKeyRecord(
                key_id=signer.key_id,
                agency_id=signer.agency_id,
                algorithm="ed25519",
                public_key=signer.public_key,
                valid_from=_time("2026-01-01T00:00:00Z"),
            )
        ]
    )
    at = _time("2026-12-04T09:00:00Z")
    assert (await verify_envelope(signed, keys, at=at, value=value)).key_id == signer.key_id

    hook = VECTOR["webhook"]
    body = hook["body_utf8"].encode()
    assert (
        sign_webhook(hook["secret_utf8"].encode(), hook["timestamp"], body)
        == hook["signature_header"]
    )


def _sealed(tmp_path: Path, vector: dict[str, Any], now: int) -> tuple[int, dict[str, bool]]:
    path = tmp_path / f"vector-{uuid.uuid4().hex[:8]}.json"
    path.write_text(json.dumps(vector, ensure_ascii=False), encoding="utf-8")
    run = subprocess.run(
        [
            sys.executable,
            "-I",
            "-c",
            _SEALED,
            str(VERIFIER),
            str(path),
            str(ENVELOPE_SCHEMA),
            str(now),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert run.stdout, run.stderr
    return run.returncode, json.loads(run.stdout)


def test_a_verifier_written_from_the_docs_alone_verifies_the_vector(tmp_path: Path) -> None:
    rc, results = _sealed(tmp_path, VECTOR, NOW)
    assert rc == 0 and all(results.values()), results
    assert {"signature", "signing_input", "signing_input_cut", "webhook", "fields"} <= set(results)


def test_the_sealed_interpreter_really_cannot_import_casebus(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("import bus.signing\n", encoding="utf-8")
    run = subprocess.run(
        [sys.executable, "-I", "-c", _SEALED, str(probe)], capture_output=True, text=True
    )
    assert run.returncode != 0 and "the docs must suffice" in run.stderr


def _flip(hex_text: str, byte: int) -> str:
    data = bytearray(bytes.fromhex(hex_text))
    data[byte] ^= 0x01
    return data.hex()


def test_that_verifier_refuses_a_tampered_envelope_or_webhook(tmp_path: Path) -> None:
    # One bit of the sender's name (byte 10 + 1 + 36 + 1 + 16 + 1 + 1 of the value).
    value = VECTOR["kafka"]["value_hex"]
    sender_at = 10 + 1 + 36 + 1 + len("criminal.receipt") + 1 + 1
    assert bytes.fromhex(value)[sender_at : sender_at + 3] == b"ygh"
    tampered = {**VECTOR, "kafka": {**VECTOR["kafka"], "value_hex": _flip(value, sender_at + 5)}}
    rc, results = _sealed(tmp_path, tampered, NOW)
    assert rc == 1 and results["signature"] is False and results["webhook"] is True

    hook = VECTOR["webhook"]
    changed = {
        **VECTOR,
        "webhook": {**hook, "body_utf8": hook["body_utf8"].replace("0042", "0043")},
    }
    rc, results = _sealed(tmp_path, changed, NOW)
    assert rc == 1 and results["webhook"] is False and results["signature"] is True

    rc, results = _sealed(tmp_path, VECTOR, NOW + 301)
    assert rc == 1 and results["webhook"] is False


def _code_blocks(page: Path, language: str) -> list[str]:
    text = page.read_text(encoding="utf-8")
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.DOTALL)


def test_the_python_webhook_example_in_the_docs_verifies_the_vector() -> None:
    (source,) = _code_blocks(DOCS / "webhooks.md", "python")
    namespace: dict[str, Any] = {}
    exec(compile(source, "docs/webhooks.md", "exec"), namespace)
    check = namespace["casebus_webhook_is_authentic"]
    hook = VECTOR["webhook"]
    secret, stamp = hook["secret_utf8"].encode(), hook["timestamp"]
    body, header = hook["body_utf8"].encode(), hook["signature_header"]
    assert check(secret, stamp, body, header, now=NOW) is True
    assert check(secret, stamp, body, header, now=NOW + 300) is True
    assert check(secret, stamp, body, header, now=NOW + 301) is False
    assert check(secret, stamp, body + b" ", header, now=NOW) is False
    assert check(b"another secret", stamp, body, header, now=NOW) is False
    assert check(secret, str(NOW + 1), body, header, now=NOW) is False
    assert check(secret, "１７９６３７３０００", body, header, now=NOW) is False  # not ASCII digits


_JAVA_MAIN = """
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HexFormat;

public final class Main {
    public static void main(String[] a) throws Exception {
        HexFormat hex = HexFormat.of();
        byte[] body = Files.readAllBytes(Path.of(a[2]));
        byte[] value = Files.readAllBytes(Path.of(a[6]));
        boolean webhook = CasebusWebhook.isAuthentic(
                a[0].getBytes("UTF-8"), a[1], body, a[3], Long.parseLong(a[4]));
        byte[] input = CasebusEnvelopeSignature.signingInputOf(value);
        boolean envelope = CasebusEnvelopeSignature.verify(
                hex.parseHex(a[5]), input, CasebusEnvelopeSignature.signatureOf(value));
        System.out.println("webhook=" + webhook + " envelope=" + envelope
                + " input=" + hex.formatHex(input));
    }
}
"""


def test_the_java_examples_in_the_docs_verify_the_vector(tmp_path: Path) -> None:
    javac, java = jdk()
    (webhook,) = _code_blocks(DOCS / "webhooks.md", "java")
    (envelope,) = _code_blocks(DOCS / "wire-format.md", "java")
    (tmp_path / "CasebusWebhook.java").write_text(webhook, encoding="utf-8")
    (tmp_path / "CasebusEnvelopeSignature.java").write_text(envelope, encoding="utf-8")
    (tmp_path / "Main.java").write_text(_JAVA_MAIN, encoding="utf-8")
    subprocess.run(
        [javac, "-d", str(tmp_path), *map(str, tmp_path.glob("*.java"))],
        check=True,
        capture_output=True,
        timeout=120,
    )
    hook = VECTOR["webhook"]
    (tmp_path / "body").write_bytes(hook["body_utf8"].encode())

    def run(value_hex: str, now: int) -> str:
        (tmp_path / "value").write_bytes(bytes.fromhex(value_hex))
        args = [hook["secret_utf8"], hook["timestamp"], str(tmp_path / "body")]
        args += [hook["signature_header"], str(now), VECTOR["key"]["public_key_hex"]]
        out = subprocess.run(
            [java, "-cp", str(tmp_path), "Main", *args, str(tmp_path / "value")],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        )
        return out.stdout.strip()

    value = VECTOR["kafka"]["value_hex"]
    assert run(value, NOW) == f"webhook=true envelope=true input={VECTOR['signing_input_hex']}"
    assert run(_flip(value, 40), NOW + 301).startswith("webhook=false envelope=false")


def test_the_documented_key_id_rule_gives_the_vector_key_id() -> None:
    raw = bytes.fromhex(VECTOR["key"]["public_key_hex"])
    expected = f"{VECTOR['key']['agency_id']}:{hashlib.sha256(raw).hexdigest()[:16]}"
    assert expected == VECTOR["key"]["key_id"] == VECTOR["envelope"]["signature"]["key_id"]
