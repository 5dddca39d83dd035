"""How much the casebus codec and signatures cost next to bare fastavro, on one typical message.

Run: ``.venv/bin/python bench/codec.py`` (about 15 s). The message is a ~1 KB ``criminal.transfer``
envelope: two parties, two documents and attachments, Chinese text. Each row runs for a fixed
wall-clock budget and reports operations per second; the ratio column compares each row with the
raw fastavro ``schemaless_writer`` (encode rows) or ``schemaless_reader`` (decode rows) on the
same payload record, measured in the same run.
"""

from __future__ import annotations

import asyncio
import io
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import fastavro

from bus.codec import Codec
from bus.models import Envelope, Signature
from bus.models.criminal import CriminalTransfer
from bus.signing import (
    Ed25519Signer,
    InMemoryKeyStore,
    PublicKeyRecord,
    generate_keypair,
    sign_envelope,
    verify_envelope,
)

__all__ = ["main"]

BUDGET_S = 1.2
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


def _rate(op: Callable[[], object]) -> float:
    for _ in range(50):  # warm caches
        op()
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < BUDGET_S:
        for _ in range(100):
            op()
        n += 100
    return n / elapsed


async def _arate(op: Callable[[], Awaitable[object]]) -> float:
    for _ in range(50):
        await op()
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < BUDGET_S:
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


def main() -> None:
    """Run the benchmark and print its table."""
    asyncio.run(_measure())


if __name__ == "__main__":
    main()
