"""The witness (c2sp.org/tlog-witness) and its cosignatures (c2sp.org/tlog-cosignature),
without Kafka or PostgreSQL: every answer of add-checkpoint, against both stores, over HTTP
too, and the atomic check-and-persist that keeps two racing requests from rolling it back."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from bus.audit.checkpoint import (
    Checkpoint,
    parse_verifier_key,
    sign_checkpoint,
    verifier_key_string,
)
from bus.audit.cosignature import (
    add_signature_lines,
    cosign,
    cosigner_vkey,
    parse_cosigner_key,
    verify_cosignature,
)
from bus.audit.merkle import consistency_proof, root_hash
from bus.errors import CheckpointError
from bus.witness import (
    ROUTE_ACCESS,
    LogState,
    MemoryWitnessStore,
    SqliteWitnessStore,
    Witness,
    WitnessStore,
    create_app,
    logs_by_origin,
)
from bus.witness.protocol import Answer

ORIGIN = "test.casebus/audit"
LOG_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
WITNESS_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
WITNESS = "ygh.procuratorate/witness"
LEAVES = [b"leaf %d" % i for i in range(50)]
NOW_S = 1_780_000_000


def _raw(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def note_of(size: int, leaves: list[bytes] = LEAVES, key: Ed25519PrivateKey = LOG_KEY) -> str:
    cp = Checkpoint(ORIGIN, size, root_hash(leaves[:size]), 1_700_000_000_000 + size)
    return sign_checkpoint(cp, ORIGIN, key)


def request(old: int, note: str, proof: list[bytes] | None = None) -> bytes:
    lines = "".join(base64.b64encode(p).decode() + "\n" for p in proof or [])
    return f"old {old}\n{lines}\n{note}".encode()


def grow(old: int, new: int, leaves: list[bytes] = LEAVES) -> bytes:
    proof = consistency_proof(leaves[:new], old) if 0 < old < new else []
    return request(old, note_of(new, leaves), proof)


# -- cosignatures ------------------------------------------------------------------------------


def test_a_cosignature_follows_the_spec_byte_for_byte() -> None:
    note = note_of(7)
    body = note.split("\n\n")[0].encode() + b"\n"
    line = cosign(body, WITNESS, WITNESS_KEY, timestamp_s=NOW_S)
    key_id = hashlib.sha256(WITNESS.encode() + b"\n\x04" + _raw(WITNESS_KEY)).digest()[:4]
    blob = base64.b64decode(line.line().split(" ")[2])
    assert line.line().startswith(f"— {WITNESS} ")
    assert blob[:4] == key_id and struct.unpack(">Q", blob[4:12]) == (NOW_S,)
    signed = b"cosignature/v1\ntime %d\n" % NOW_S + body
    WITNESS_KEY.public_key().verify(blob[12:], signed)  # raises if the message differs
    vkey = cosigner_vkey(WITNESS, WITNESS_KEY.public_key())
    assert (
        vkey
        == f"{WITNESS}+{key_id.hex()}+" + base64.b64encode(b"\x04" + _raw(WITNESS_KEY)).decode()
    )
    cosigned = add_signature_lines(note, [line.line()])
    assert verify_cosignature(cosigned, parse_cosigner_key(vkey)).timestamp_s == NOW_S


def test_a_cosignature_on_another_checkpoint_or_by_another_key_does_not_verify() -> None:
    key = parse_cosigner_key(cosigner_vkey(WITNESS, WITNESS_KEY.public_key()))
    line = cosign(note_of(7).split("\n\n")[0].encode() + b"\n", WITNESS, WITNESS_KEY, timestamp_s=1)
    with pytest.raises(CheckpointError) as bad:
        verify_cosignature(add_signature_lines(note_of(8), [line.line()]), key)
    assert bad.value.reason == "bad_signature"
    stranger = parse_cosigner_key(cosigner_vkey(WITNESS, LOG_KEY.public_key()))
    with pytest.raises(CheckpointError) as unknown:
        verify_cosignature(add_signature_lines(note_of(7), [line.line()]), stranger)
    assert unknown.value.reason == "unknown_key"
    # A log's vkey (type 0x01) is not a cosigner's (0x04), and the other way round.
    with pytest.raises(CheckpointError):
        parse_cosigner_key(verifier_key_string(ORIGIN, LOG_KEY.public_key()))
    with pytest.raises(CheckpointError):
        parse_verifier_key(cosigner_vkey(WITNESS, WITNESS_KEY.public_key()))


# -- the witness, over each store --------------------------------------------------------------


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[WitnessStore]:
    if request.param == "memory":
        yield MemoryWitnessStore()
    else:
        yield SqliteWitnessStore(tmp_path / "witness.sqlite")


def make_witness(store: WitnessStore) -> Witness:
    logs = logs_by_origin([parse_verifier_key(verifier_key_string(ORIGIN, LOG_KEY.public_key()))])
    return Witness(
        name=WITNESS, private_key=WITNESS_KEY, logs=logs, store=store, clock_s=lambda: NOW_S
    )


async def test_the_witness_cosigns_a_log_that_grows_consistently(store: WitnessStore) -> None:
    witness = make_witness(store)
    key = parse_cosigner_key(witness.vkey)
    for old, new in ((0, 5), (5, 5), (5, 13), (13, 50)):
        answer = await witness.add_checkpoint(grow(old, new))
        assert answer.status == 200, answer
        assert answer.body.endswith("\n") and answer.body.startswith(f"— {WITNESS} ")
        cosigned = add_signature_lines(note_of(new), answer.body.splitlines())
        assert verify_cosignature(cosigned, key).timestamp_s == NOW_S
    latest = await store.latest(ORIGIN)
    assert latest is not None and (latest.size, latest.root_hash) == (50, root_hash(LEAVES))


async def test_every_refusal_has_the_status_the_spec_gives(store: WitnessStore) -> None:
    witness = make_witness(store)
    assert (await witness.add_checkpoint(grow(0, 13))).status == 200
    rewritten = [*LEAVES[:4], b"rewritten", *LEAVES[5:]]
    forger = Ed25519PrivateKey.generate()
    other_origin = note_of(3).replace(ORIGIN, "other.example/log", 1)
    cases: dict[str, tuple[bytes, int]] = {
        "no blank line": (b"old 0\n", 400),
        "no old line": (b"new 0\n\n" + note_of(13).encode(), 400),
        "leading zero": (request(13, note_of(20)).replace(b"old 13", b"old 013"), 400),
        "proof not base64": (b"old 13\n!!!\n\n" + note_of(20).encode(), 400),
        "64 proof lines": (request(13, note_of(20), [b"\0" * 32] * 64), 400),
        "old above size": (request(20, note_of(13)), 400),
        "not a checkpoint": (b"old 13\n\nhello\n\n", 400),
        "unknown origin": (request(0, other_origin), 404),
        "forged signature": (request(13, note_of(20, key=forger)), 403),
        "stale old size": (grow(5, 20), 409),
        "old size ahead": (request(20, note_of(20)), 409),
        "same size, other root": (request(13, note_of(13, rewritten)), 409),
        "rewritten history": (grow(13, 20, rewritten), 422),
        "proof from zero": (request(0, note_of(20), [b"\0" * 32]), 409),
        "proof for equal sizes": (request(13, note_of(13), [b"\0" * 32]), 422),
        "wrong proof": (request(13, note_of(20), consistency_proof(LEAVES[:21], 13)), 422),
    }
    for what, (body, status) in cases.items():
        answer = await witness.add_checkpoint(body)
        assert answer.status == status, (what, answer)
    conflict = await witness.add_checkpoint(grow(5, 20))
    assert (conflict.body, conflict.content_type) == ("13\n", "text/x.tlog.size")
    latest = await store.latest(ORIGIN)
    assert latest is not None and latest.size == 13 and latest.root_hash == root_hash(LEAVES[:13])


async def test_a_new_witness_tells_a_client_its_size_is_zero(store: WitnessStore) -> None:
    witness = make_witness(store)
    answer = await witness.add_checkpoint(grow(7, 13))
    assert (answer.status, answer.body) == (409, "0\n")
    nonempty = await witness.add_checkpoint(request(0, note_of(13), [bytes(32)]))
    assert nonempty.status == 422
    assert await store.latest(ORIGIN) is None


async def test_racing_requests_from_one_size_get_one_cosignature(tmp_path: Path) -> None:
    # Two witness processes on one file behave as two stores on it; the decision sleeps, so
    # without the write lock both would read size 0 and both would be accepted.
    path = tmp_path / "w.sqlite"
    stores = [SqliteWitnessStore(path) for _ in range(6)]

    def slow(latest: LogState | None) -> Answer | None:
        time.sleep(0.05)
        return None if latest is None else Answer(409, f"{latest.size}\n")

    results = await asyncio.gather(
        *(s.advance(ORIGIN, LogState(10 + i, bytes(32), "n"), slow) for i, s in enumerate(stores))
    )
    assert [r is None for r in results].count(True) == 1, results
    assert await SqliteWitnessStore(path).latest(ORIGIN) is not None


async def test_the_sqlite_store_remembers_across_restarts(tmp_path: Path) -> None:
    path = tmp_path / "w.sqlite"
    assert (await make_witness(SqliteWitnessStore(path)).add_checkpoint(grow(0, 9))).status == 200
    again = make_witness(SqliteWitnessStore(path))
    assert (await again.add_checkpoint(grow(0, 20))).body == "9\n"
    assert (await again.add_checkpoint(grow(9, 20))).status == 200


# -- over HTTP ---------------------------------------------------------------------------------


async def test_the_http_answers_and_every_route_decides_who_may_call_it() -> None:
    app = create_app(make_witness(MemoryWitnessStore()))
    routes = {
        (m, r.path) for r in app.routes for m in getattr(r, "methods", None) or () if m != "HEAD"
    }
    assert routes == set(ROUTE_ACCESS), "a witness route has no access decision"
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://witness") as client:
        first = await client.post("/add-checkpoint", content=grow(0, 8))
        assert first.status_code == 200 and first.text.startswith(f"— {WITNESS} ")
        stale = await client.post("/add-checkpoint", content=grow(0, 9))
        assert stale.status_code == 409 and stale.text == "8\n"
        assert stale.headers["content-type"] == "text/x.tlog.size"
        big = await client.post("/add-checkpoint", content=b"old 0\n" + b"A" * (1 << 21))
        assert big.status_code == 413
        assert (await client.get("/healthz")).status_code == 200
