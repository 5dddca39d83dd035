"""What bench/router.py sends and measures: its sizes, the plan of a run, the signed messages the
pipes move, and what one pipe's run measured."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from aiokafka.structs import ConsumerRecord

from bus.models.criminal import CriminalReceipt
from bus.party import Party

try:  # realistic transfers, written alongside this bench; without them: --message receipt
    from bus.samples import sample_envelope, sample_payload
except ImportError:
    sample_envelope = sample_payload = None  # type: ignore[assignment]

__all__ = [
    "BUREAU",
    "LOAD_RATE",
    "MAX_BATCH",
    "PARTITIONS",
    "POLICE",
    "Message",
    "Plan",
    "Result",
    "sender_and_recipient",
    "signed_messages",
]

PARTITIONS = 6
MAX_BATCH = 500  # the router's default batch, Settings.router_max_batch
LOAD_RATE = 500  # msgs/s offered in the latency runs
BUREAU = "ygh.enforcement.bureau"
POLICE = "ygh.police.bureau"
_PAYLOADS = 97  # distinct payloads (so case ids, so partitions) the messages cycle through


@dataclass(frozen=True, slots=True)
class Plan:
    messages: int
    load_s: float  # seconds of offered load in the latency runs
    message: Literal["transfer", "receipt"]
    routers: int = 1  # router replicas in one consumer group
    crypto: Literal["ed25519", "sm2"] = "ed25519"  # the crypto profile of every key in the run

    @property
    def floor_name(self) -> str:
        return "SM2 floor" if self.crypto == "sm2" else "Ed25519 floor"


@dataclass(frozen=True, slots=True)
class Message:
    message_id: bytes  # the ce_id header: how the reader matches an arrival to its send
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


@dataclass(slots=True)
class Result:
    name: str
    delivered: int = 0
    rate: float = 0.0
    launch_to_first_s: float = 0.0
    rss_kib: int = 0
    cpu: float = 0.0  # the pipe's CPU seconds per second while it drained the loaded topic
    cpu_at_load: float = 0.0  # the same during the latency run
    cpu_per_message: float = 0.0  # the pipe's CPU seconds per delivered message, same window
    latencies: list[float] = field(default_factory=list)
    offered: int = 0
    note: str = ""


def _payloads(plan: Plan, rng: random.Random) -> Iterator[object]:
    """Payloads to cycle through: sampled transfers, or receipts with a long note."""
    if plan.message == "transfer":
        assert sample_payload is not None
        while True:
            yield sample_payload("criminal.transfer", rng)
    note = "移送材料已逐页核对，涉案物品与清单一致，" * 11
    n = 0
    while True:
        n += 1
        yield CriminalReceipt(
            transfer_letter_no=f"阳城执移〔2026〕第{n:04d}号",
            received_at=datetime(2026, 3, 3, 2, 0, tzinfo=UTC),
            receiver="昆明市公安局阳宗海风景名胜区分局法制大队",
            signed_by="李某某",
            receipt_no=f"阳公回〔2026〕{n:04d}号",
            note=note,
        )


def signed_messages(plan: Plan, party: Party, count: int, seed: int) -> list[Message]:
    """``count`` signed envelopes with fresh message ids, the sender's Kafka records."""
    rng = random.Random(seed)
    source = _payloads(plan, rng)
    payloads = [next(source) for _ in range(_PAYLOADS)]
    out = []
    for i in range(count):
        payload = payloads[i % len(payloads)]
        if plan.message == "transfer":
            assert sample_envelope is not None
            env = sample_envelope(party, "criminal.transfer", rng, payload=payload)  # type: ignore[arg-type]
        else:
            env = party.envelope(
                payload,  # type: ignore[arg-type]
                recipients=[BUREAU],
                case_id=f"YGH-2026-{i % _PAYLOADS:04d}",
                message_id=uuid.UUID(int=rng.getrandbits(128), version=4),
            )
        headers = party.codec.cloudevents_headers(env)
        out.append(
            Message(str(env.message_id).encode(), env.case_id.encode(), party.value(env), headers)
        )
    return out


def sender_and_recipient(plan: Plan) -> tuple[str, str]:
    return (BUREAU, POLICE) if plan.message == "transfer" else (POLICE, BUREAU)


def submitted_record(
    message: Message, *, topic: str, partition: int, offset: int, timestamp_ms: int
) -> ConsumerRecord[bytes, bytes]:
    """``message`` as the router's consumer would hand it over, read from ``topic``: for the
    benches that run the router's classifier in process (the floor, the instruction count)."""
    return ConsumerRecord(
        topic=topic,
        partition=partition,
        offset=offset,
        timestamp=timestamp_ms,
        timestamp_type=0,
        key=message.key,
        value=message.value,
        checksum=None,
        serialized_key_size=len(message.key),
        serialized_value_size=len(message.value),
        headers=message.headers,
    )
