"""Tests for bus.audit.checkpoint: C2SP checkpoints in Ed25519-signed C2SP notes."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, settings
from hypothesis import strategies as st

from bus.audit.checkpoint import (
    Checkpoint,
    NoteSignature,
    ed25519_key_id,
    parse_note,
    parse_signed_checkpoint,
    parse_verifier_key,
    sign_checkpoint,
    sign_note,
    verifier_key_string,
    verify_note,
    verify_signed_checkpoint,
)
from bus.audit.merkle import root_hash
from bus.errors import CheckpointError, ProofError

ORIGIN = "casebus.example/audit"
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
OTHER_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32, 64)))
ROOT = root_hash([b"accepted", b"delivered", b"acknowledged"])
CHECKPOINT = Checkpoint(origin=ORIGIN, size=3, root_hash=ROOT, timestamp_ms=1_718_000_000_123)


def _raw(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def _spec_key_id(name: str, key: Ed25519PrivateKey) -> bytes:
    """key ID = SHA-256(key name || 0x0A || 0x01 || 32-byte Ed25519 public key)[:4]."""
    return hashlib.sha256(name.encode() + b"\n" + b"\x01" + _raw(key)).digest()[:4]


def _signature_line(name: str, key: Ed25519PrivateKey, text: str, key_id: bytes = b"") -> str:
    """A signature line built by hand, so tests can sign bodies the module would refuse."""
    blob = (key_id or _spec_key_id(name, key)) + key.sign(text.encode())
    return f"— {name} {base64.b64encode(blob).decode()}\n"


def _reason(note: str | bytes, key: Ed25519PrivateKey = KEY, name: str = ORIGIN) -> str:
    with pytest.raises(CheckpointError) as caught:
        verify_signed_checkpoint(note, name, key.public_key())
    return caught.value.reason


# --- round trip and known answers ------------------------------------------------------------


def test_sign_parse_verify_round_trip() -> None:
    note = sign_checkpoint(CHECKPOINT, ORIGIN, KEY)
    assert verify_signed_checkpoint(note, ORIGIN, KEY.public_key()) == CHECKPOINT
    assert verify_signed_checkpoint(note.encode(), ORIGIN, KEY.public_key()) == CHECKPOINT
    parsed, signatures = parse_signed_checkpoint(note)
    assert parsed == CHECKPOINT
    assert signatures == [
        NoteSignature(ORIGIN, _spec_key_id(ORIGIN, KEY), KEY.sign(CHECKPOINT.body()))
    ]


def test_known_answer_note_layout_and_key_id() -> None:
    body = (
        f"{ORIGIN}\n3\n{base64.b64encode(ROOT).decode()}\ntimestamp_ms 1718000000123\n"
    ).encode()
    assert CHECKPOINT.body() == body
    key_id = _spec_key_id(ORIGIN, KEY)
    assert ed25519_key_id(ORIGIN, KEY.public_key()) == key_id
    expected = body.decode() + "\n" + _signature_line(ORIGIN, KEY, body.decode())
    assert sign_checkpoint(CHECKPOINT, ORIGIN, KEY) == expected
    material = base64.b64encode(b"\x01" + _raw(KEY)).decode()
    assert verifier_key_string(ORIGIN, KEY.public_key()) == f"{ORIGIN}+{key_id.hex()}+{material}"


def test_checkpoint_without_timestamp_has_exactly_three_lines() -> None:
    checkpoint = Checkpoint(origin=ORIGIN, size=0, root_hash=root_hash([]), timestamp_ms=None)
    assert checkpoint.body() == (
        b"casebus.example/audit\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n"
    )
    note = sign_checkpoint(checkpoint, ORIGIN, KEY)
    assert verify_signed_checkpoint(note, ORIGIN, KEY.public_key()) == checkpoint


def test_the_example_of_the_signed_note_spec_verifies() -> None:
    # From c2sp.org/signed-note: a vkey and a note it verifies.
    vkey = parse_verifier_key(
        "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
    )
    raw = vkey.public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    assert hashlib.sha256(b"example.com/foo\n\x01" + raw).digest()[:4] == vkey.key_id
    note = (
        "This is an example message.\n"
        "\n"
        "— example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3"
        "mFXmRKuwHjG1Yu72IneyaQM=\n"
    )
    assert verify_note(note, vkey.name, vkey.public_key) == "This is an example message.\n"
    with pytest.raises(CheckpointError) as caught:
        verify_note(note.replace("This is", "That is"), vkey.name, vkey.public_key)
    assert caught.value.reason == "bad_signature"


def test_verifier_key_round_trip_with_a_plus_inside_the_key_material() -> None:
    text = verifier_key_string(ORIGIN, KEY.public_key())
    assert text.count("+") > 2  # this key's base64 has a '+' of its own
    vkey = parse_verifier_key(text)
    assert vkey.name == ORIGIN
    assert vkey.key_id == _spec_key_id(ORIGIN, KEY)
    assert vkey.public_key.public_bytes(Encoding.Raw, PublicFormat.Raw) == _raw(KEY)


_SPEC_KEY = "AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"  # the signed-note spec's example


@pytest.mark.parametrize(
    "vkey",
    [
        pytest.param(f"example.com/foo+{_SPEC_KEY}", id="two-parts"),
        pytest.param(f"example.com/foo+530D903A+{_SPEC_KEY}", id="uppercase-hex"),
        pytest.param(f"example.com/foo+530d903+{_SPEC_KEY}", id="short-hex"),
        pytest.param(f"example.com/foo+530d903b+{_SPEC_KEY}", id="wrong-key-id"),
        pytest.param(f"example.com/bar+530d903a+{_SPEC_KEY}", id="wrong-name"),
        pytest.param(f"example com+530d903a+{_SPEC_KEY}", id="space-in-name"),
        pytest.param(f"example.com/foo+530d903a+Au{_SPEC_KEY[2:]}", id="type-byte-2"),
        pytest.param(f"example.com/foo+530d903a+{_SPEC_KEY[:-4]}", id="short-key"),
        pytest.param(f"example.com/foo+530d903a+{_SPEC_KEY}=", id="bad-base64"),
    ],
)
def test_parse_verifier_key_rejects_malformed_keys(vkey: str) -> None:
    with pytest.raises(CheckpointError) as caught:
        parse_verifier_key(vkey)
    assert caught.value.reason == "bad_key"


# --- tampering and keys ----------------------------------------------------------------------


def test_changing_any_byte_of_the_note_fails() -> None:
    note = sign_checkpoint(CHECKPOINT, ORIGIN, KEY).encode()
    public = KEY.public_key()
    for at in range(len(note)):
        for mask in (0x01, 0x20, 0x80):
            tampered = note[:at] + bytes([note[at] ^ mask]) + note[at + 1 :]
            with pytest.raises(CheckpointError):
                verify_signed_checkpoint(tampered, ORIGIN, public)
        with pytest.raises(CheckpointError):
            verify_signed_checkpoint(note[:at] + note[at + 1 :], ORIGIN, public)


def test_a_note_signed_by_another_key_is_rejected() -> None:
    note = sign_checkpoint(CHECKPOINT, ORIGIN, OTHER_KEY)
    assert _reason(note) == "unknown_key"
    assert _reason(sign_checkpoint(CHECKPOINT, "other.example/log", KEY)) == "unknown_key"


def test_a_bad_signature_from_the_expected_key_is_rejected() -> None:
    body = CHECKPOINT.body().decode()
    forged = _signature_line(ORIGIN, OTHER_KEY, body, key_id=_spec_key_id(ORIGIN, KEY))
    assert _reason(f"{body}\n{forged}") == "bad_signature"
    short = f"— {ORIGIN} {base64.b64encode(_spec_key_id(ORIGIN, KEY) + bytes(63)).decode()}\n"
    assert _reason(f"{body}\n{short}") == "bad_signature"


def test_signatures_by_unknown_keys_are_ignored_but_a_failing_known_one_rejects() -> None:
    body = CHECKPOINT.body().decode()
    ours = _signature_line(ORIGIN, KEY, body)
    theirs = _signature_line("witness.example/w1", OTHER_KEY, body)
    note = f"{body}\n{theirs}{ours}"
    assert verify_signed_checkpoint(note, ORIGIN, KEY.public_key()) == CHECKPOINT
    assert len(parse_signed_checkpoint(note)[1]) == 2
    forged = _signature_line(ORIGIN, OTHER_KEY, body, key_id=_spec_key_id(ORIGIN, KEY))
    assert _reason(f"{body}\n{ours}{forged}") == "bad_signature"


def test_origin_can_be_required() -> None:
    note = sign_checkpoint(CHECKPOINT, ORIGIN, KEY)
    assert verify_signed_checkpoint(note, ORIGIN, KEY.public_key(), origin=ORIGIN) == CHECKPOINT
    with pytest.raises(CheckpointError) as caught:
        verify_signed_checkpoint(note, ORIGIN, KEY.public_key(), origin="other.example/log")
    assert caught.value.reason == "wrong_origin"


def test_checkpoint_error_is_a_final_proof_error() -> None:
    note = sign_checkpoint(CHECKPOINT, ORIGIN, OTHER_KEY)
    with pytest.raises(ProofError) as caught:
        verify_signed_checkpoint(note, ORIGIN, KEY.public_key())
    assert isinstance(caught.value, ValueError)
    assert caught.value.retriable is False
    assert str(caught.value).startswith("unknown_key: ")


# --- strict parsing --------------------------------------------------------------------------

_B64_ROOT = base64.b64encode(ROOT).decode()


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        pytest.param(f"{ORIGIN}\n03\n{_B64_ROOT}\n", "malformed", id="size-leading-zero"),
        pytest.param(f"{ORIGIN}\n+3\n{_B64_ROOT}\n", "malformed", id="size-plus-sign"),
        pytest.param(f"{ORIGIN}\n-3\n{_B64_ROOT}\n", "malformed", id="size-minus-sign"),
        pytest.param(f"{ORIGIN}\n3 \n{_B64_ROOT}\n", "malformed", id="size-trailing-space"),
        pytest.param(f"{ORIGIN}\n３\n{_B64_ROOT}\n", "malformed", id="size-fullwidth-digit"),
        pytest.param(f"{ORIGIN}\n{2**64}\n{_B64_ROOT}\n", "malformed", id="size-over-uint64"),
        pytest.param(f"{ORIGIN} \n3\n{_B64_ROOT}\n", "malformed", id="origin-trailing-space"),
        pytest.param(f"\n3\n{_B64_ROOT}\n", "malformed", id="origin-empty"),
        pytest.param(f"{ORIGIN}\n3\n{_B64_ROOT} \n", "malformed", id="root-trailing-space"),
        pytest.param(f"{ORIGIN}\n3\n{_B64_ROOT[:-2]}l=\n", "malformed", id="root-stray-bits"),
        pytest.param(f"{ORIGIN}\n3\n{_B64_ROOT[:-1]}\n", "malformed", id="root-unpadded"),
        pytest.param(f"{ORIGIN}\n3\n{_B64_ROOT.replace('+', '-')}\n", "malformed", id="url-b64"),
        pytest.param(f"{ORIGIN}\n3\nAAAA\n", "bad_root_length", id="root-3-bytes"),
        pytest.param(f"{ORIGIN}\n3\n", "malformed", id="two-lines"),
        pytest.param(f"{ORIGIN}\n3\n{_B64_ROOT}\nfoo bar\n", "malformed", id="unknown-ext"),
        pytest.param(f"{ORIGIN}\n3\n{_B64_ROOT}\ntimestamp_ms 01\n", "malformed", id="ts-zero"),
        pytest.param(f"{ORIGIN}\n3\n{_B64_ROOT}\ntimestamp_ms 1 \n", "malformed", id="ts-space"),
        pytest.param(f"{ORIGIN}\n3\n{_B64_ROOT}\ntimestamp_ms\n", "malformed", id="ts-bare"),
        pytest.param(f"{ORIGIN}\n3\n{_B64_ROOT}\ntimestamp_ms 1\nx\n", "malformed", id="5-lines"),
        pytest.param(f"{ORIGIN}\n3\n\n{_B64_ROOT}\n", "malformed", id="empty-line"),
    ],
)
def test_malformed_bodies_are_rejected_even_when_signed(body: str, reason: str) -> None:
    note = f"{body}\n{_signature_line(ORIGIN, KEY, body)}"
    assert _reason(note) == reason
    with pytest.raises(CheckpointError):
        parse_signed_checkpoint(note)


_BODY = CHECKPOINT.body().decode()
_SIG = _signature_line(ORIGIN, KEY, _BODY)


@pytest.mark.parametrize(
    "note",
    [
        pytest.param(_BODY, id="no-signatures"),
        pytest.param(f"{_BODY}\n", id="blank-line-but-no-signatures"),
        pytest.param(f"{_BODY}{_SIG}", id="no-blank-line"),
        pytest.param(f"{_BODY}\n{_SIG[:-1]}", id="no-final-newline"),
        pytest.param(f"{_BODY}\n{_SIG[:-1]} \n", id="signature-trailing-space"),
        pytest.param(f"{_BODY}\n{_SIG.replace('— ', '-- ')}", id="ascii-dash"),
        pytest.param(f"{_BODY}\n{_SIG.replace('— ', '—  ')}", id="two-spaces"),
        pytest.param(f"{_BODY}\n{_SIG[:-2]}\n", id="signature-truncated"),
        pytest.param(f"{_BODY}\n{_SIG.replace(ORIGIN, ORIGIN + '+x')}", id="plus-in-key-name"),
        pytest.param(f"{_BODY}\n— {ORIGIN} AAAA\n", id="signature-too-short"),
        pytest.param(f"{_BODY}\n{_SIG}\n", id="empty-signature-line"),
        pytest.param(_BODY.replace("\n", "\r\n") + "\r\n" + _SIG, id="crlf"),
        pytest.param(f"{_BODY}\n{_SIG * 101}", id="too-many-signatures"),
    ],
)
def test_malformed_notes_are_rejected(note: str) -> None:
    assert _reason(note) == "malformed"
    with pytest.raises(CheckpointError):
        parse_note(note)


def test_non_utf8_notes_are_rejected() -> None:
    note = sign_checkpoint(CHECKPOINT, ORIGIN, KEY).encode()
    assert _reason(note.replace(b"\xe2\x80\x94", b"\xe2\x80")) == "malformed"
    assert _reason("\udc80" + note.decode()) == "malformed"


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        pytest.param({"root_hash": ROOT[:31]}, "bad_root_length", id="short-root"),
        pytest.param({"size": -1}, "malformed", id="negative-size"),
        pytest.param({"size": 2**64}, "malformed", id="huge-size"),
        pytest.param({"origin": ""}, "malformed", id="empty-origin"),
        pytest.param({"origin": "a b"}, "malformed", id="space-in-origin"),
        pytest.param({"origin": "a\nb"}, "malformed", id="newline-in-origin"),
        pytest.param({"timestamp_ms": -5}, "malformed", id="negative-timestamp"),
    ],
)
def test_checkpoint_rejects_values_it_cannot_write(kwargs: dict[str, object], reason: str) -> None:
    fields: dict[str, object] = {"origin": ORIGIN, "size": 3, "root_hash": ROOT}
    fields.update(kwargs)
    with pytest.raises(CheckpointError) as caught:
        Checkpoint(**fields)  # type: ignore[arg-type]
    assert caught.value.reason == reason


def test_sign_note_refuses_text_it_could_not_verify() -> None:
    with pytest.raises(CheckpointError):
        sign_note("no final newline", ORIGIN, KEY)
    with pytest.raises(CheckpointError):
        sign_note("tab\there\n", ORIGIN, KEY)
    with pytest.raises(CheckpointError):
        sign_note("fine\n", "bad name", KEY)


# --- property --------------------------------------------------------------------------------

_name_chars = st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zs", "Zl", "Zp"))
origins = st.text(_name_chars, min_size=1, max_size=40).filter(
    lambda s: not any(ch.isspace() for ch in s)
)
key_names = origins.filter(lambda s: "+" not in s)


@settings(max_examples=100, deadline=None)
@given(
    origin=origins,
    key_name=key_names,
    size=st.integers(0, 2**64 - 1),
    root=st.binary(min_size=32, max_size=32),
    timestamp_ms=st.none() | st.integers(0, 2**64 - 1),
)
def test_any_checkpoint_round_trips(
    origin: str, key_name: str, size: int, root: bytes, timestamp_ms: int | None
) -> None:
    checkpoint = Checkpoint(origin=origin, size=size, root_hash=root, timestamp_ms=timestamp_ms)
    note = sign_checkpoint(checkpoint, key_name, KEY)
    assert verify_signed_checkpoint(note, key_name, KEY.public_key()) == checkpoint
    assert Checkpoint.from_body(checkpoint.body()) == checkpoint
    parsed, signatures = parse_signed_checkpoint(note)
    assert parsed == checkpoint
    assert [s.key_name for s in signatures] == [key_name]
    with pytest.raises(CheckpointError):
        verify_signed_checkpoint(note, key_name, OTHER_KEY.public_key())
