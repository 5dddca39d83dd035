"""The 国密 profile (SM2 with SM3) against the standards' own examples and the openssl CLI.

Three independent witnesses hold bus/sm2.py to GB/T 32918 and GB/T 32905:

- the standards' published examples (SM3 of "abc" and of the 512-bit message, GB/T 32905-2016
  Appendix A; the signature example of GB/T 32918.5-2017 Annex A, identical in GM/T 0003.5-2012),
  checked value for value, with Z_A and e recomputed here from the curve parameters;
- a small SM2 written in this file from GB/T 32918.2 §6-7 (affine arithmetic, no library), which
  reproduces the published r, s from the published k and then checks casebus's own signatures;
- Debian's ``openssl`` CLI, which signs, verifies and hashes over the signing input built the way
  docs/wire-format.md §5 says (fastavro and the schema file, not casebus's encoder).

The CLI tests fail rather than skip in CI when ``openssl`` is missing: deploy/setup-system
installs it.
"""

from __future__ import annotations

import base64
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
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fastavro
import pytest
from toolkit import jdk, tool_missing

from bus import sm2
from bus.codec import cloudevents_headers, default_codec, kafka_key
from bus.errors import ConfigError, SignatureError
from bus.models import Attachment, Envelope, Signature
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

VECTOR_PATH = REPO_ROOT / "tests" / "vectors" / "envelope-sm2.json"
ENVELOPE_SCHEMA = fastavro.parse_schema(
    json.loads((REPO_ROOT / "schemas" / "envelope.avsc").read_text(encoding="utf-8"))
)
DEFAULT_ID = b"1234567812345678"
AT = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)
VALID_FROM = datetime(2026, 1, 1, tzinfo=UTC)

# -- the recommended curve and the worked example (GB/T 32918.5-2017 / GM/T 0003.5-2012) ---------

P = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF
A = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC
B = 0x28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93
N = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123
GX = 0x32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7
GY = 0xBC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0

EXAMPLE_D = 0x3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8
EXAMPLE_X = 0x09F9DF311E5421A150DD7D161E4BC5C672179FAD1833FC076BB08FF356F35020
EXAMPLE_Y = 0xCCEA490CE26775A52DC6EA718CC1AA600AED05FBF35E084A6632F6072DA9AD13
EXAMPLE_MESSAGE = b"message digest"
EXAMPLE_Z = "b2e14c5c79c6df5b85f4fe7ed8db7a262b9da7e07ccb0ea9f4747b8ccda8a4f3"
EXAMPLE_E = "f0b43e94ba45accaace692ed534382eb17e6ab5a19ce7b31f4486fdfc0d28640"
EXAMPLE_K = 0x59276E27D506861A16680F3AD9C02DCCEF3CC1FA3CDBE4CE6D54B80DEAC1BC21
EXAMPLE_R = 0xF5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3
EXAMPLE_S = 0xB1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA
EXAMPLE_POINT = b"\x04" + EXAMPLE_X.to_bytes(32, "big") + EXAMPLE_Y.to_bytes(32, "big")

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


# -- the standards' examples -------------------------------------------------------------------


def test_sm3_gives_the_gb_t_32905_appendix_a_digests() -> None:
    # GB/T 32905-2016 Appendix A.1 ("abc") and A.2 ("abcd" sixteen times, 512 bits).
    assert sm2.sm3(b"abc").hex() == (
        "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
    )
    assert sm2.sm3(b"abcd" * 16).hex() == (
        "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"
    )
    assert sm2.sm3(b"abd") != sm2.sm3(b"abc")


def test_the_example_key_is_on_the_curve_and_is_d_times_g() -> None:
    assert _on_curve(GX, GY) and _on_curve(EXAMPLE_X, EXAMPLE_Y)
    assert _mul(N, (GX, GY)) is None  # G has order n
    assert _mul(EXAMPLE_D, (GX, GY)) == (EXAMPLE_X, EXAMPLE_Y)


def test_z_and_e_computed_from_the_curve_parameters_are_the_standards() -> None:
    z = _z(DEFAULT_ID, EXAMPLE_X, EXAMPLE_Y)
    assert z.hex() == EXAMPLE_Z
    assert sm2.sm3(z + EXAMPLE_MESSAGE).hex() == EXAMPLE_E
    # The distinguishing id is part of what is signed: another id, another Z and e.
    other = _z(b"1234567812345679", EXAMPLE_X, EXAMPLE_Y)
    assert other.hex() != EXAMPLE_Z
    assert sm2.sm3(other + EXAMPLE_MESSAGE).hex() != EXAMPLE_E


def test_this_files_sm2_reproduces_the_standards_signature_from_its_k() -> None:
    e = int(EXAMPLE_E, 16)
    assert _sign_with_k(e, EXAMPLE_D, EXAMPLE_K) == (EXAMPLE_R, EXAMPLE_S)
    assert _verify_rs(e, EXAMPLE_R, EXAMPLE_S, EXAMPLE_POINT)
    assert not _verify_rs(e + 1, EXAMPLE_R, EXAMPLE_S, EXAMPLE_POINT)
    assert not _verify_rs(e, EXAMPLE_R, (EXAMPLE_S + 1) % N, EXAMPLE_POINT)


def test_casebus_verifies_the_standards_signature_only_with_its_id_and_message() -> None:
    der = _der_signature(EXAMPLE_R, EXAMPLE_S)
    assert sm2.verify(EXAMPLE_POINT, der, EXAMPLE_MESSAGE) is True
    assert sm2.verify(EXAMPLE_POINT, der, EXAMPLE_MESSAGE, distid=DEFAULT_ID) is True
    assert sm2.verify(EXAMPLE_POINT, der, EXAMPLE_MESSAGE, distid=b"1234567812345679") is False
    assert sm2.verify(EXAMPLE_POINT, der, b"message digesT") is False
    assert sm2.verify(EXAMPLE_POINT, _der_signature(EXAMPLE_S, EXAMPLE_R), EXAMPLE_MESSAGE) is False


def test_casebus_signs_with_the_example_key_as_the_standard_says() -> None:
    key = sm2.Sm2PrivateKey.from_pem(_pkcs8_pem(EXAMPLE_D))
    assert key.public_key.raw == EXAMPLE_POINT
    for distid in (DEFAULT_ID, b"ygh.police.bureau"):
        der = key.sign(EXAMPLE_MESSAGE, distid=distid)
        # Checked by this file's SM2, with Z of that id: casebus's Z is the standard's Z.
        assert _independently_valid(der, EXAMPLE_MESSAGE, EXAMPLE_POINT, distid)
        wrong = b"ygh.police.bureau" if distid == DEFAULT_ID else DEFAULT_ID
        assert not _independently_valid(der, EXAMPLE_MESSAGE, EXAMPLE_POINT, wrong)


# -- round trips and refusals ------------------------------------------------------------------


def test_sign_and_verify_round_trip_and_each_wrong_input_is_refused() -> None:
    key, other = sm2.generate_private_key(), sm2.generate_private_key()
    data = DOMAIN_PREFIX + "阳城执罚〔2026〕0042号".encode()
    first, second = key.sign(data), key.sign(data)
    assert first != second  # randomised, and both verify
    for sig in (first, second):
        assert key.public_key.verify(sig, data)
        assert sm2.verify(key.public_key.raw, sig, data)
        assert _independently_valid(sig, data, key.public_key.raw)
    assert not sm2.verify(key.public_key.raw, first, data, distid=b"1234567812345679")
    assert not sm2.verify(key.public_key.raw, first, data + b"\x00")
    assert not sm2.verify(key.public_key.raw, first, data[:-1])
    assert not sm2.verify(other.public_key.raw, first, data)
    # PEM round trips keep the key.
    again = sm2.Sm2PrivateKey.from_pem(key.pem())
    assert again.public_key.raw == key.public_key.raw
    assert sm2.Sm2PublicKey.from_pem(key.public_key.pem()).raw == key.public_key.raw
    assert sm2.verify(key.public_key.raw, again.sign(data), data)


def _malformed(good: bytes) -> dict[str, bytes]:
    r, s = _rs_of_der(good)
    return {
        "empty": b"",
        "garbage": b"\x01\x02\x03",
        "truncated": good[:-1],
        "trailing byte": good + b"\x00",
        "wrong length": good[:1] + bytes([good[1] + 1]) + good[2:],
        "not a sequence": b"\x31" + good[1:],
        "raw r||s": r.to_bytes(32, "big") + s.to_bytes(32, "big"),
        "r = 0": _der_signature(0, s),
        "s = n": _der_signature(r, N),
        "s + n": _der_signature(r, s + N),
        "64 zero bytes": bytes(64),
        "huge": b"\x30\x82\xff\xff" + bytes(100),
    }


def test_a_malformed_signature_is_refused_without_an_exception() -> None:
    key = sm2.generate_private_key()
    good = key.sign(b"data")
    assert sm2.verify(key.public_key.raw, good, b"data")
    for name, bad in _malformed(good).items():
        assert sm2.verify(key.public_key.raw, bad, b"data") is False, name
    # ... and the error queue is left empty: the next good verification is not disturbed.
    assert sm2.verify(key.public_key.raw, good, b"data")


def test_a_key_off_the_curve_is_refused_without_an_exception() -> None:
    key = sm2.generate_private_key()
    sig = key.sign(b"data")
    raw = key.public_key.raw
    y = int.from_bytes(raw[33:], "big")
    off = raw[:33] + ((y + 1) % P).to_bytes(32, "big")
    assert not _on_curve(int.from_bytes(off[1:33], "big"), int.from_bytes(off[33:], "big"))
    for bad in (off, b"\x02" + raw[1:], raw[:-1], b"", b"\x04" + bytes(64)):
        assert sm2.verify(bad, sig, b"data") is False, bad.hex()
    with pytest.raises(ConfigError):
        sm2.Sm2PublicKey.from_raw(off)


async def test_verify_envelope_says_bad_signature_for_an_off_curve_key_or_malformed_signature() -> (
    None
):
    signer, record = _sm2_party_key()
    envelope = sign_envelope(_vector_envelope(signer), signer)
    y = int.from_bytes(signer.public_key[33:], "big")
    off = signer.public_key[:33] + ((y + 1) % P).to_bytes(32, "big")
    store = InMemoryKeyStore([PublicKeyRecord(**{**_fields(record), "public_key": off})])
    with pytest.raises(SignatureError) as caught:
        await verify_envelope(envelope, store, at=AT)
    assert caught.value.reason == "bad_signature"
    good = InMemoryKeyStore([record])
    assert (await verify_envelope(envelope, good, at=AT)).key_id == signer.key_id
    for name, bad in _malformed(envelope.signature.value).items():
        broken = envelope.model_copy(
            update={"signature": envelope.signature.model_copy(update={"value": bad})}
        )
        with pytest.raises(SignatureError) as caught:
            await verify_envelope(broken, good, at=AT)
        assert caught.value.reason == "bad_signature", name


# -- the registry's distinguishing id ----------------------------------------------------------


def _fields(record: PublicKeyRecord) -> dict[str, Any]:
    return {f: getattr(record, f) for f in record.__dataclass_fields__}


def _sm2_party_key(
    agency: str = "ygh.police.bureau", distid: bytes = DEFAULT_ID
) -> tuple[Sm2Signer, PublicKeyRecord]:
    signer = Sm2Signer(sm2.generate_private_key(), agency_id=agency, distid=distid)
    record = PublicKeyRecord(
        key_id=signer.key_id,
        agency_id=agency,
        algorithm=SM2_SM3,
        public_key=signer.public_key,
        valid_from=VALID_FROM,
        sm2_id=None if distid == DEFAULT_ID else distid,
    )
    return signer, record


async def test_a_registry_key_with_its_own_id_verifies_only_with_that_id() -> None:
    agency_id = b"ygh.police.bureau@yangzonghai"
    signer, record = _sm2_party_key(distid=agency_id)
    assert record.sm2_id == agency_id
    envelope = sign_envelope(_vector_envelope(signer), signer)
    assert (await verify_envelope(envelope, InMemoryKeyStore([record]), at=AT)) == record

    for other in (None, DEFAULT_ID, b"ygh.police.bureau"):
        changed = PublicKeyRecord(**{**_fields(record), "sm2_id": other})
        with pytest.raises(SignatureError) as caught:
            await verify_envelope(envelope, InMemoryKeyStore([changed]), at=AT)
        assert caught.value.reason == "bad_signature", other

    # A default-id signature is refused by a record naming another id.
    default_signer = Sm2Signer(signer._key, agency_id=signer.agency_id)
    plain = sign_envelope(_vector_envelope(default_signer), default_signer)
    with pytest.raises(SignatureError):
        await verify_envelope(plain, InMemoryKeyStore([record]), at=AT)
    unnamed = PublicKeyRecord(**{**_fields(record), "sm2_id": None})
    assert await verify_envelope(plain, InMemoryKeyStore([unnamed]), at=AT) == unnamed
    with pytest.raises(ValueError, match="sm2-sm3"):
        PublicKeyRecord(**{**_fields(record), "algorithm": "ed25519", "public_key": bytes(32)})


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
