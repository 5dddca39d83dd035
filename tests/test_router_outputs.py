"""The router's receipts are written from plain records, not models (bus.router.outputs): the
same bytes as the models and bus.signing.sign_and_encode give, a signature that verifies, and
the headers of the envelope they encode. No Kafka, no PostgreSQL.
"""

from __future__ import annotations

import dataclasses
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiokafka.structs import ConsumerRecord
from buskit import receipt_payload
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from plankit import run
from pydantic import ValidationError

from bus.codec import _rfc3339_millis, default_codec
from bus.models import Envelope, Signature
from bus.models.bus_kinds import BusDelivered
from bus.party import make_party
from bus.router.outputs import BUS_AGENCY, Outputs, _id, _id_text
from bus.router.verdict import Accepted
from bus.settings import Settings
from bus.signing import (
    Ed25519Signer,
    InMemoryKeyStore,
    PublicKeyRecord,
    sign_and_encode,
    verify_envelope,
    write_keypair,
)

_keys = tempfile.TemporaryDirectory(prefix="test-router-outputs-")
SETTINGS = Settings(topic_prefix="t")
SIGNER = Ed25519Signer.from_file(
    write_keypair("casebus", Path(_keys.name) / "bus").private_key, agency_id="casebus"
)
OUTPUTS = Outputs(SETTINGS, signer=SIGNER, codec=default_codec())
AGENCIES = (
    "ygh.police.bureau",
    "ygh.enforcement.bureau",
    "ygh.procuratorate",
    "casebus.sla",
)
SENDERS = {a: make_party(a, Path(_keys.name) / a) for a in AGENCIES[:2]}
CODEC = default_codec()

identifiers = st.text(
    alphabet=st.sampled_from("YGH-2026阳城执移〔〕第号 _/.0123456789abcXYZ"),
    min_size=1,
    max_size=40,
)


def _accepted(
    sender: str,
    case_id: str,
    correlation_id: str,
    deliver_to: list[str],
    timestamp_ms: int,
) -> Accepted:
    party = SENDERS[sender]
    try:
        env = party.envelope(
            receipt_payload(),
            recipients=[a for a in AGENCIES[:2] if a != sender],
            case_id=case_id,
            correlation_id=correlation_id,
        )
    except ValidationError:
        assume(False)
        raise
    value = party.value(env)
    record = ConsumerRecord("t.submit", 0, 7, timestamp_ms, 0, b"k", value, None, 1, len(value), [])
    return Accepted(
        record=record,
        value=value,
        value_sha256=b"\x00" * 32,
        envelope=env,
        deliver_to=tuple(deliver_to),
        reply_to=sender,
    )


def _through_the_models(v: Accepted, message_id: uuid.UUID, audit_index: int) -> bytes:
    """The receipt as the router wrote it before: validated models, sign_and_encode."""
    env = v.envelope
    payload = BusDelivered(
        original_message_id=env.message_id,
        original_kind=env.kind,
        recipients=list(v.deliver_to),
        audit_index=audit_index,
        delivered_at=v.received_at,
    )
    unsigned = Envelope(
        message_id=message_id,
        kind=payload.KIND,
        schema_version=payload.SCHEMA_VERSION,
        sender=BUS_AGENCY,
        recipients=[env.sender],
        case_id=env.case_id,
        correlation_id=env.correlation_id,
        causation_id=str(env.message_id),
        sent_at=v.received_at,
        payload=CODEC.encode_payload(payload.KIND, payload),
        signature=Signature(algorithm=SIGNER.algorithm, key_id=SIGNER.key_id, value=b""),
    )
    return sign_and_encode(unsigned, SIGNER, codec=CODEC)[1]


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    sender=st.sampled_from(AGENCIES[:2]),
    case_id=identifiers,
    correlation_id=identifiers,
    deliver_to=st.lists(st.sampled_from(AGENCIES), min_size=1, max_size=4, unique=True),
    # Any millisecond from 1970 to 9999, where float division could land between microseconds.
    timestamp_ms=st.integers(0, 253_402_300_799_999),
    audit_index=st.integers(0, 2**63 - 1),
)
def test_a_receipt_is_the_bytes_the_models_give_signed_verifiably(
    sender: str,
    case_id: str,
    correlation_id: str,
    deliver_to: list[str],
    timestamp_ms: int,
    audit_index: int,
) -> None:
    v = _accepted(sender, case_id, correlation_id, deliver_to, timestamp_ms)
    record, value, headers = OUTPUTS.receipt(v, audit_index=audit_index)
    receipt = CODEC.decode_envelope(value)
    assert value == _through_the_models(v, receipt.message_id, audit_index)
    assert headers == CODEC.cloudevents_headers(receipt)
    key = run(verify_envelope(receipt, InMemoryKeyStore([_bus_key()]), codec=CODEC, value=value))
    assert key.key_id == SIGNER.key_id
    _, _, payload = CODEC.decode_payload_model(receipt.payload, kind="bus.delivered")
    assert payload == BusDelivered(
        original_message_id=v.envelope.message_id,
        original_kind=v.envelope.kind,
        recipients=deliver_to,
        audit_index=audit_index,
        delivered_at=datetime.fromtimestamp(timestamp_ms / 1000, tz=UTC),
    )
    assert (record.event_kind, record.message_id) == ("delivered", v.envelope.message_id)
    # The same submission gets the same receipt: a re-run produces it byte for byte.
    assert OUTPUTS.receipt(v, audit_index=audit_index)[1] == value


def test_a_receipt_to_nobody_is_refused() -> None:
    v = _accepted("ygh.police.bureau", "YGH-1", "YGH-1", ["ygh.enforcement.bureau"], 0)
    with pytest.raises(ValueError, match="at least one recipient"):
        OUTPUTS.receipt(dataclasses.replace(v, deliver_to=()), audit_index=0)


def test_the_receipt_sent_without_headers_at_hand_gets_its_own() -> None:
    v = _accepted("ygh.police.bureau", "YGH-1", "YGH-1", ["ygh.enforcement.bureau"], 0)
    _, value, headers = OUTPUTS.receipt(v, audit_index=3)
    assert OUTPUTS.receipt_send(v, value).headers == headers
    assert OUTPUTS.receipt_send(v, value, headers).topic == SETTINGS.topic_inbox(v.envelope.sender)


def test_a_signals_receipt_is_made_for_the_log_but_gets_no_headers() -> None:
    """A ``bus.ack``'s receipt is never sent (SIGNAL_KINDS), so no Kafka headers are made for it;
    the receipt itself is made and signed as any other, for the ack's ``delivered`` leaf."""
    v = _accepted("ygh.police.bureau", "YGH-1", "YGH-1", ["ygh.enforcement.bureau"], 0)
    ack = dataclasses.replace(v, envelope=v.envelope.model_copy(update={"kind": "bus.ack"}))
    _, value, headers = OUTPUTS.receipt(ack, audit_index=3)
    assert headers is None
    receipt = CODEC.decode_envelope(value)
    assert run(verify_envelope(receipt, InMemoryKeyStore([_bus_key()]), codec=CODEC, value=value))
    _, _, payload = CODEC.decode_payload_model(receipt.payload, kind="bus.delivered")
    assert payload.original_kind == "bus.ack"  # type: ignore[attr-defined]
    assert OUTPUTS.receipt(v, audit_index=3)[2] is not None


def _bus_key() -> PublicKeyRecord:
    return PublicKeyRecord(
        key_id=SIGNER.key_id,
        agency_id="casebus",
        algorithm=SIGNER.algorithm,
        public_key=SIGNER.public_key,
        valid_from=datetime(1970, 1, 1, tzinfo=UTC),
    )


@settings(max_examples=500, deadline=None, derandomize=True)
@given(st.datetimes(timezones=st.timezones()))
def test_the_cloudevents_time_is_what_strftime_wrote(at: datetime) -> None:
    # ce_time of every receipt; written without strftime since issue #18.
    try:
        utc = at.astimezone(UTC)
    except OverflowError:
        assume(False)
        raise
    want = utc.strftime("%Y-%m-%dT%H:%M:%S") + f".{utc.microsecond // 1000:03d}Z"
    assert _rfc3339_millis(at) == want


@given(purpose=st.sampled_from(["delivered", "nack", "reject"]), ref=st.text(max_size=80))
def test_a_receipt_id_written_out_is_the_uuid5_of_its_name(purpose: str, ref: str) -> None:
    assert _id_text(purpose, ref) == str(_id(purpose, ref))
    assert uuid.UUID(_id_text(purpose, ref)).version == 5
