"""The routing policy's ``signatures:`` section: a deployment requires SM2 (or any algorithm it
names) of given kinds or senders. The parser names every mistake with its line; the router
refuses a message signed otherwise (bus.nack ``bad_signature``, audited), the adapters refuse it
at submit (422), and a mixed registry keeps working for everything the rules leave out.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import asyncpg
import pytest
from buskit import Bus, receipt_payload, signed_ack

from adapters import enforcement, police
from adapters._framework.fake_department import running_adapter
from adapters.enforcement.testing import opinion_request, penalty_decision, penalty_feedback
from adapters.police.testing import receipt
from bus.agencies import load_registry
from bus.agency_db import add_key, sync_agencies
from bus.codec import decode_envelope
from bus.errors import RoutingPolicyError
from bus.party import make_party
from bus.routing import DEFAULT_POLICY_PATH, RoutingPolicy, parse_policy
from bus.settings import Settings, load_settings
from bus.signing import ED25519, SM2_SM3

REGISTRY = load_registry(load_settings().agencies_file)
SHIPPED = DEFAULT_POLICY_PATH.read_text(encoding="utf-8")
POLICE = "ygh.police.bureau"
ECO = "kmg.police.eco"
BUREAU = "ygh.enforcement.bureau"
PLANNING = "ygh.regulator.planning"


def with_signatures(section: str) -> str:
    """The shipped policy with ``section`` (YAML under ``signatures:``) in place of its empty
    one."""
    assert SHIPPED.count("\nsignatures: []\n") == 1
    return SHIPPED.replace("\nsignatures: []\n", "\nsignatures:\n" + section)


def line_of(text: str, needle: str) -> int:
    """The 1-based line of the first line of the ``signatures:`` section containing ``needle``
    (not of the comments above, whose example looks alike)."""
    lines = text.splitlines()
    start = lines.index("signatures:")
    return next(i for i, line in enumerate(lines[start:], start + 1) if needle in line)


def policy(section: str) -> RoutingPolicy:
    return parse_policy(with_signatures(section), REGISTRY, source="routing.yaml")


def test_the_shipped_policy_requires_no_algorithm_so_the_default_profile_works() -> None:
    shipped = parse_policy(SHIPPED, REGISTRY, source="routing.yaml")
    assert shipped.signature_rules() == ()
    assert shipped.check_signature(kind="criminal.transfer", sender=BUREAU, algorithm=ED25519) == ()


def test_the_example_in_the_shipped_files_comments_is_a_valid_section() -> None:
    """The commented example is what a deployment uncomments: it must parse, and mean what its
    comments say."""
    start = SHIPPED.index("#   signatures:\n")
    example = []
    for line in SHIPPED[start:].splitlines()[1:]:
        if not line.startswith("#     "):
            break
        example.append(line[2:].split("  #")[0].rstrip())
    assert len(example) == 4, example
    p = policy("\n".join(example) + "\n")
    assert [r.algorithm for r in p.signature_rules()] == [SM2_SM3, SM2_SM3]
    assert p.required_algorithm("criminal.transfer", BUREAU) is not None
    assert p.required_algorithm("opinion.request", BUREAU) is None
    assert p.required_algorithm("bus.ack", ECO) is not None  # every kind the police send


def test_a_rule_covers_its_kinds_its_senders_or_both() -> None:
    section = (
        "  - algorithm: sm2-sm3\n"
        "    kinds: [criminal.transfer]\n"
        "  - algorithm: sm2-sm3\n"
        "    senders: [police]\n"
        "  - algorithm: sm2-sm3\n"
        "    kinds: opinion.response\n"
        f"    senders: [{PLANNING}]\n"
    )
    p = policy(section)
    text = with_signatures(section)
    [by_kind] = p.check_signature(kind="criminal.transfer", sender=BUREAU, algorithm=ED25519)
    assert (by_kind.path, by_kind.rule, by_kind.value) == (
        "signature.algorithm",
        "signature_algorithm_not_allowed",
        ED25519,
    )
    # The refusal names the kind, the sender, both algorithms and the rule's line.
    rule_line = line_of(text, "kinds: [criminal.transfer]") - 1
    for part in ("criminal.transfer", BUREAU, SM2_SM3, ED25519, f"routing.yaml:{rule_line}"):
        assert part in by_kind.message, (part, by_kind.message)
    assert by_kind.message_zh and SM2_SM3 in by_kind.message_zh
    assert p.check_signature(kind="criminal.transfer", sender=BUREAU, algorithm=SM2_SM3) == ()
    # A kind the rules leave out, from a sender they leave out: any algorithm.
    assert p.check_signature(kind="criminal.receipt", sender=BUREAU, algorithm=ED25519) == ()
    # A sender rule: an agency kind stands for every agency of that kind.
    for agency in (POLICE, ECO):
        assert p.check_signature(kind="bus.ack", sender=agency, algorithm=ED25519)
    # Both: only that kind from that sender.
    assert p.check_signature(kind="opinion.response", sender=PLANNING, algorithm=ED25519)
    other = "ygh.regulator.water"
    assert p.check_signature(kind="opinion.response", sender=other, algorithm=ED25519) == ()
    assert p.check_signature(kind="opinion.delegated", sender=PLANNING, algorithm=ED25519) == ()


def test_answers_are_remembered_per_known_pair_only() -> None:
    # The router asks for every message; a sender may write any kind, so a kind the policy
    # does not know is answered each time but never kept (the memory stays kinds x agencies).
    p = policy("  - algorithm: sm2-sm3\n    kinds: [criminal.transfer]\n")
    for _ in range(2):
        assert p.required_algorithm("criminal.transfer", BUREAU) is not None
        assert p.required_algorithm("criminal.receipt", BUREAU) is None
    for i in range(50):
        assert p.required_algorithm(f"made.up.{i}", BUREAU) is None
        assert p.required_algorithm("criminal.transfer", f"nobody.{i}") is not None
    assert set(p._required) == {("criminal.transfer", BUREAU), ("criminal.receipt", BUREAU)}


def test_every_mistake_in_the_section_is_named_with_its_line() -> None:
    section = (
        "  - algorithm: sm2\n"  # A
        "    kinds: [criminal.transferr]\n"  # B
        "  - algorithm: ed25519\n"  # C
        "    senders: police\n"
        "  - algorithm: sm2-sm3\n"  # D
        "    kinds: [criminal.receipt, criminal.receipt]\n"  # E
        "  - algorithm: sm2-sm3\n"  # F
        "    kinds: [bus.ack]\n"
        "  - {kinds: [], senders: [nobody], colour: red}\n"  # G
    )
    text = with_signatures(section)
    first = line_of(text, "- algorithm: sm2")
    with pytest.raises(RoutingPolicyError) as e:
        parse_policy(text, REGISTRY, source="routing.yaml")
    found = {(int(p.path.rpartition(":")[2]) - first, p.rule) for p in e.value.problems}
    assert found == {
        (0, "unknown_algorithm"),  # A, with a hint
        (1, "unknown_kind"),  # B
        (5, "duplicate_entry"),  # E
        (6, "conflicting_signature_rule"),  # F: bus.ack from the police, C says ed25519
        (8, "missing_field"),  # G: no algorithm
        (8, "unknown_field"),
        (8, "wrong_type"),  # an empty kinds list would silently mean every kind
        (8, "unknown_agency_kind"),
    }, e.value.problems
    assert "did you mean 'sm2-sm3'" in str(e.value)
    # D would overlap C as well, but a rule with mistakes of its own is not compared.
    assert f"the rule at line {first + 2} ed25519" in str(e.value)


def test_a_section_that_is_not_a_list_is_refused() -> None:
    with pytest.raises(RoutingPolicyError, match="signatures must be a list"):
        policy("  algorithm: sm2-sm3\n")


# -- on the real stack ---------------------------------------------------------------------------


def _write_policy(tmp_path: Path, section: str) -> Path:
    path = tmp_path / "routing.yaml"
    path.write_text(with_signatures(section), encoding="utf-8")
    return path


async def test_the_router_refuses_an_algorithm_the_policy_forbids_and_audits_it(
    bus: Bus, tmp_path: Path
) -> None:
    """A mixed registry: the bureau's police signs with Ed25519, the economic crimes unit with
    SM2. The policy wants SM2 for the police's receipts only: the Ed25519 receipt is nacked and
    audited as refused; the SM2 one and the Ed25519 ack (a kind the rule leaves out) go."""
    section = "  - algorithm: sm2-sm3\n    kinds: [criminal.receipt]\n    senders: [police]\n"
    path = _write_policy(tmp_path, section)
    rule_line = line_of(path.read_text(encoding="utf-8"), "kinds: [criminal.receipt]") - 1
    ed = make_party(POLICE, tmp_path / "ed", algorithm=ED25519)
    sm = make_party(ECO, tmp_path / "sm", algorithm=SM2_SM3)
    conn = await asyncpg.connect(bus.settings.database_url)
    try:
        for party in (ed, sm):
            await add_key(conn, party.key_record())
    finally:
        await conn.close()
    refused = ed.envelope(receipt_payload(1), recipients=[BUREAU], case_id="YGH-SM2-1")
    accepted = sm.envelope(receipt_payload(2), recipients=[BUREAU], case_id="YGH-SM2-2")
    ack = signed_ack(ed, recipients=[BUREAU], case_id="YGH-SM2-3")
    async with bus.router(routing_policy_file=path):
        await bus.submit(refused, accepted, ack)
        to_police = bus.envelopes(await bus.inbox(POLICE, want=1, settle_s=1.0))
        to_eco = bus.envelopes(await bus.inbox(ECO, want=1))
        delivered = bus.envelopes(await bus.inbox(BUREAU, want=3, timeout_s=3))

    assert {e.message_id for e in delivered} == {accepted.message_id, ack.message_id}
    [nack] = [e for e in to_police if e.kind == "bus.nack"]
    body = bus.payload(nack)
    assert body.original_message_id == refused.message_id  # type: ignore[attr-defined]
    assert body.code == "bad_signature"  # type: ignore[attr-defined]
    [reason] = body.reasons  # type: ignore[attr-defined]
    assert (reason.path, reason.rule) == ("signature.algorithm", "signature_algorithm_not_allowed")
    for part in ("criminal.receipt", POLICE, SM2_SM3, ED25519, f"{path}:{rule_line}"):
        assert part in reason.message, (part, reason.message)
    # The nack, and no receipt for the ack: a signal is not receipted (SIGNAL_KINDS).
    assert [e.kind for e in to_police] == ["bus.nack"]
    assert [e.kind for e in to_eco] == ["bus.delivered"]

    pool = await asyncpg.create_pool(bus.settings.database_url, min_size=1, max_size=2)
    try:
        rows = await pool.fetch("SELECT event_kind, leaf FROM audit_entries ORDER BY idx")
    finally:
        await pool.close()
    leaves = [(r["event_kind"], json.loads(r["leaf"])) for r in rows]
    [leaf] = [
        leaf
        for k, leaf in leaves
        if k == "rejected" and leaf["details"]["original_message_id"] == str(refused.message_id)
    ]
    assert leaf["details"]["code"] == "bad_signature"
    assert leaf["signing_key"]["algorithm"] == ED25519  # the key it did verify with
    signed_by = {
        leaf["message_id"]: leaf["signing_key"]["algorithm"]
        for k, leaf in leaves
        if k == "accepted"
    }
    assert signed_by == {str(accepted.message_id): SM2_SM3, str(ack.message_id): ED25519}


@pytest.mark.integration
async def test_the_adapters_refuse_at_submit_what_the_router_would_refuse_for_its_algorithm(
    provisioned: Settings, tmp_path: Path
) -> None:
    """The bureau's adapter holds an Ed25519 key, the police's an SM2 key (a registry in the
    middle of a migration). The policy wants SM2 for opinion requests and for all the police
    send: the bureau's opinion request is a 422 naming the rule, nothing reaches its outbox;
    its penalty report (no rule) and the police's receipt (SM2) go."""
    section = (
        "  - algorithm: sm2-sm3\n    kinds: [opinion.request]\n"
        "  - algorithm: sm2-sm3\n    senders: [police]\n"
    )
    path = _write_policy(tmp_path, section)
    rule_line = line_of(path.read_text(encoding="utf-8"), "kinds: [opinion.request]") - 1
    conn = await asyncpg.connect(provisioned.database_url)
    try:
        await sync_agencies(conn, load_registry(provisioned.agencies_file))
    finally:
        await conn.close()
    base = provisioned.model_copy(update={"routing_policy_file": path})
    ed = base.model_copy(update={"crypto_profile": "ed25519"})
    sm = base.model_copy(update={"crypto_profile": "sm2"})
    keys = tmp_path / "keys"
    async with (
        running_adapter(
            enforcement.build_service, ed, key_dir=keys, webhooks={BUREAU: None}
        ) as enf,
        running_adapter(police.build_service, sm, key_dir=keys, webhooks={POLICE: None}) as pol,
    ):
        bureau, desk = enf.department(BUREAU), pol.department(POLICE)
        r = await bureau.submit(
            opinion_request(ajbh="阳城执〔2026〕S1号", qqbh="q", jsdw=[PLANNING])
        )
        assert r.status_code == 422, r.text
        [problem] = r.json()["problems"]
        assert problem["rule"] == "signature_algorithm_not_allowed", problem
        assert problem["value"] == ED25519
        for part in ("opinion.request", BUREAU, SM2_SM3, f"{path}:{rule_line}"):
            assert part in problem["message"], (part, problem["message"])
        assert problem["message_zh"]
        assert await _outbox(enf, BUREAU) == []

        case = "阳城执〔2026〕S2号"
        report = penalty_feedback(
            ajbh=case, bgbh="b", jsdw=[PLANNING], decisions=[penalty_decision(case, 1)]
        )
        r = await bureau.submit(report)
        assert r.status_code == 202, r.text
        glbh = "00000000-0000-4000-8000-000000000001"
        r = await desk.submit(
            receipt(ajbh="阳城执〔2026〕S3号", ysshh="移1", jsdw=[BUREAU], glbh=glbh)
        )
        assert r.status_code == 202, r.text
        assert await _outbox(enf, BUREAU) == [("penalty.feedback", ED25519)]
        assert await _outbox(pol, POLICE) == [("criminal.receipt", SM2_SM3)]


async def _outbox(adapter: object, agency: str) -> list[tuple[str, str]]:
    """The kind and signature algorithm of every envelope in ``agency``'s outbox."""
    pool = adapter.service.pool  # type: ignore[attr-defined]
    rows = await pool.fetch("SELECT value FROM outbox WHERE owner = $1 ORDER BY id", agency)
    envelopes = [decode_envelope(bytes(r["value"])) for r in rows]
    return [(e.kind, e.signature.algorithm) for e in envelopes]


def test_the_refusal_names_how_to_fix_it() -> None:
    [problem] = policy("  - algorithm: sm2-sm3\n").check_signature(
        kind="bus.ack", sender=BUREAU, algorithm=ED25519
    )
    assert re.search(r"casebus agency key rotate --alg sm2\b", problem.message), problem.message
