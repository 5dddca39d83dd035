"""How much the casebus codec and signatures cost next to bare fastavro, on one typical message,
and what the 国密 profile (SM2 with SM3) costs next to Ed25519 on the same envelope.

Run: ``.venv/bin/python bench/codec.py`` (about 40 s). The message is a ~1 KB
``criminal.transfer`` envelope: two parties, two documents and attachments, Chinese text. Each row
runs for a fixed wall-clock budget and reports operations per second; the ratio column compares
each row with the raw fastavro ``schemaless_writer`` (encode rows) or ``schemaless_reader``
(decode rows) on the same payload record, measured in the same run.

The second table signs and verifies that envelope with both profiles: the signature alone over
its signing input, and the whole ``sign_envelope + encode`` / ``decode + verify_envelope`` path.
Ed25519 and SM2 are measured in alternation, several short rounds, so a neighbour's load falls on
both alike; the ratio SM2 verify / Ed25519 verify is the median of the rounds' ratios (with their
range), against the 4x target. For reference it also prints ``openssl speed sm2 ed25519``'s C-level
ratio when the CLI is there. The load average is printed before and after: the machine is shared.
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import shutil
import ssl
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import fastavro
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from bus import sm2
from bus.codec import Codec
from bus.models import Envelope, Signature
from bus.models.criminal import CriminalTransfer
from bus.signing import (
    SM2_SM3,
    Ed25519Signer,
    InMemoryKeyStore,
    PublicKeyRecord,
    Signer,
    Sm2Signer,
    canonical_bytes,
    generate_keypair,
    sign_envelope,
    verify_envelope,
)

__all__ = ["main"]

BUDGET_S = 1.2
ROUND_S = 0.4
ROUNDS = 5
SM2_VERIFY_TARGET = 4.0
SENDER = "gz.enforcement.market"


def _transfer() -> CriminalTransfer:
    sha = [f"{i:x}" * 64 for i in range(1, 3)]
    return CriminalTransfer.model_validate(
        {
            "transfer_letter_no": "穗市监移〔2025〕17号",
            "case_id": "穗市监罚〔2025〕1234号",
            "case_name": "某某食品有限公司生产销售不符合安全标准的食品案",
            "suspected_offence": "生产、销售不符合安全标准的食品罪",
            "criminal_law_articles": ["第一百四十三条"],
            "parties": [
                {
                    "name": "某某食品有限公司",
                    "role": "SUSPECT_ORGANISATION",
                    "id_type": "UNIFIED_SOCIAL_CREDIT_CODE",
                    "id_number": "91440101MA5XXXXXXX",
                    "address": "广州市天河区某某路1号",
                },
                {
                    "name": "张三",
                    "role": "LEGAL_REPRESENTATIVE",
                    "id_type": "RESIDENT_ID_CARD",
                    "id_number": "440101198001010000",
                },
            ],
            "facts_summary": "经查，当事人于2024年3月至2025年1月间生产销售菌落总数超标的糕点，"
            "涉案货值约人民币十二万元，经抽检不合格，涉嫌构成犯罪。",
            "amount_involved_fen": 12_000_000,
            "approval": {
                "approver": "王五",
                "approver_position": "局长",
                "approved_at": datetime(2025, 3, 1, 2, 0, tzinfo=UTC),
            },
            "documents": [
                {
                    "document_type": kind,
                    "title": title,
                    "attachment_name": f"{title}.pdf",
                    "attachment_sha256": sha[i],
                }
                for i, (kind, title) in enumerate(
                    [
                        ("TRANSFER_LETTER", "涉嫌犯罪案件移送书"),
                        ("INVESTIGATION_REPORT", "涉嫌犯罪案件情况调查报告"),
                    ]
                )
            ],
            "contact_name": "赵六",
            "contact_phone": "020-12345678",
        }
    )


def _envelope(codec: Codec, transfer: CriminalTransfer) -> Envelope:
    return Envelope(
        message_id=uuid.uuid4(),
        kind="criminal.transfer",
        schema_version=codec.index.latest_version("criminal.transfer"),
        sender=SENDER,
        recipients=["gz.police.city", "gz.procuratorate.city"],
        case_id=transfer.case_id,
        correlation_id=str(uuid.uuid4()),
        sent_at=datetime.now(UTC),
        payload=codec.encode_payload("criminal.transfer", transfer),
        attachments=[
            {
                "name": d.attachment_name,
                "media_type": "application/pdf",
                "size_bytes": 250_000 + i,
                "sha256": d.attachment_sha256,
                "uri": f"https://files.gz.example/case/17/{i}",
            }
            for i, d in enumerate(transfer.documents)
        ],
        signature=Signature(algorithm="ed25519", key_id="unsigned", value=b""),
    )


def _rate(op: Callable[[], object], budget: float = BUDGET_S) -> float:
    for _ in range(50):  # warm caches
        op()
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < budget:
        for _ in range(100):
            op()
        n += 100
    return n / elapsed


async def _arate(op: Callable[[], Awaitable[object]], budget: float = BUDGET_S) -> float:
    for _ in range(50):
        await op()
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < budget:
        for _ in range(100):
            await op()
        n += 100
    return n / elapsed


async def _measure() -> None:
    codec = Codec()
    transfer = _transfer()
    private_pem, public_pem, _ = generate_keypair(SENDER)
    signer = Ed25519Signer.from_pem(private_pem, agency_id=SENDER)
    store = InMemoryKeyStore(
        [
            PublicKeyRecord.from_pem(
                public_pem, agency_id=SENDER, valid_from=datetime(2025, 1, 1, tzinfo=UTC)
            )
        ]
    )
    envelope = _envelope(codec, transfer)
    value = codec.encode_envelope(sign_envelope(envelope, signer))
    entry = codec.index.get("criminal.transfer")
    record = transfer.to_avro()
    body = io.BytesIO()
    fastavro.schemaless_writer(body, entry.schema, record)
    raw = body.getvalue()
    env_schema = codec.index.envelope.schema
    env_record = sign_envelope(envelope, signer).to_avro()
    env_raw = value[10:]

    def raw_write() -> bytes:
        out = io.BytesIO()
        fastavro.schemaless_writer(out, entry.schema, record)
        return out.getvalue()

    def encode_sign() -> bytes:
        return codec.encode_envelope(sign_envelope(envelope, signer, codec=codec))

    async def decode_verify() -> object:
        received = codec.decode_envelope(value)
        return await verify_envelope(received, store, codec=codec)

    async def decode_verify_payload() -> object:
        received = codec.decode_envelope(value)
        await verify_envelope(received, store, codec=codec)
        return codec.decode_payload_model(received.payload, kind=received.kind)

    w = _rate(raw_write)
    r = _rate(lambda: fastavro.schemaless_reader(io.BytesIO(raw), entry.schema))
    rows: list[tuple[str, float, float]] = [
        ("fastavro schemaless_writer (payload record)", w, w),
        (
            "codec.encode_payload (model)",
            _rate(lambda: codec.encode_payload("criminal.transfer", transfer)),
            w,
        ),
        (
            "fastavro schemaless_writer (envelope record)",
            _rate(lambda: fastavro.schemaless_writer(io.BytesIO(), env_schema, env_record)),
            w,
        ),
        ("codec.encode_envelope (no signing)", _rate(lambda: codec.encode_envelope(envelope)), w),
        ("sign_envelope + encode_envelope", _rate(encode_sign), w),
        ("fastavro schemaless_reader (payload record)", r, r),
        ("codec.decode_payload", _rate(lambda: codec.decode_payload(envelope.payload)), r),
        (
            "fastavro schemaless_reader (envelope record)",
            _rate(lambda: fastavro.schemaless_reader(io.BytesIO(env_raw), env_schema)),
            r,
        ),
        ("codec.decode_envelope (no verify)", _rate(lambda: codec.decode_envelope(value)), r),
        ("decode_envelope + verify_envelope", await _arate(decode_verify), r),
        ("... + decode_payload_model", await _arate(decode_verify_payload), r),
    ]
    print(
        f"criminal.transfer envelope: {len(value)} bytes on the wire "
        f"(payload {len(envelope.payload)} bytes); Python {sys.version.split()[0]}, "
        f"fastavro {fastavro.__version__}"
    )
    print(f"{'operation':<46} {'ops/s':>10} {'µs/op':>9} {'× fastavro':>11}")
    print("-" * 79)
    for name, rate, base in rows:
        print(f"{name:<46} {rate:>10,.0f} {1e6 / rate:>9.1f} {base / rate:>10.1f}x")
    print()
    await _profiles(codec, envelope)


def _signers() -> tuple[tuple[str, Signer, InMemoryKeyStore], ...]:
    out = []
    for name, algorithm in (("ed25519", "ed25519"), ("sm2-sm3", SM2_SM3)):
        private_pem, public_pem, _ = generate_keypair(SENDER, algorithm=algorithm)
        signer: Signer = (
            Sm2Signer.from_pem(private_pem, agency_id=SENDER)
            if algorithm == SM2_SM3
            else Ed25519Signer.from_pem(private_pem, agency_id=SENDER)
        )
        record = PublicKeyRecord.from_pem(
            public_pem, agency_id=SENDER, valid_from=datetime(2025, 1, 1, tzinfo=UTC)
        )
        out.append((name, signer, InMemoryKeyStore([record])))
    return tuple(out)


def _verify_op(signer: Signer, data: bytes, signature: bytes) -> Callable[[], bool]:
    """The registry's check of one signature, as verify_envelope makes it (key from raw bytes)."""
    raw: bytes = signer.public_key  # type: ignore[attr-defined]
    if signer.algorithm == SM2_SM3:
        return lambda: sm2.verify(raw, signature, data)

    def ed25519() -> bool:
        Ed25519PublicKey.from_public_bytes(raw).verify(signature, data)
        return True

    return ed25519


async def _profiles(codec: Codec, envelope: Envelope) -> None:
    """Ed25519 and SM2 on the same envelope, alternating in short rounds."""
    names = ("sign", "verify", "sign_envelope + encode", "decode + verify_envelope")
    samples: dict[tuple[str, str], list[float]] = {}
    sizes: dict[str, int] = {}
    profiles = _signers()
    for _ in range(ROUNDS):
        for profile, signer, store in profiles:
            signed = sign_envelope(envelope, signer, codec=codec)
            value = codec.encode_envelope(signed)
            sizes[profile] = len(value)
            data = canonical_bytes(signed, codec=codec)
            signature = signed.signature.value
            verify = _verify_op(signer, data, signature)
            assert verify(), profile

            def encode_sign(s: Signer = signer) -> bytes:
                return codec.encode_envelope(sign_envelope(envelope, s, codec=codec))

            async def decode_verify(v: bytes = value, ks: InMemoryKeyStore = store) -> object:
                return await verify_envelope(codec.decode_envelope(v), ks, codec=codec)

            rates = (
                _rate(lambda s=signer, d=data: s.sign(d), ROUND_S),
                _rate(verify, ROUND_S),
                _rate(encode_sign, ROUND_S),
                await _arate(decode_verify, ROUND_S),
            )
            for name, rate in zip(names, rates, strict=True):
                samples.setdefault((profile, name), []).append(1e6 / rate)
    print(
        f"signature profiles on the same envelope ({sizes['ed25519']} / {sizes['sm2-sm3']} bytes "
        f"signed with ed25519 / sm2-sm3), median µs of {ROUNDS} alternating rounds of "
        f"{ROUND_S} s; {ssl.OPENSSL_VERSION} (as Python's ssl module links it)"
    )
    print(f"{'operation':<28} {'ed25519 µs':>11} {'sm2-sm3 µs':>11} {'sm2 / ed25519':>14}")
    print("-" * 67)
    for name in names:
        ed = statistics.median(samples[("ed25519", name)])
        gm = statistics.median(samples[("sm2-sm3", name)])
        print(f"{name:<28} {ed:>11.1f} {gm:>11.1f} {gm / ed:>13.2f}x")
    ratios = [
        g / e
        for e, g in zip(samples[("ed25519", "verify")], samples[("sm2-sm3", "verify")], strict=True)
    ]
    median = statistics.median(ratios)
    verdict = "met" if median <= SM2_VERIFY_TARGET else "NOT met"
    print(
        f"SM2 verify / Ed25519 verify: {median:.2f}x "
        f"(rounds {min(ratios):.2f}-{max(ratios):.2f}x); "
        f"target <= {SM2_VERIFY_TARGET:.0f}x: {verdict}"
    )
    speed = _openssl_speed()
    if speed is not None:
        (ed_sign, ed_verify), (gm_sign, gm_verify) = speed
        print(
            f"openssl speed (C, 1 s each): ed25519 {ed_sign:,.0f} sign/s "
            f"{ed_verify:,.0f} verify/s, sm2 {gm_sign:,.0f} sign/s {gm_verify:,.0f} verify/s; "
            "SM2 verify / Ed25519 verify "
            f"{ed_verify / gm_verify:.2f}x"
        )


def _openssl_speed() -> tuple[tuple[float, float], tuple[float, float]] | None:
    """``openssl speed``'s sign/s and verify/s for Ed25519 and SM2, or None without the CLI."""
    openssl = shutil.which("openssl")
    if openssl is None:
        return None
    run = subprocess.run(
        [openssl, "speed", "-seconds", "1", "ed25519", "sm2"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    found = []
    for label in (r"EdDSA \(Ed25519\)", r"SM2 \(CurveSM2\)"):
        m = re.search(label + r"\s+\S+s\s+\S+s\s+([\d.]+)\s+([\d.]+)", run.stdout)
        if m is None:
            return None
        found.append((float(m.group(1)), float(m.group(2))))
    return found[0], found[1]


def _load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    """Run the benchmark and print its tables."""
    print(f"before: {_load()}")
    asyncio.run(_measure())
    print(f"after: {_load()}")


if __name__ == "__main__":
    main()
