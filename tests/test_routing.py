"""The routing policy: the shipped ``deploy/routing.yaml`` against the flows of domain.md.

Every rule is tested both ways twice over: once from cases generated out of the policy file itself
(each route is granted, nothing beyond the routes is), and once from a hand-written table of the
flows domain.md describes — so a wrong rule in the YAML fails the table even though the generated
cases agree with it. Pure logic: no Kafka, no database.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from bus.agencies import Agency, Registry, load_registry
from bus.errors import ConfigError, RoutingPolicyError, UnknownKindError
from bus.models import KINDS
from bus.routing import DEFAULT_POLICY_PATH, RoutingPolicy, load_policy, parse_policy
from bus.settings import REPO_ROOT

REGISTRY = load_registry(REPO_ROOT / "deploy" / "agencies.yaml")
POLICY = load_policy(DEFAULT_POLICY_PATH, REGISTRY)
RAW: dict[str, Any] = yaml.safe_load(DEFAULT_POLICY_PATH.read_text(encoding="utf-8"))["kinds"]
AGENCIES = REGISTRY.agencies
IDS = [a.id for a in AGENCIES]

PARTIES = frozenset({"enforcement", "regulator", "police", "procuratorate", "court"})
"""Every agency kind but the bus itself."""
CRIMINAL = tuple(k for k in KINDS if k.startswith("criminal."))
SLA_EVENTS = ("sla.warning", "sla.breach", "sla.met")
PROSECUTOR = "ygh.procuratorate"
SLA = "casebus.sla"


# --- the hand-written table: domain.md's flows, written without looking at the YAML ----------


@dataclass(frozen=True)
class Flow:
    """Who may send a kind (agency kinds or ids), to whom, and who gets a copy (agency ids)."""

    senders: frozenset[str]
    recipients: frozenset[str]
    copies: frozenset[str] = frozenset()


def _flow(senders: set[str], recipients: set[str], copies: set[str] | None = None) -> Flow:
    return Flow(frozenset(senders), frozenset(recipients), frozenset(copies or ()))


CHAIN = {PROSECUTOR, SLA}  # the criminal chain and supervision: procuratorate and deadlines
DOMAIN: dict[str, Flow] = {
    # Decree 310: enforcement transfers, the police answer; the procuratorate watches it all.
    "criminal.transfer": _flow({"enforcement"}, {"police"}, CHAIN),
    "criminal.receipt": _flow({"police"}, {"enforcement"}, CHAIN),
    "criminal.jurisdiction_forward": _flow({"police"}, {"enforcement", "police"}, CHAIN),
    "criminal.filing_decision": _flow({"police"}, {"enforcement"}, CHAIN),
    "criminal.reconsideration_request": _flow({"enforcement"}, {"police"}, CHAIN),
    "criminal.reconsideration_decision": _flow({"police"}, {"enforcement"}, CHAIN),
    "criminal.evidence_handover": _flow({"enforcement"}, {"police"}, CHAIN),
    "criminal.case_update": _flow({"police"}, {"enforcement"}, CHAIN),
    # Filing supervision and obstruction reports.
    "supervision.request": _flow({"enforcement"}, {"procuratorate"}, CHAIN),
    "supervision.notice": _flow({"procuratorate"}, {"police", "enforcement"}, CHAIN),
    "obstruction.report": _flow({"enforcement"}, {"procuratorate"}, {PROSECUTOR}),
    # Regulators (2017 plan item 4).
    "clue.handover": _flow({"regulator"}, {"enforcement"}, {SLA}),
    "clue.receipt": _flow({"enforcement"}, {"regulator"}, {SLA}),
    "opinion.request": _flow({"enforcement"}, {"regulator"}, {SLA}),
    "opinion.response": _flow({"regulator"}, {"enforcement"}, {SLA}),
    "opinion.delegated": _flow({"regulator"}, {"enforcement"}, {SLA}),
    # The procuratorate screens penalty feedback for 以罚代刑 (penalty instead of transfer).
    "penalty.feedback": _flow({"enforcement"}, {"regulator"}, {PROSECUTOR, SLA}),
    # Administrative Compulsion Law: applications to the court.
    "court.execution_application": _flow({"enforcement"}, {"court"}, {SLA}),
    "court.acceptance": _flow({"court"}, {"enforcement"}, {SLA}),
    "court.ruling": _flow({"court"}, {"enforcement"}, {SLA}),
    # The bus's own messages.
    "bus.delivered": _flow({"casebus"}, {*PARTIES, SLA}),
    "bus.ack": _flow({*PARTIES, "casebus"}, {*PARTIES, "bus"}),
    "bus.nack": _flow({*PARTIES, "casebus"}, {*PARTIES, "bus"}),
    "sla.warning": _flow({SLA}, set(PARTIES)),
    "sla.breach": _flow({SLA}, set(PARTIES)),
    "sla.met": _flow({SLA}, set(PARTIES)),
    "audit.tree_head": _flow({"casebus"}, {"procuratorate"}),
}


def _is(agency: Agency, parties: frozenset[str] | set[str] | list[str]) -> bool:
    return agency.id in parties or agency.kind in parties


def _allowed(kind: str, sender: Agency, recipient: Agency) -> bool:
    return POLICY.authorize(kind=kind, sender=sender.id, recipients=[recipient.id]).allowed


def test_domain_table_covers_every_kind() -> None:
    assert sorted(DOMAIN) == sorted(KINDS)


@pytest.mark.parametrize("kind", KINDS)
def test_domain_flow_is_allowed(kind: str) -> None:
    flow = DOMAIN[kind]
    refused = [
        f"{s.id} -> {r.id}"
        for s in AGENCIES
        for r in AGENCIES
        if _is(s, flow.senders) and _is(r, flow.recipients) and not _allowed(kind, s, r)
    ]
    assert not refused, f"{kind}: domain.md allows these, the policy refuses them"


@pytest.mark.parametrize("kind", KINDS)
def test_everything_outside_the_domain_flow_is_refused(kind: str) -> None:
    flow = DOMAIN[kind]
    allowed = [
        f"{s.id} -> {r.id}"
        for s in AGENCIES
        for r in AGENCIES
        if not (_is(s, flow.senders) and _is(r, flow.recipients)) and _allowed(kind, s, r)
    ]
    assert not allowed, f"{kind}: domain.md has no such flow, the policy allows it"


@pytest.mark.parametrize("kind", KINDS)
def test_automatic_copies_are_the_domains(kind: str) -> None:
    assert set(POLICY.copies_for(kind)) == DOMAIN[kind].copies


# --- cases generated from the policy file itself ----------------------------------------------


def _resolve(entries: str | list[str]) -> list[Agency]:
    """The agencies a party list of the file stands for, resolved here, not by bus.routing."""
    names = [entries] if isinstance(entries, str) else entries
    return [a for a in AGENCIES if _is(a, names)]


ROUTES = [
    pytest.param(kind, route, id=f"{kind}-route{i}")
    for kind, rule in RAW.items()
    for i, route in enumerate(rule["routes"])
]


@pytest.mark.parametrize(("kind", "route"), ROUTES)
def test_policy_route_is_granted(kind: str, route: dict[str, Any]) -> None:
    senders, recipients = _resolve(route["from"]), _resolve(route["to"])
    assert senders and recipients, "a shipped route must match agencies of the registry"
    for s in senders:
        decision = POLICY.authorize(kind=kind, sender=s.id, recipients=[r.id for r in recipients])
        assert decision.allowed, decision.problems


@pytest.mark.parametrize("kind", list(RAW))
def test_policy_grants_nothing_beyond_its_routes(kind: str) -> None:
    routes = RAW[kind]["routes"]
    granted = {(s.id, r.id) for x in routes for s in _resolve(x["from"]) for r in _resolve(x["to"])}
    senders = {s for s, _ in granted}
    for s in AGENCIES:
        for r in AGENCIES:
            if (s.id, r.id) in granted:
                continue
            decision = POLICY.authorize(kind=kind, sender=s.id, recipients=[r.id])
            assert not decision.allowed, f"{kind}: {s.id} -> {r.id} is in no route"
            assert decision.deliver_to == ()
            expected = "unauthorized_route" if s.id in senders else "sender_kind_not_allowed"
            assert [p.rule for p in decision.problems] == [expected]


@pytest.mark.parametrize("kind", list(RAW))
def test_policy_copies_follow_every_allowed_message(kind: str) -> None:
    copies = [a.id for name in RAW[kind].get("copy_to", []) for a in _resolve(name)]
    route = RAW[kind]["routes"][0]
    sender, recipient = _resolve(route["from"])[0], _resolve(route["to"])[0]
    decision = POLICY.authorize(kind=kind, sender=sender.id, recipients=[recipient.id])
    expected = [recipient.id] + [c for c in copies if c not in (sender.id, recipient.id)]
    assert decision.deliver_to == tuple(dict.fromkeys(expected))


def test_shipped_policy_has_one_rule_per_kind_with_both_notes() -> None:
    assert list(POLICY.kinds) == list(KINDS)
    for rule in POLICY.rules():
        assert any("\u4e00" <= c <= "\u9fff" for c in rule.zh), rule.kind
        assert rule.en.isascii() and rule.en, rule.kind
        assert rule.line > 0


def test_sla_engine_gets_exactly_the_kinds_its_deadline_policies_name() -> None:
    raw = yaml.safe_load((REPO_ROOT / "deploy" / "sla-policies.yaml").read_text(encoding="utf-8"))
    named: set[str] = set()
    for policy in raw["policies"]:
        named.update(policy.get("closes_on", []))
        for key in ("opens_on", "moves_on"):
            if policy.get(key):
                named.add(policy[key]["kind"])
    copied = {k for k in KINDS if SLA in POLICY.copies_for(k)}
    assert copied == named, "routing.yaml copy_to casebus.sla and sla-policies.yaml disagree"


# --- what domain.md forbids, said plainly ------------------------------------------------------


def _senders_of(kind: str) -> set[str]:
    return {a.id for a in AGENCIES if POLICY.may_send(a.id, kind)}


def test_no_regulator_sends_any_criminal_message() -> None:
    for regulator in REGISTRY.of_kind("regulator"):
        assert not [k for k in CRIMINAL if POLICY.may_send(regulator.id, k)]


def test_court_never_receives_police_only_messages() -> None:
    for kind in ("criminal.receipt", "criminal.filing_decision", "criminal.case_update"):
        decision = POLICY.authorize(kind=kind, sender="ygh.police.bureau", recipients=["ygh.court"])
        assert [p.rule for p in decision.problems] == ["unauthorized_route"]
        assert "ygh.court" not in POLICY.copies_for(kind)


def test_police_cannot_hand_over_clues() -> None:
    decision = POLICY.authorize(
        kind="clue.handover", sender="ygh.police.bureau", recipients=["ygh.enforcement.bureau"]
    )
    assert not decision.allowed
    assert [(p.path, p.rule) for p in decision.problems] == [("sender", "sender_kind_not_allowed")]
    assert decision.problems[0].message_zh


def test_only_casebus_sends_delivery_receipts_and_tree_heads() -> None:
    assert _senders_of("bus.delivered") == {"casebus"}
    assert _senders_of("audit.tree_head") == {"casebus"}


def test_only_the_sla_engine_sends_sla_events() -> None:
    for kind in SLA_EVENTS:
        assert _senders_of(kind) == {SLA}


def test_sla_engine_neither_acks_nor_writes_receipts() -> None:
    for kind in ("bus.ack", "bus.nack", "bus.delivered", "audit.tree_head"):
        assert not POLICY.may_send(SLA, kind)


def test_router_nacks_as_casebus_to_any_party() -> None:
    decision = POLICY.authorize(kind="bus.nack", sender="casebus", recipients=IDS[2:])
    assert decision.allowed, decision.problems


def test_procuratorate_and_sla_engine_see_the_whole_criminal_chain() -> None:
    for kind in (*CRIMINAL, "supervision.request", "supervision.notice"):
        assert POLICY.copies_for(kind) == (PROSECUTOR, SLA)
    assert POLICY.copies_for("obstruction.report") == (PROSECUTOR,)


# --- authorize: delivery lists and refusals ----------------------------------------------------


def test_transfer_goes_to_police_then_procuratorate_then_sla_engine() -> None:
    decision = POLICY.authorize(
        kind="criminal.transfer", sender="ygh.enforcement.tangchi", recipients=["ygh.police.bureau"]
    )
    assert decision.allowed and decision.problems == []
    assert decision.deliver_to == ("ygh.police.bureau", PROSECUTOR, SLA)
    assert decision.copies == (PROSECUTOR, SLA)


def test_a_copy_already_named_is_delivered_once() -> None:
    decision = POLICY.authorize(
        kind="supervision.request", sender="ygh.enforcement.bureau", recipients=[PROSECUTOR]
    )
    assert decision.deliver_to == (PROSECUTOR, SLA)


def test_the_sender_gets_no_copy_of_its_own_message() -> None:
    decision = POLICY.authorize(
        kind="supervision.notice",
        sender=PROSECUTOR,
        recipients=["ygh.police.bureau", "ygh.enforcement.bureau"],
    )
    assert decision.deliver_to == ("ygh.police.bureau", "ygh.enforcement.bureau", SLA)


def test_jurisdiction_forward_reaches_competent_police_and_the_sender() -> None:
    decision = POLICY.authorize(
        kind="criminal.jurisdiction_forward",
        sender="ygh.police.bureau",
        recipients=["kmg.police.eco", "ygh.enforcement.qidian", "kmg.police.eco"],
    )
    assert decision.deliver_to == ("kmg.police.eco", "ygh.enforcement.qidian", PROSECUTOR, SLA)


def test_a_partly_refused_message_is_refused_whole() -> None:
    decision = POLICY.authorize(
        kind="criminal.transfer",
        sender="ygh.enforcement.bureau",
        recipients=["ygh.police.bureau", "ygh.court"],
    )
    assert not decision.allowed
    assert decision.deliver_to == () and decision.copies == ()
    [problem] = decision.problems
    assert (problem.path, problem.rule, problem.value) == (
        "recipients[1]",
        "unauthorized_route",
        "ygh.court",
    )
    assert "recipients allowed: police" in problem.message
    assert problem.message_zh and "ygh.court" in problem.message_zh


def test_unknown_kind_sender_and_recipient_are_all_reported() -> None:
    decision = POLICY.authorize(
        kind="criminal.transfr", sender="ygh.nobody", recipients=["ygh.police.bureau", "ygh.x"]
    )
    assert [(p.path, p.rule) for p in decision.problems] == [
        ("kind", "unknown_kind"),
        ("sender", "unknown_agency"),
        ("recipients[1]", "unknown_agency"),
    ]


def test_a_message_without_recipients_is_refused() -> None:
    decision = POLICY.authorize(kind="bus.ack", sender="ygh.court", recipients=[])
    assert [p.rule for p in decision.problems] == ["no_recipients"]


def test_copies_for_an_unknown_kind_raises() -> None:
    with pytest.raises(UnknownKindError, match=r"criminal\.transfr"):
        POLICY.copies_for("criminal.transfr")


_maybe_kind = st.sampled_from([*KINDS, "criminal.transfr"])
_maybe_id = st.sampled_from([*IDS, "ygh.nobody"])


@settings(max_examples=300, deadline=None)
@given(kind=_maybe_kind, sender=_maybe_id, recipients=st.lists(_maybe_id, max_size=5))
def test_delivery_list_invariants(kind: str, sender: str, recipients: list[str]) -> None:
    decision = POLICY.authorize(kind=kind, sender=sender, recipients=recipients)
    assert decision.allowed == (not decision.problems)
    each = [POLICY.authorize(kind=kind, sender=sender, recipients=[r]).allowed for r in recipients]
    assert decision.allowed == (bool(recipients) and all(each))  # refused whole, or not at all
    if not decision.allowed:
        assert decision.deliver_to == ()
        return
    named = list(dict.fromkeys(recipients))
    assert list(decision.deliver_to) == named + list(decision.copies)
    assert len(set(decision.deliver_to)) == len(decision.deliver_to)
    assert set(decision.copies) <= set(POLICY.copies_for(kind))
    assert sender not in decision.copies


# --- grants: per agency, for docs and ACL planning ---------------------------------------------


def test_grants_list_every_agency_with_what_it_sends_and_receives() -> None:
    grants = POLICY.grants()
    assert list(grants) == IDS
    planning = grants["ygh.regulator.planning"]
    assert planning.sends == (
        "clue.handover",
        "opinion.response",
        "opinion.delegated",
        "bus.ack",
        "bus.nack",
    )
    bus_kinds = {"bus.delivered", "bus.ack", "bus.nack", *SLA_EVENTS}
    assert set(planning.receives) == {"clue.receipt", "opinion.request", "penalty.feedback"} | (
        bus_kinds
    )
    prosecutor = grants[PROSECUTOR]
    assert set(CRIMINAL) <= set(prosecutor.copied) <= set(prosecutor.receives)
    assert "audit.tree_head" in prosecutor.receives
    assert not set(CRIMINAL) & set(grants["ygh.court"].receives)
    assert grants[SLA].sends == SLA_EVENTS


def test_grants_agree_with_authorize() -> None:
    grants = POLICY.grants()
    for kind in KINDS:
        copies = POLICY.copies_for(kind)
        for a in AGENCIES:
            receivable = any(_allowed(kind, s, a) for s in AGENCIES) or a.id in copies
            assert (kind in grants[a.id].sends) == POLICY.may_send(a.id, kind)
            assert (kind in grants[a.id].receives) == receivable, (kind, a.id)


# --- broken policy files -----------------------------------------------------------------------


def _policy_text(*, without: tuple[str, ...] = (), extra: str = "") -> str:
    """A valid policy (every kind: enforcement → police), minus some kinds, plus ``extra``."""
    lines = ["version: 1", "kinds:"]
    for kind in KINDS:
        if kind not in without:
            lines += [f"  {kind}:", "    zh: 说明", "    en: note", "    routes:"]
            lines += ["      - from: enforcement", "        to: police"]
    return "\n".join(lines) + "\n" + extra


def _line(text: str, needle: str, nth: int = 1) -> int:
    """The 1-based line of the ``nth`` line containing ``needle``."""
    hits = [i for i, line in enumerate(text.splitlines(), 1) if needle in line]
    return hits[nth - 1]


def _problems(path: Path, registry: Registry = REGISTRY) -> RoutingPolicyError:
    with pytest.raises(ConfigError) as info:
        load_policy(path, registry)
    assert isinstance(info.value, RoutingPolicyError)
    assert isinstance(info.value, ValueError)
    return info.value


def test_valid_generated_policy_loads(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    path.write_text(_policy_text(), encoding="utf-8")
    assert isinstance(load_policy(path, REGISTRY), RoutingPolicy)


def test_every_problem_is_named_with_its_line_at_once(tmp_path: Path) -> None:
    extra = (
        "  criminal.transfr:\n"  # unknown kind
        "    zh: 说明\n    en: note\n    routes:\n"
        "      - from: polise\n"  # unknown agency kind
        "        to: ygh.police.nowhere\n"  # unknown agency id
        "  criminal.transfer:\n"  # second rule for a kind
        "    zh: 说明\n    en: note\n    routes:\n"
        "      - {from: enforcement, to: police}\n"
        "      - {from: [enforcement], to: [police]}\n"  # duplicate route
        "    copy_to: [procuratorate, ygh.nobody]\n"  # copy target not in the registry
        "    form: x\n"  # unknown field
    )
    text = _policy_text(without=("criminal.receipt",), extra=extra)
    path = tmp_path / "routing.yaml"
    path.write_text(text, encoding="utf-8")
    error = _problems(path)
    first = _line(text, "criminal.transfer:")
    expected = [
        (_line(text, "kinds:"), "missing_rule", "'criminal.receipt' has no rule"),
        (_line(text, "criminal.transfr:"), "unknown_kind", "did you mean 'criminal.transfer'"),
        (_line(text, "polise"), "unknown_agency_kind", "unknown agency kind 'polise'"),
        (_line(text, "ygh.police.nowhere"), "unknown_agency_id", "'ygh.police.nowhere'"),
        (_line(text, "criminal.transfer:", 2), "duplicate_rule", f"first is at line {first}"),
        (_line(text, "{from: [enforcement]"), "duplicate_rule", "already granted at line"),
        (_line(text, "ygh.nobody"), "copy_target_not_in_registry", "'ygh.nobody'"),
        (_line(text, "form: x"), "unknown_field", "'form'"),
    ]
    got = [(int(p.path.rpartition(":")[2]), p.rule) for p in error.problems]
    assert sorted(got) == sorted((line, rule) for line, rule, _ in expected)
    text_of_error = str(error)
    assert f"{len(expected)} problem(s)" in text_of_error
    for line, rule, fragment in expected:
        [shown] = [s for s in text_of_error.splitlines() if s.strip().startswith(f"{path}:{line}:")]
        assert fragment in shown and f"[{rule}]" in shown


_SLA_MET = "  sla.met: {zh: 说明, en: x, routes: [{from: casebus.sla, to: police}]}\n"


@pytest.mark.parametrize(
    ("extra", "rule"),
    [
        (_SLA_MET + _SLA_MET.rstrip() + "  # <-\n", "duplicate_rule"),
        ("  sla.met: {zh: 说明, en: x, routes: []}  # <-\n", "missing_rule"),
        ("  sla.met: {zh: 说明, en: x, routes: casebus.sla}  # <-\n", "wrong_type"),
        ("  sla.met: {zh: 说明, routes: [{from: bus, to: court}]}  # <-\n", "missing_field"),
        ("  sla.met: {zh: 说明, en: x, routes: [{from: bus}]}  # <-\n", "missing_field"),
        ("  sla.met: {zh: 说明, en: x, routes: [{from: bus, to: [court, court]}]}  # <-\n",
         "duplicate_entry"),
        ("  sla.met: {zh: 说明, en: x, routes: [{from: bus, to: court}], copy_to: cort}  # <-\n",
         "copy_target_not_in_registry"),
        ("  sla.met: {zh: 说明, en: x, routes: [{from: bus, to: polise}]}  # <-\n",
         "unknown_agency_kind"),
    ],
    ids=["kind-twice", "no-routes", "routes-not-a-list", "no-en-note", "route-without-to",
         "entry-twice", "copy-typo", "agency-kind-typo"],
)  # fmt: skip
def test_one_defect_is_one_problem_on_its_line(tmp_path: Path, extra: str, rule: str) -> None:
    text = _policy_text(without=("sla.met",), extra=extra)
    path = tmp_path / "routing.yaml"
    path.write_text(text, encoding="utf-8")
    [problem] = _problems(path).problems
    assert (problem.path, problem.rule) == (f"{path}:{_line(text, '# <-')}", rule)


def test_a_copy_to_an_agency_kind_the_registry_lacks_is_refused(tmp_path: Path) -> None:
    registry = Registry(agencies=[a for a in AGENCIES if a.kind != "court"])
    text = _policy_text(without=("sla.met",))
    text += "  sla.met:\n    zh: 说明\n    en: x\n    routes: [{from: bus, to: police}]\n"
    text += "    copy_to: [court]\n"
    path = tmp_path / "routing.yaml"
    path.write_text(text, encoding="utf-8")
    [problem] = _problems(path, registry).problems
    line = len(text.splitlines())
    assert (problem.path, problem.rule) == (f"{path}:{line}", "copy_target_not_in_registry")


def test_an_agency_id_that_is_also_an_agency_kind_is_ambiguous(tmp_path: Path) -> None:
    registry = Registry(agencies=[*AGENCIES, Agency(id="court", kind="court", name="法院")])
    text = _policy_text(without=("sla.met",))
    text += "  sla.met: {zh: 说明, en: x, routes: [{from: bus, to: court}]}\n"
    path = tmp_path / "routing.yaml"
    path.write_text(text, encoding="utf-8")
    [problem] = _problems(path, registry).problems
    assert problem.rule == "ambiguous_party" and problem.path.endswith(f":{_line(text, 'sla.met')}")


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("", "empty_file"),
        ("- just a list\n", "wrong_type"),
        ("version: 2\nkinds: {}\n", "bad_version"),
        ("kinds: []\n", "missing_field"),
    ],
)
def test_malformed_files_are_refused_with_a_reason(tmp_path: Path, text: str, rule: str) -> None:
    path = tmp_path / "routing.yaml"
    path.write_text(text, encoding="utf-8")
    assert rule in {p.rule for p in _problems(path).problems}


def test_unreadable_or_invalid_yaml_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read routing policy"):
        load_policy(tmp_path / "missing.yaml", REGISTRY)
    with pytest.raises(ConfigError, match="not valid YAML"):
        parse_policy("kinds: [unclosed\n", REGISTRY)
