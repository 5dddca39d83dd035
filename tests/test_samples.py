"""Sample payloads and envelopes: valid for every kind, deterministic, signed, routable.

Pure logic: no Kafka, no database. The samples feed tests, benchmarks and the demo, so a sample
that breaks a model rule, a schema, a signature or the routing policy must fail here first.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from keykit import ALGORITHM, new_signer

from bus.agencies import load_registry, uscc_is_valid
from bus.audit.checkpoint import verify_signed_checkpoint
from bus.codec import decode_envelope, default_codec, encode_envelope, encode_payload
from bus.errors import UnknownOverrideError, ValidationFailedError
from bus.models import (
    KINDS,
    PAYLOAD_MODELS,
    AttachmentRef,
    AuditTreeHead,
    ClueHandover,
    ClueReceipt,
    CourtAcceptance,
    CourtRuling,
    CriminalFilingDecision,
    CriminalReconsiderationDecision,
    CriminalTransfer,
    IdDocumentType,
    OpinionRequest,
    PenaltyFeedback,
    Subject,
    SupervisionNotice,
    TransferDocumentType,
    TransferParty,
    attachment_refs,
    payload_model,
)
from bus.party import Party
from bus.routing import load_policy
from bus.samples import (
    AUDIT_ORIGIN,
    DOCS_BASE_URI,
    SAMPLE_OPTIONS,
    SAMPLE_ROUTES,
    SCENARIOS,
    document_bytes,
    refused_route,
    sample,
    sample_attachments,
    sample_audit_key,
    sample_envelope,
    sample_payload,
)
from bus.settings import REPO_ROOT
from bus.signing import InMemoryKeyStore, canonical_bytes, verify_envelope

REGISTRY = load_registry(REPO_ROOT / "deploy" / "agencies.yaml")
POLICY = load_policy(REPO_ROOT / "deploy" / "routing.yaml", REGISTRY)
AGENCY_IDS = {a.id for a in REGISTRY.agencies}
SEEDS = (0, 1, 7, 42, 2026)
NOW = datetime(2026, 3, 9, 2, 30, tzinfo=UTC)  # 10:30 in Kunming, a Monday
CODEC = default_codec()

_PARTIES: dict[str, Party] = {}


def _party(agency_id: str) -> Party:
    """One signing party per agency for the whole module (key generation is not free)."""
    if agency_id not in _PARTIES:
        _PARTIES[agency_id] = Party(agency_id, new_signer(agency_id))
    return _PARTIES[agency_id]


def _resident_id_ok(number: str) -> bool:
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    total = sum(int(c) * w for c, w in zip(number[:17], weights, strict=True))
    return len(number) == 18 and "10X98765432"[total % 11] == number[17]


# -- every kind, several seeds ---------------------------------------------------------------


def test_every_kind_has_a_sample_route_a_refused_route_and_options() -> None:
    assert set(SAMPLE_ROUTES) == set(KINDS) == set(SAMPLE_OPTIONS)
    for kind in KINDS:
        refused_route(kind)
    with pytest.raises(ValueError):
        refused_route("criminal.unknown")


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("kind", KINDS)
def test_sample_round_trips_through_the_codec_to_an_equal_model(kind: str, seed: int) -> None:
    payload = sample_payload(kind, random.Random(seed))
    assert isinstance(payload, PAYLOAD_MODELS[kind])
    found, version, decoded = CODEC.decode_payload_model(encode_payload(kind, payload), kind=kind)
    assert (found, version) == (kind, PAYLOAD_MODELS[kind].SCHEMA_VERSION)
    assert decoded == payload


@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_gives_the_same_payload_and_other_seeds_differ(kind: str) -> None:
    samples = [sample_payload(kind, random.Random(seed)) for seed in SEEDS]
    assert samples == [sample_payload(kind, random.Random(seed)) for seed in SEEDS]
    assert len({s.model_dump_json() for s in samples}) > 1


@settings(max_examples=60, deadline=None)
@given(kind=st.sampled_from(KINDS), seed=st.integers(min_value=0, max_value=2**64))
def test_any_seed_gives_a_valid_encodable_sample(kind: str, seed: int) -> None:
    payload = sample_payload(kind, random.Random(seed))
    assert CODEC.decode_payload_model(encode_payload(kind, payload))[2] == payload
    attachments = sample_attachments(payload)
    assert {a.name for a in attachments} == {name for _, name, _ in attachment_refs(payload)}


@pytest.mark.parametrize("seed", SEEDS[:3])
@pytest.mark.parametrize("kind", KINDS)
async def test_sample_envelope_is_signed_verifiable_and_carries_every_attachment(
    kind: str, seed: int
) -> None:
    sender, recipients = SAMPLE_ROUTES[kind]
    party = _party(sender)
    envelope = sample_envelope(
        party, kind, random.Random(seed), recipients=recipients, case_id="YGH-2026-0042"
    )
    assert (envelope.kind, envelope.sender, envelope.recipients) == (kind, sender, recipients)
    assert envelope.case_id == "YGH-2026-0042"
    store = InMemoryKeyStore([party.key_record()])
    assert await verify_envelope(envelope, store, at=envelope.sent_at) == party.key_record()
    received = decode_envelope(encode_envelope(envelope))
    assert await verify_envelope(received, store, at=envelope.sent_at) == party.key_record()
    _, _, payload = CODEC.decode_payload_model(received.payload, kind=kind)
    assert received.check_attachment_refs(payload) == []
    for attachment in received.attachments:
        assert attachment.uri.startswith(f"{DOCS_BASE_URI}/sha256/{attachment.sha256}/")
        assert attachment.size_bytes == len(document_bytes(attachment.name))
    if "case_id" in PAYLOAD_MODELS[kind].model_fields:
        assert getattr(payload, "case_id") == "YGH-2026-0042"  # noqa: B009 - field varies by kind


@pytest.mark.parametrize("kind", KINDS)
def test_sample_envelope_is_deterministic_and_carries_the_seeds_payload(kind: str) -> None:
    sender, _ = SAMPLE_ROUTES[kind]
    party = _party(sender)
    first = sample_envelope(party, kind, random.Random(5), now=NOW)
    again = sample_envelope(party, kind, random.Random(5), now=NOW)
    # Every signed byte is the same; SM2's signature value itself is randomised (the sm2 lane).
    assert canonical_bytes(first) == canonical_bytes(again)
    assert first.signature.algorithm == ALGORITHM
    assert first.sent_at == NOW
    # sample_envelope lets the first regulator among sender and recipients pick the violation
    regulators = [a for a in (sender, *SAMPLE_ROUTES[kind][1]) if a.startswith("ygh.regulator.")]
    hints = {"regulator": regulators[0]} if "regulator" in SAMPLE_OPTIONS[kind] else {}
    # ... and names the sender in the fields that say who wrote it (bus.ack, bus.nack)
    hints |= {name: sender for name in payload_model(kind).AUTHOR_FIELDS}
    expected = sample_payload(kind, random.Random(5), now=NOW, **hints)
    assert CODEC.decode_payload_model(first.payload, kind=kind)[2] == expected


# -- routes ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_sample_route_is_allowed_by_the_routing_policy(kind: str) -> None:
    sender, recipients = SAMPLE_ROUTES[kind]
    decision = POLICY.authorize(kind=kind, sender=sender, recipients=recipients)
    assert decision.allowed, decision.problems


@pytest.mark.parametrize("kind", KINDS)
def test_refused_route_is_refused_between_registered_agencies(kind: str) -> None:
    sender, recipients = refused_route(kind)
    assert {sender, *recipients} <= AGENCY_IDS
    decision = POLICY.authorize(kind=kind, sender=sender, recipients=recipients)
    assert not decision.allowed
    assert {p.rule for p in decision.problems} <= {"sender_kind_not_allowed", "unauthorized_route"}


# -- overrides ---------------------------------------------------------------------------------


def test_not_filed_brings_reasons_and_returned_materials() -> None:
    refused = sample(CriminalFilingDecision, random.Random(3), decision="NOT_FILED")
    assert refused.decision == "NOT_FILED"
    assert refused.reasons and refused.returned_materials
    assert refused.criminal_case_no is None
    assert "不立字" in refused.decision_no
    filed = sample(CriminalFilingDecision, random.Random(3), decision="FILED")
    assert filed.criminal_case_no and not filed.reasons and not filed.returned_materials
    assert filed.transfer_letter_no == refused.transfer_letter_no  # unrelated fields stay put


def test_not_filed_with_given_reasons_keeps_them_and_without_any_is_invalid() -> None:
    reasons = ["经审查，没有犯罪事实。"]
    given_reasons = sample(
        CriminalFilingDecision, random.Random(1), decision="NOT_FILED", reasons=reasons
    )
    assert given_reasons.reasons == reasons
    with pytest.raises(ValidationFailedError) as e:
        sample_payload(
            "criminal.filing_decision", random.Random(1), decision="NOT_FILED", reasons=[]
        )
    assert [p.rule for p in e.value.problems] == ["reasons_required"]


@pytest.mark.parametrize("seed", SEEDS)
def test_suspected_crime_flags_one_fine_for_a_violation_that_names_an_offence(seed: int) -> None:
    report = sample(PenaltyFeedback, random.Random(seed), suspected_crime=True, decision_count=3)
    assert len(report.decisions) == 3
    flagged = report.suspected_crimes()
    assert flagged == [report.decisions[0]]
    assert flagged[0].penalty_type == "FINE" and flagged[0].amount_fen > 0
    offences = {s.penalty_basis for s in SCENARIOS.values() if s.offence}
    assert flagged[0].legal_basis in offences
    for decision in report.decisions:
        assert report.period_start <= decision.decided_on <= report.period_end
    assert not sample(PenaltyFeedback, random.Random(seed)).suspected_crimes()


def test_opinion_request_due_at_is_the_payloads_and_the_envelopes_deadline() -> None:
    due = NOW + timedelta(days=10)
    request = sample(OpinionRequest, random.Random(2), now=NOW, due_at=due)
    assert request.due_at == due
    assert sample(OpinionRequest, random.Random(2), due_at=None).due_at is None
    bureau, _ = SAMPLE_ROUTES["opinion.request"]
    envelope = sample_envelope(
        _party(bureau), "opinion.request", random.Random(2), now=NOW, due_at=due
    )
    assert envelope.due_at == due
    default = sample(OpinionRequest, random.Random(2), now=NOW)
    assert default.due_at is not None and default.due_at > NOW


def test_court_acceptance_with_hearing_required_and_refusal_with_reasons() -> None:
    heard = sample(CourtAcceptance, random.Random(4), decision="ACCEPTED", hearing_required=True)
    assert heard.hearing_required and heard.court_case_no
    refused = sample(CourtAcceptance, random.Random(4), decision="NOT_ACCEPTED")
    assert refused.reasons and refused.court_case_no is None and not refused.hearing_required


def test_other_refusals_state_their_reasons() -> None:
    rejected = sample(ClueReceipt, random.Random(1), decision="REJECTED")
    assert rejected.reason and rejected.enforcement_case_id is None
    kept = sample(CriminalReconsiderationDecision, random.Random(1), decision="MAINTAIN_REFUSAL")
    assert kept.reasons and kept.criminal_case_no is None
    reversed_ = sample(CriminalReconsiderationDecision, random.Random(1), decision="FILE_CASE")
    assert reversed_.criminal_case_no and not reversed_.reasons
    not_executed = sample(CourtRuling, random.Random(1), ruling="NOT_EXECUTE")
    assert not_executed.reasons
    assert not sample(CourtRuling, random.Random(1), ruling="EXECUTE").reasons


def test_supervision_notice_type_sets_content_and_period() -> None:
    explain = sample(SupervisionNotice, random.Random(6), now=NOW, notice_type="EXPLAIN_REFUSAL")
    file_case = sample(SupervisionNotice, random.Random(6), now=NOW, notice_type="FILE_CASE")
    assert "说明不立案的理由" in explain.content and "通知你局立案" in file_case.content
    assert explain.transfer_letter_no in explain.content
    assert (file_case.due_at - explain.due_at) == timedelta(days=8)


def test_transfer_scenario_and_omitted_documents() -> None:
    transfer = sample(CriminalTransfer, random.Random(8), scenario="sewage_discharge")
    assert transfer.suspected_offence == "污染环境罪"
    assert transfer.missing_mandatory_documents() == []
    lacking = sample(
        CriminalTransfer,
        random.Random(8),
        omit_documents=[TransferDocumentType.SEIZED_ITEMS_LIST, "INSPECTION_OR_APPRAISAL_REPORT"],
    )
    assert lacking.missing_mandatory_documents() == [
        TransferDocumentType.SEIZED_ITEMS_LIST,
        TransferDocumentType.INSPECTION_OR_APPRAISAL_REPORT,
    ]
    with pytest.raises(ValidationFailedError) as e:
        sample_payload("criminal.transfer", random.Random(8), omit_documents=["TRANSFER_LETTER"])
    assert [p.rule for p in e.value.problems] == ["transfer_letter_missing"]
    with pytest.raises(ValueError, match="names no offence"):
        sample_payload("criminal.transfer", random.Random(8), scenario="unlicensed_food_stall")


def test_unknown_override_is_refused_naming_what_is_allowed() -> None:
    with pytest.raises(UnknownOverrideError, match="decison"):
        sample_payload("criminal.filing_decision", random.Random(0), decison="NOT_FILED")
    with pytest.raises(ValueError, match="unknown regulator"):
        sample_payload("clue.handover", random.Random(0), regulator="ygh.police.bureau")
    with pytest.raises(ValueError, match="time-zone aware"):
        sample_payload("bus.ack", random.Random(0), now=datetime(2026, 3, 9, 10, 30))


async def test_sample_envelope_carries_a_given_payload_unchanged() -> None:
    payload = sample(CriminalFilingDecision, random.Random(0), decision="NOT_FILED")
    police = _party("ygh.police.bureau")
    envelope = sample_envelope(
        police, "criminal.filing_decision", random.Random(0), payload=payload, case_id="YGH-1"
    )
    assert CODEC.decode_payload_model(envelope.payload)[2] == payload
    assert envelope.attachments == [] and envelope.recipients == ["ygh.enforcement.bureau"]
    store = InMemoryKeyStore([police.key_record()])
    assert await verify_envelope(envelope, store, at=envelope.sent_at) == police.key_record()
    with pytest.raises(ValueError, match="not both"):
        sample_envelope(police, "criminal.receipt", random.Random(0), payload=payload)


@pytest.mark.parametrize("kind", KINDS)
def test_events_happen_by_now_and_deadlines_after_it(kind: str) -> None:
    payload = sample_payload(kind, random.Random(11), now=NOW)
    for name, value in payload:
        if not isinstance(value, datetime):
            continue
        if name in ("due_at", "expected_at"):
            assert value > NOW or kind == "sla.breach", name
        else:
            assert NOW - timedelta(days=30) <= value <= NOW, name


# -- content -----------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_parties_carry_identity_numbers_that_pass_their_check_characters(seed: int) -> None:
    clue = sample(ClueHandover, random.Random(seed))
    transfer = sample(CriminalTransfer, random.Random(seed))
    subjects: list[Subject | TransferParty] = [*clue.parties, *transfer.parties]
    assert subjects
    for subject in subjects:
        if subject.id_type == IdDocumentType.UNIFIED_SOCIAL_CREDIT_CODE:
            assert uscc_is_valid(subject.id_number), subject
        else:
            assert subject.id_type == IdDocumentType.RESIDENT_ID_CARD
            assert _resident_id_ok(subject.id_number), subject
        assert "某" in subject.name


def test_regulator_option_picks_a_violation_in_its_field() -> None:
    clue = sample(ClueHandover, random.Random(0), regulator="ygh.regulator.land")
    assert clue.violation_type in {"非法占地", "非法采砂"}
    assert clue.clue_no.startswith("阳国土线移〔")
    sand = sample(ClueHandover, random.Random(0), scenario="illegal_sand_mining")
    assert sand.violation_type == "非法采砂"
    assert any("水法" in basis for basis in sand.legal_basis)


def test_tree_head_checkpoint_is_signed_and_matches_its_fields() -> None:
    head = sample(AuditTreeHead, random.Random(9), tree_size=1234)
    checkpoint = verify_signed_checkpoint(
        head.checkpoint, AUDIT_ORIGIN, sample_audit_key().public_key(), origin=head.origin
    )
    assert (checkpoint.size, checkpoint.root_hash) == (1234, head.root_hash)
    assert checkpoint.timestamp_ms == int(head.issued_at.timestamp() * 1000)


def test_hand_made_attachment_reference_is_refused() -> None:
    clue = sample(ClueHandover, random.Random(0))
    forged = AttachmentRef(title="现场照片", attachment_name="伪造.jpg", attachment_sha256="0" * 64)
    with pytest.raises(ValueError, match="supervision_records"):
        sample_attachments(clue.model_copy(update={"supervision_records": [forged]}))


def test_document_bytes_are_stable_and_typed_by_suffix() -> None:
    pdf = document_bytes("阳城执移〔2026〕第0012号 涉嫌犯罪案件移送书.pdf")
    assert pdf.startswith(b"%PDF-") and pdf == document_bytes(
        "阳城执移〔2026〕第0012号 涉嫌犯罪案件移送书.pdf"
    )
    assert document_bytes("现场照片.jpg").startswith(b"\xff\xd8\xff")
    with pytest.raises(ValueError, match="suffix"):
        document_bytes("说明.txt")


def test_sample_sla_events_name_only_policies_that_exist() -> None:
    from bus.samples._bus import _POLICIES
    from bus.sla.policy import load_policies

    assert set(_POLICIES) <= set(load_policies().ids)
