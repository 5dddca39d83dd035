"""The 国密 profile (SM2 with SM3) against tools we did not write, over the documented bytes.

- Debian's ``openssl`` CLI, which signs, verifies and hashes over the signing input built the way
  docs/wire-format.md §5 says (fastavro and the schema file, not casebus's encoder), and reads
  the keys ``casebus keys generate --alg sm2`` writes;
- the wire-format vector tests/vectors/envelope-sm2.json, reproduced byte for byte by casebus
  and verified by casebus, the small SM2 of tests/sm2kit.py and the CLI;
- the docs' Java (docs/wire-format.md, with BouncyCastle), which verifies the vector;
- the SubjectPublicKeyInfo prefix the docs give, against what ``openssl`` writes.

The standards' own examples and the round trips are in tests/test_sm2.py. The CLI and Java tests
fail rather than skip in CI when ``openssl``, the JDK or BouncyCastle is missing:
deploy/setup-system installs them.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import fastavro
import pytest
from sm2kit import (
    AT,
    DEFAULT_ID,
    VALID_FROM,
    _fields,
    _independently_valid,
    _pkcs8_pem,
    _rs_of_der,
    _vector,
    _vector_envelope,
    _verify_rs,
    _z,
)
from toolkit import jdk, tool_missing

from bus import sm2
from bus.codec import cloudevents_headers, default_codec, kafka_key
from bus.errors import SignatureError
from bus.models import Signature
from bus.party import Party
from bus.samples import sample_envelope
from bus.settings import REPO_ROOT
from bus.signing import (
    DOMAIN_PREFIX,
    SM2_SM3,
    InMemoryKeyStore,
    PublicKeyRecord,
    Sm2Signer,
    canonical_bytes,
    key_id_for,
    public_key_from_pem,
    sign_envelope,
    signer_from_pem,
    verify_envelope,
)

ENVELOPE_SCHEMA = fastavro.parse_schema(
    json.loads((REPO_ROOT / "schemas" / "envelope.avsc").read_text(encoding="utf-8"))
)

# -- the openssl CLI ---------------------------------------------------------------------------


def _openssl() -> str:
    found = shutil.which("openssl")
    if found is None:
        tool_missing("no openssl CLI: run deploy/setup-system, which installs it")
    return found


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(list(args), capture_output=True, check=check, timeout=60)


def _documented_signing_input(value: bytes) -> bytes:
    """docs/wire-format.md §5.1 from a Kafka value with fastavro and the schema file alone."""
    body = io.BytesIO(value[10:])
    record = fastavro.schemaless_reader(body, ENVELOPE_SCHEMA, None)
    assert isinstance(record, dict) and body.tell() == len(value) - 10
    blank = {**record, "signature": {**record["signature"], "value": b""}}
    out = io.BytesIO()
    fastavro.schemaless_writer(out, ENVELOPE_SCHEMA, blank)
    return b"casebus-envelope-v1\x00" + out.getvalue()


def _openssl_verifies(openssl: str, public_pem: Path, data: bytes, sig: bytes, tmp: Path) -> bool:
    (tmp / "input").write_bytes(data)
    (tmp / "sig").write_bytes(sig)
    run = _run(
        openssl, "pkeyutl", "-verify", "-rawin", "-digest", "sm3",
        "-pkeyopt", f"distid:{DEFAULT_ID.decode()}", "-pubin", "-inkey", str(public_pem),
        "-in", str(tmp / "input"), "-sigfile", str(tmp / "sig"),
        check=False,
    )  # fmt: skip
    ok = run.returncode == 0 and b"Signature Verified Successfully" in run.stdout
    assert ok or b"Verification Failure" in run.stdout, run.stderr
    return ok


def _openssl_sign(openssl: str, private_pem: Path, data: bytes, tmp: Path, distid: bytes) -> bytes:
    (tmp / "to-sign").write_bytes(data)
    _run(
        openssl, "pkeyutl", "-sign", "-rawin", "-digest", "sm3",
        "-pkeyopt", f"distid:{distid.decode()}", "-inkey", str(private_pem),
        "-in", str(tmp / "to-sign"), "-out", str(tmp / "signed"),
    )  # fmt: skip
    return (tmp / "signed").read_bytes()


def test_openssl_dgst_sm3_agrees_with_casebus(tmp_path: Path) -> None:
    openssl = _openssl()
    rng = random.Random(32905)
    inputs = {
        "empty": b"",
        "abc": b"abc",
        "one block less one": rng.randbytes(55),
        "one block": rng.randbytes(64),
        "chinese": "国密 SM3 杂凑".encode(),
        "1 MiB": rng.randbytes(1 << 20),
    }
    for name, data in inputs.items():
        path = tmp_path / "data"
        path.write_bytes(data)
        out = _run(openssl, "dgst", "-sm3", "-binary", str(path)).stdout
        assert out == sm2.sm3(data), name
        assert len(out) == 32


def test_openssl_genpkey_keys_load_in_casebus_and_sign_for_openssl(tmp_path: Path) -> None:
    openssl = _openssl()
    key, pub = tmp_path / "k.pem", tmp_path / "p.pem"
    _run(openssl, "genpkey", "-algorithm", "SM2", "-out", str(key))
    _run(openssl, "pkey", "-in", str(key), "-pubout", "-out", str(pub))
    signer = signer_from_pem(key.read_bytes(), agency_id="ygh.court")
    assert isinstance(signer, Sm2Signer)
    algorithm, raw = public_key_from_pem(pub.read_bytes())
    assert (algorithm, raw) == (SM2_SM3, signer.public_key)
    der = _run(openssl, "pkey", "-pubin", "-in", str(pub), "-outform", "DER").stdout
    assert der == sm2.SM2_SPKI_PREFIX + raw
    data = b"signed by casebus, checked by openssl"
    sig = signer.sign(data)
    assert _openssl_verifies(openssl, pub, data, sig, tmp_path)
    assert not _openssl_verifies(openssl, pub, data + b"!", sig, tmp_path)
    # And the other way round: openssl signs, casebus verifies.
    theirs = _openssl_sign(openssl, key, data, tmp_path, DEFAULT_ID)
    assert sm2.verify(raw, theirs, data)
    assert not sm2.verify(raw, theirs, data, distid=b"another id")


def test_keys_generate_alg_sm2_writes_keys_openssl_reads(tmp_path: Path) -> None:
    openssl = _openssl()
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    run = subprocess.run(
        [sys.executable, "-c", "from bus.cli import main; main()", "keys", "generate",
         "--agency", "ygh.procuratorate", "--out", str(tmp_path), "--alg", "sm2"],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    key, pub = tmp_path / "ygh.procuratorate.key.pem", tmp_path / "ygh.procuratorate.pub.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    text = _run(openssl, "pkey", "-in", str(key), "-noout", "-text").stdout.decode()
    assert "ASN1 OID: SM2" in text, text
    derived = _run(openssl, "pkey", "-in", str(key), "-pubout").stdout
    assert derived == pub.read_bytes()
    der = _run(openssl, "pkey", "-pubin", "-in", str(pub), "-outform", "DER").stdout
    raw = der.removeprefix(sm2.SM2_SPKI_PREFIX)
    assert len(raw) == 65
    key_id = f"ygh.procuratorate:{hashlib.sha256(raw).hexdigest()[:16]}"
    assert run.stdout.strip() == key_id
    theirs = _openssl_sign(openssl, key, b"x", tmp_path, DEFAULT_ID)
    assert signer_from_pem(key.read_bytes(), agency_id="ygh.procuratorate").key_id == key_id
    assert sm2.verify(raw, theirs, b"x")


def _party(tmp_path: Path, agency: str) -> tuple[Party, Path, Path]:
    """A party signing with an openssl-made SM2 key, and the key's PEM files."""
    openssl = _openssl()
    key, pub = tmp_path / f"{agency}.key.pem", tmp_path / f"{agency}.pub.pem"
    _run(openssl, "genpkey", "-algorithm", "SM2", "-out", str(key))
    _run(openssl, "pkey", "-in", str(key), "-pubout", "-out", str(pub))
    signer = Sm2Signer.from_pem(key.read_bytes(), agency_id=agency)
    return Party(agency, signer), key, pub  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["criminal.transfer", "opinion.request", "bus.ack"])
def test_openssl_verifies_casebus_envelopes_over_the_documented_signing_input(
    tmp_path: Path, kind: str
) -> None:
    openssl = _openssl()
    from bus.samples import SAMPLE_ROUTES

    party, _, pub = _party(tmp_path, SAMPLE_ROUTES[kind][0])
    envelope = sample_envelope(party, kind, random.Random(19))
    assert envelope.signature.algorithm == SM2_SM3
    value = party.value(envelope)
    signing_input = _documented_signing_input(value)
    assert signing_input == canonical_bytes(envelope)  # the docs and the code agree
    sig = envelope.signature.value
    assert _openssl_verifies(openssl, pub, signing_input, sig, tmp_path)
    flipped = bytearray(signing_input)
    flipped[len(DOMAIN_PREFIX) + 5] ^= 1  # a bit of the message id
    assert not _openssl_verifies(openssl, pub, bytes(flipped), sig, tmp_path)
    assert not _openssl_verifies(openssl, pub, signing_input[len(DOMAIN_PREFIX) :], sig, tmp_path)


async def test_an_openssl_signature_in_an_envelope_passes_verify_envelope(tmp_path: Path) -> None:
    openssl = _openssl()
    party, key, _ = _party(tmp_path, "ygh.enforcement.bureau")
    signer = party.signer
    record = PublicKeyRecord(
        key_id=signer.key_id,
        agency_id=signer.agency_id,
        algorithm=SM2_SM3,
        public_key=signer.public_key,
        valid_from=VALID_FROM,
    )
    codec = default_codec()
    unsigned = sample_envelope(party, "clue.handover", random.Random(7))
    blank = unsigned.model_copy(
        update={"signature": Signature(algorithm=SM2_SM3, key_id=signer.key_id, value=b"")}
    )
    blank_value = codec.encode_envelope(blank)
    signing_input = _documented_signing_input(blank_value)
    theirs = _openssl_sign(openssl, key, signing_input, tmp_path, DEFAULT_ID)
    signed = blank.model_copy(
        update={"signature": blank.signature.model_copy(update={"value": theirs})}
    )
    value = codec.encode_envelope(signed)
    store = InMemoryKeyStore([record])
    assert await verify_envelope(codec.decode_envelope(value), store, at=AT, value=value) == record
    assert await verify_envelope(signed, store, at=AT) == record

    # Signed by openssl with another id: refused, unless the registry names that id.
    other = _openssl_sign(openssl, key, signing_input, tmp_path, b"ygh.enforcement.bureau")
    odd = blank.model_copy(
        update={"signature": blank.signature.model_copy(update={"value": other})}
    )
    with pytest.raises(SignatureError) as caught:
        await verify_envelope(odd, store, at=AT)
    assert caught.value.reason == "bad_signature"
    named = PublicKeyRecord(**{**_fields(record), "sm2_id": b"ygh.enforcement.bureau"})
    assert await verify_envelope(odd, InMemoryKeyStore([named]), at=AT) == named


# -- the wire-format vector --------------------------------------------------------------------


def _zigzag_varint(n: int) -> bytes:
    """An Avro ``long`` (zig-zag, then base-128 little-endian groups)."""
    z, out = n << 1, bytearray()
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


async def test_casebus_reproduces_the_sm2_vector_and_its_signature_verifies() -> None:
    vector = _vector()
    key = vector["key"]
    assert key["private_key_pem"].encode() == _pkcs8_pem(int(key["private_key_hex"], 16))
    signer = signer_from_pem(key["private_key_pem"].encode(), agency_id=key["agency_id"])
    assert isinstance(signer, Sm2Signer)
    assert signer.public_key.hex() == key["public_key_hex"]
    assert public_key_from_pem(key["public_key_pem"].encode()) == (SM2_SM3, signer.public_key)
    raw = bytes.fromhex(key["public_key_hex"])
    assert key["key_id"] == key_id_for(key["agency_id"], raw)
    assert key["key_id"] == f"{key['agency_id']}:{hashlib.sha256(raw).hexdigest()[:16]}"

    sig = bytes.fromhex(vector["envelope"]["signature"]["value_hex"])
    assert sig.hex() == vector["signature_der_hex"]
    assert _rs_of_der(sig) == (
        int(vector["signature_r_hex"], 16),
        int(vector["signature_s_hex"], 16),
    )
    unsigned = _vector_envelope()
    signing_input = canonical_bytes(unsigned)
    assert signing_input.hex() == vector["signing_input_hex"]
    signed = unsigned.model_copy(
        update={"signature": unsigned.signature.model_copy(update={"value": sig})}
    )
    codec = default_codec()
    value = codec.encode_envelope(signed)
    assert value.hex() == vector["kafka"]["value_hex"]
    assert _documented_signing_input(value).hex() == vector["signing_input_hex"]
    assert (
        dict((k, v.decode()) for k, v in cloudevents_headers(signed)) == vector["kafka"]["headers"]
    )
    assert kafka_key(signed).decode() == vector["kafka"]["key_utf8"]

    z = _z(
        key["distid_utf8"].encode(),
        int(key["public_key_hex"][2:66], 16),
        int(key["public_key_hex"][66:], 16),
    )
    assert z.hex() == vector["z_hex"]
    e = sm2.sm3(z + signing_input)
    assert e.hex() == vector["e_hex"]
    r, s = _rs_of_der(sig)
    assert _verify_rs(int.from_bytes(e, "big"), r, s, raw)

    assert sm2.verify(raw, sig, signing_input)
    record = PublicKeyRecord(
        key_id=key["key_id"], agency_id=key["agency_id"], algorithm=SM2_SM3, public_key=raw,
        valid_from=VALID_FROM,
    )  # fmt: skip
    store = InMemoryKeyStore([record])
    assert await verify_envelope(codec.decode_envelope(value), store, at=AT, value=value) == record
    tampered = bytearray(value)
    tampered[-len(sig) - 30] ^= 1
    with pytest.raises(SignatureError):
        await verify_envelope(codec.decode_envelope(bytes(tampered)), store, at=AT)


def test_openssl_verifies_the_sm2_vector(tmp_path: Path) -> None:
    openssl = _openssl()
    vector = _vector()
    pub = tmp_path / "pub.pem"
    pub.write_text(vector["key"]["public_key_pem"], encoding="utf-8")
    signing_input = bytes.fromhex(vector["signing_input_hex"])
    sig = bytes.fromhex(vector["signature_der_hex"])
    assert _openssl_verifies(openssl, pub, signing_input, sig, tmp_path)
    assert not _openssl_verifies(openssl, pub, signing_input + b"\x00", sig, tmp_path)
    # The documented cut (§5.1) gives the same bytes from the Kafka value.
    value = bytes.fromhex(vector["kafka"]["value_hex"])
    length = _zigzag_varint(len(sig))
    assert value[-len(sig) - len(length) : -len(sig)] == length
    assert DOMAIN_PREFIX + value[10 : -len(sig) - len(length)] + b"\x00" == signing_input
    # The private key openssl reads is the vector's: it signs, casebus and this file verify.
    key = tmp_path / "key.pem"
    key.write_text(vector["key"]["private_key_pem"], encoding="utf-8")
    theirs = _openssl_sign(openssl, key, signing_input, tmp_path, DEFAULT_ID)
    raw = bytes.fromhex(vector["key"]["public_key_hex"])
    assert sm2.verify(raw, theirs, signing_input)
    assert _independently_valid(theirs, signing_input, raw)


# -- the docs' Java, with BouncyCastle ---------------------------------------------------------

BCPROV = "org.bouncycastle:bcprov-jdk18on:1.87"

_JAVA_SM2_MAIN = """
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HexFormat;

public final class Main {
    public static void main(String[] a) throws Exception {
        HexFormat hex = HexFormat.of();
        byte[] value = Files.readAllBytes(Path.of(a[0]));
        byte[] signature = hex.parseHex(a[1]);
        byte[] key = hex.parseHex(a[2]);
        byte[] id = a.length > 3 ? a[3].getBytes(StandardCharsets.UTF_8)
                : CasebusSm2Signature.DEFAULT_ID;
        byte[] input = CasebusSm2Signature.signingInputOf(value, signature);
        boolean ok = CasebusSm2Signature.verify(key, id, input, signature);
        System.out.println("envelope=" + ok + " input=" + hex.formatHex(input));
    }
}
"""


def _bcprov_jar() -> Path:
    group, artifact, version = BCPROV.split(":")
    jar = Path.home() / ".m2" / "repository" / Path(*group.split("."))
    jar = jar / artifact / version / f"{artifact}-{version}.jar"
    if not jar.exists():
        tool_missing(f"no {BCPROV} in ~/.m2: run deploy/setup-system, which fetches it with Maven")
    return jar


def test_the_java_sm2_example_in_the_docs_verifies_the_vector(tmp_path: Path) -> None:
    javac, java = jdk()
    jar = _bcprov_jar()
    text = (REPO_ROOT / "docs" / "wire-format.md").read_text(encoding="utf-8")
    (source,) = re.findall(r"```java sm2\n(.*?)```", text, flags=re.DOTALL)
    (tmp_path / "CasebusSm2Signature.java").write_text(source, encoding="utf-8")
    (tmp_path / "Main.java").write_text(_JAVA_SM2_MAIN, encoding="utf-8")
    subprocess.run(
        [javac, "-cp", str(jar), "-d", str(tmp_path), *map(str, tmp_path.glob("*.java"))],
        check=True,
        capture_output=True,
        timeout=120,
    )
    vector = _vector()
    key = vector["key"]["public_key_hex"]

    def run(value: bytes, sig: str, *extra: str) -> str:
        (tmp_path / "value").write_bytes(value)
        classpath = f"{tmp_path}{os.pathsep}{jar}"
        out = subprocess.run(
            [java, "-cp", classpath, "Main", str(tmp_path / "value"), sig, key, *extra],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        )
        return out.stdout.strip()

    value = bytes.fromhex(vector["kafka"]["value_hex"])
    expected = f"envelope=true input={vector['signing_input_hex']}"
    sig = vector["signature_der_hex"]
    assert run(value, sig) == expected
    assert run(value, sig, "1234567812345678") == expected
    assert run(value, sig, "1234567812345679").startswith("envelope=false")
    tampered = bytearray(value)
    tampered[40] ^= 1
    assert run(bytes(tampered), sig).startswith("envelope=false")
    # A signature made now by casebus, over the same input, verifies in Java too.
    signer = signer_from_pem(
        vector["key"]["private_key_pem"].encode(), agency_id="ygh.police.bureau"
    )
    fresh = sign_envelope(_vector_envelope(), signer)
    assert fresh.signature.value.hex() != sig
    assert run(default_codec().encode_envelope(fresh), fresh.signature.value.hex()) == expected


def test_the_documented_spki_prefix_is_what_openssl_writes(tmp_path: Path) -> None:
    openssl = _openssl()
    text = (REPO_ROOT / "docs" / "wire-format.md").read_text(encoding="utf-8")
    (prefix_hex,) = re.findall(r"The public DER is the 26 bytes `([0-9a-f]+)`", text)
    key, pub = tmp_path / "k.pem", tmp_path / "p.pem"
    _run(openssl, "genpkey", "-algorithm", "SM2", "-out", str(key))
    _run(openssl, "pkey", "-in", str(key), "-pubout", "-out", str(pub))
    der = _run(openssl, "pkey", "-pubin", "-in", str(pub), "-outform", "DER").stdout
    assert len(bytes.fromhex(prefix_hex)) == 26 and len(der) == 26 + 65
    assert der[:26].hex() == prefix_hex and der[26] == 0x04
