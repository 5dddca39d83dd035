"""Our Kafka records are CloudEvents (Kafka protocol binding, binary mode) to the official SDK."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from cloudevents.core.bindings import kafka as core_kafka
from cloudevents.core.formats.json import JSONFormat
from cloudevents.v1 import kafka as v1_kafka

from bus.codec import (
    CONTENT_TYPE,
    Codec,
    cloudevents_headers,
    decode_envelope,
    encode_envelope,
    encode_payload,
    kafka_key,
)
from bus.models import PAYLOAD_MODELS, Envelope, Signature

SENT_AT = [
    datetime(2025, 5, 4, 3, 2, 1, 7000, tzinfo=UTC),
    datetime(2025, 12, 31, 23, 59, 59, tzinfo=UTC),  # whole second: still .000
    # Given in Beijing time: the header is UTC.
    datetime(2025, 1, 1, 8, 0, 0, 999000, tzinfo=timezone(timedelta(hours=8))),
]


def _envelope(sent_at: datetime) -> Envelope:
    ack = PAYLOAD_MODELS["bus.ack"].model_validate(
        {
            "original_message_id": uuid.uuid4(),
            "acknowledged_by": "ygh.police.city",
            "acknowledged_at": sent_at,
        }
    )
    return Envelope(
        message_id=uuid.UUID("1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"),
        kind="bus.ack",
        schema_version=1,
        sender="ygh.police.city",
        recipients=["ygh.enforcement.city"],
        case_id="穗执〔2025〕88号",
        correlation_id="thread-1",
        sent_at=sent_at,
        payload=encode_payload("bus.ack", ack),
        signature=Signature(algorithm="ed25519", key_id="ygh.police.city:00", value=b"s" * 64),
    )


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_headers_are_the_binary_mode_attributes_in_order() -> None:
    env = _envelope(SENT_AT[0])
    assert cloudevents_headers(env) == [
        ("ce_specversion", b"1.0"),
        ("ce_id", b"1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"),
        ("ce_source", b"ygh.police.city"),
        ("ce_type", b"bus.ack"),
        ("ce_time", b"2025-05-04T03:02:01.007Z"),
        ("ce_subject", "穗执〔2025〕88号".encode()),
        ("content-type", b"application/avro"),
    ]
    assert kafka_key(env) == "穗执〔2025〕88号".encode()
    assert Codec.cloudevents_headers(env) == cloudevents_headers(env)
    assert Codec.kafka_key(env) == kafka_key(env)


@pytest.mark.parametrize("sent_at", SENT_AT, ids=["ms", "whole-second", "beijing-time"])
def test_sdk_v1_kafka_binding_reads_our_record(sent_at: datetime) -> None:
    env = _envelope(sent_at)
    value = encode_envelope(env)
    message = v1_kafka.KafkaMessage(
        headers=dict(cloudevents_headers(env)), key=kafka_key(env), value=value
    )
    event = v1_kafka.from_binary(message, data_unmarshaller=lambda data: data)
    assert event["specversion"] == "1.0"
    assert event["id"] == str(env.message_id)
    assert event["source"] == env.sender
    assert event["type"] == env.kind
    assert event["subject"] == env.case_id
    assert event["time"] == _rfc3339(sent_at)
    assert datetime.fromisoformat(event["time"]) == sent_at
    assert event["datacontenttype"] == CONTENT_TYPE
    assert event["partitionkey"] == kafka_key(env)
    assert decode_envelope(event.get_data()) == env


@pytest.mark.parametrize("sent_at", SENT_AT, ids=["ms", "whole-second", "beijing-time"])
def test_sdk_core_kafka_binding_reads_our_record(sent_at: datetime) -> None:
    env = _envelope(sent_at)
    value = encode_envelope(env)
    message = core_kafka.KafkaMessage(
        headers=dict(cloudevents_headers(env)), key=kafka_key(env), value=value
    )
    event = core_kafka.from_binary(message, JSONFormat())
    assert event.get_specversion() == "1.0"
    assert event.get_id() == str(env.message_id)
    assert event.get_source() == env.sender
    assert event.get_type() == env.kind
    assert event.get_subject() == env.case_id
    assert event.get_time() == sent_at
    assert event.get_datacontenttype() == CONTENT_TYPE
    assert event.get_extension("partitionkey") == env.case_id
    # Avro bytes never parse as UTF-8 (C3 01 is an invalid sequence), so the SDK keeps them raw.
    data = event.get_data()
    assert isinstance(data, bytes)
    assert decode_envelope(data) == env
