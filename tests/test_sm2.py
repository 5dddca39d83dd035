"""The 国密 profile (SM2 with SM3) against the standards' own examples, round trips and refusals.

- the standards' published examples (SM3 of "abc" and of the 512-bit message, GB/T 32905-2016
  Appendix A; the signature example of GB/T 32918.5-2017 Annex A, identical in GM/T 0003.5-2012),
  checked value for value, with Z_A and e recomputed here from the curve parameters;
- the small SM2 of tests/sm2kit.py, written from GB/T 32918.2 §6-7 (affine arithmetic, no
  library), which reproduces the published r, s from the published k and then checks casebus's
  own signatures;
- sign/verify round trips, malformed signatures and off-curve keys refused without an exception,
  and a registry key's own distinguishing id.

The interop witnesses (the ``openssl`` CLI, the wire-format vector, the docs' Java with
BouncyCastle) are in tests/test_sm2_interop.py.
"""

from __future__ import annotations

import pytest
from sm2kit import (
    AT,
    DEFAULT_ID,
    GX,
    GY,
    VALID_FROM,
    N,
    P,
    _der_signature,
    _fields,
    _independently_valid,
    _mul,
    _on_curve,
    _pkcs8_pem,
    _rs_of_der,
    _sign_with_k,
    _vector_envelope,
    _verify_rs,
    _z,
)

from bus import sm2
from bus.errors import ConfigError, SignatureError
from bus.signing import (
    DOMAIN_PREFIX,
    SM2_SM3,
    InMemoryKeyStore,
    PublicKeyRecord,
    Sm2Signer,
    sign_envelope,
    verify_envelope,
)

# -- the worked example (GB/T 32918.5-2017 Annex A / GM/T 0003.5-2012) -------------------------

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
