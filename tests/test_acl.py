"""Kafka ACL planning (``bus.acl``, ``casebus acl plan``): isolation between agencies.

Pure logic on the shipped registry and routing policy, and on small registries made up here
(hypothesis draws agency ids, including ones that are dotted prefixes of each other). No Kafka.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from securekit import self_signed_ca
from typer.testing import CliRunner

from bus.acl import (
    ROUTER_PRINCIPAL,
    SLA_PRINCIPAL,
    AclBinding,
    AclPlan,
    client_security,
    inbox_groups,
    inbox_topic,
    plan_acls,
    render_json,
    strimzi_users,
    submit_topic,
    submitters,
)
from bus.agencies import Agency, Registry, load_registry
from bus.cli._app import app
from bus.errors import ConfigError
from bus.routing import DEFAULT_POLICY_PATH, RoutingPolicy, load_policy, parse_policy
from bus.settings import REPO_ROOT

REGISTRY = load_registry(REPO_ROOT / "deploy" / "agencies.yaml")
POLICY = load_policy(DEFAULT_POLICY_PATH, REGISTRY)
PLAN = plan_acls(REGISTRY, POLICY)
PER_AGENCY = plan_acls(REGISTRY, POLICY, submit_topics="per_agency")
PREFIX = "casebus"
SUBMIT = f"{PREFIX}.submit"
DEAD = f"{PREFIX}.dead"
PARTIES = [a for a in REGISTRY.agencies if a.kind != "bus"]


def _groups(agency: Agency) -> tuple[str, ...]:
    return inbox_groups(PREFIX, agency.id, procuratorate=agency.kind == "procuratorate")


def test_every_party_and_bus_service_has_its_own_principal() -> None:
    assert set(PLAN.principals) == {a.id for a in PARTIES} | {SLA_PRINCIPAL, ROUTER_PRINCIPAL}
    assert "casebus" not in PLAN.principals  # the router's signing identity, no Kafka client


@pytest.mark.parametrize("agency", PARTIES, ids=lambda a: a.id)
def test_an_agency_writes_only_submit_and_reads_only_its_own_inbox(agency: Agency) -> None:
    mine = PLAN.principals[agency.id]
    assert {b.resource_name for b in mine if b.operation == "WRITE"} == {SUBMIT}
    assert {
        b.resource_name for b in mine if b.resource_type == "topic" and b.operation == "READ"
    } == {inbox_topic(PREFIX, agency.id)}
    assert all(b.pattern_type == "literal" for b in mine)
    assert {b.resource_type for b in mine} == {"topic", "group"}
    assert PLAN.allows(agency.id, "WRITE", "topic", SUBMIT)
    assert PLAN.allows(agency.id, "READ", "topic", inbox_topic(PREFIX, agency.id))
    assert PLAN.allows(agency.id, "READ", "group", f"{PREFIX}.inbox.{agency.id}")
    assert PLAN.allows(agency.id, "READ", "group", f"{PREFIX}.inbox.adapter.{agency.id}")
    assert not PLAN.allows(agency.id, "READ", "topic", SUBMIT)
    assert not PLAN.allows(agency.id, "WRITE", "topic", inbox_topic(PREFIX, agency.id))
    assert not PLAN.allows(agency.id, "READ", "topic", DEAD)
    assert not PLAN.allows(agency.id, "WRITE", "transactional_id", f"{PREFIX}.router.router-0")


@pytest.mark.parametrize("agency", [*PARTIES, REGISTRY.get(SLA_PRINCIPAL)], ids=lambda a: a.id)
def test_no_agency_reaches_another_agencys_inbox_or_group(agency: Agency) -> None:
    for other in REGISTRY.agencies:
        if other.id == agency.id:
            continue
        inbox = inbox_topic(PREFIX, other.id)
        assert not PLAN.allows(agency.id, "READ", "topic", inbox)
        assert not PLAN.allows(agency.id, "WRITE", "topic", inbox)
        assert not PLAN.allows(agency.id, "DESCRIBE", "topic", inbox)
        for group in _groups(other):
            assert not PLAN.allows(agency.id, "READ", "group", group), (agency.id, group)


def test_only_the_router_writes_inboxes_and_the_dead_letter_topic() -> None:
    for a in REGISTRY.agencies:
        writers = {
            p
            for p in PLAN.principals
            if PLAN.allows(p, "WRITE", "topic", inbox_topic(PREFIX, a.id))
        }
        assert writers == {ROUTER_PRINCIPAL}, a.id
    assert {p for p in PLAN.principals if PLAN.allows(p, "WRITE", "topic", DEAD)} == {
        ROUTER_PRINCIPAL
    }
    assert {p for p in PLAN.principals if PLAN.allows(p, "READ", "topic", SUBMIT)} == {
        ROUTER_PRINCIPAL
    }


def test_the_router_has_what_its_transactions_need() -> None:
    r = ROUTER_PRINCIPAL
    assert PLAN.allows(r, "READ", "topic", SUBMIT)
    assert PLAN.allows(r, "READ", "group", f"{PREFIX}.router")
    assert PLAN.allows(r, "WRITE", "transactional_id", f"{PREFIX}.router.router-0")
    assert PLAN.allows(r, "DESCRIBE", "transactional_id", f"{PREFIX}.router.router-7")
    assert PLAN.allows(r, "IDEMPOTENT_WRITE", "cluster", "kafka-cluster")
    assert not PLAN.allows(r, "READ", "topic", inbox_topic(PREFIX, "ygh.police.bureau"))
    assert not PLAN.allows(r, "READ", "group", f"{PREFIX}.inbox.ygh.police.bureau")
    # Nobody else may take over a router transaction or join the router's group.
    for p in PLAN.principals:
        if p != r:
            assert not PLAN.allows(p, "WRITE", "transactional_id", f"{PREFIX}.router.router-0")
            assert not PLAN.allows(p, "READ", "group", f"{PREFIX}.router")


def test_the_sla_engine_and_the_procuratorate_read_what_the_policy_gives_them() -> None:
    grants = POLICY.grants()
    assert grants[SLA_PRINCIPAL].receives and grants[SLA_PRINCIPAL].sends
    assert PLAN.allows(SLA_PRINCIPAL, "READ", "topic", inbox_topic(PREFIX, SLA_PRINCIPAL))
    assert PLAN.allows(SLA_PRINCIPAL, "READ", "group", f"{PREFIX}.inbox.{SLA_PRINCIPAL}")
    assert PLAN.allows(SLA_PRINCIPAL, "WRITE", "topic", SUBMIT)
    proc = "ygh.procuratorate"
    assert "criminal.transfer" in grants[proc].copied
    assert PLAN.allows(proc, "READ", "topic", inbox_topic(PREFIX, proc))
    assert PLAN.allows(proc, "READ", "group", f"{PREFIX}.inbox.audit-monitor")
    # The audit monitor's group is the procuratorate's alone.
    others = [p for p in PLAN.principals if p != proc]
    assert not any(PLAN.allows(p, "READ", "group", f"{PREFIX}.inbox.audit-monitor") for p in others)


def test_a_prefix_grant_would_open_casebus_sla_and_the_plan_says_so() -> None:
    """``casebus`` is a dotted prefix of ``casebus.sla``: a PREFIXED grant would leak."""
    leaky = AclBinding("x", "topic", inbox_topic(PREFIX, "casebus"), "prefixed", "READ")
    assert leaky.matches("topic", inbox_topic(PREFIX, "casebus.sla"))
    assert all(
        b.pattern_type == "literal"
        for p, bs in PLAN.principals.items()
        for b in bs
        if p != ROUTER_PRINCIPAL
    )


def test_a_principal_without_grants_gets_no_bindings() -> None:
    reg = Registry(
        agencies=[
            Agency(id="casebus", kind="bus", name="bus"),
            Agency(id="e", kind="enforcement", name="e"),
            Agency(id="p", kind="police", name="p"),
        ]
    )
    policy = _policy_enforcement_to_police(reg)
    plan = plan_acls(reg, policy, prefix="t")
    assert plan.allows("e", "WRITE", "topic", "t.submit")
    assert not plan.allows("e", "READ", "topic", "t.inbox.e")  # e receives nothing here
    assert plan.allows("p", "READ", "topic", "t.inbox.p")
    assert not plan.allows("p", "WRITE", "topic", "t.submit")  # p sends nothing here


def _policy_enforcement_to_police(reg: Registry) -> RoutingPolicy:
    from bus.models import KINDS

    rules = []
    for kind in KINDS:
        route = "[enforcement]" if kind == "criminal.transfer" else "[casebus]"
        to = "[police]" if kind == "criminal.transfer" else "[casebus]"
        rules.append(
            f"  {kind}:\n    zh: x\n    en: x\n"
            f"    routes:\n      - from: {route}\n        to: {to}\n"
        )
    return parse_policy("version: 1\nkinds:\n" + "".join(rules), reg)


_SEGMENT = st.from_regex(r"[a-z0-9]{1,4}", fullmatch=True)
_IDS = st.lists(
    st.lists(_SEGMENT, min_size=1, max_size=3).map(".".join), min_size=2, max_size=6, unique=True
)


def _police_and_enforcement(ids: list[str]) -> Registry | None:
    """The bus and the agencies ``ids``, police and enforcement in turn; None unless two of
    them are free to use (not the bus's own principals)."""
    ids = [i for i in ids if i not in ("casebus", ROUTER_PRINCIPAL, SLA_PRINCIPAL)]
    if len(ids) < 2:
        return None
    return Registry(
        agencies=[
            Agency(id="casebus", kind="bus", name="bus"),
            *(
                Agency(id=i, kind="police" if n % 2 else "enforcement", name=i)
                for n, i in enumerate(ids)
            ),
        ]
    )


@settings(max_examples=60, deadline=None)
@given(ids=_IDS, prefix=st.sampled_from(["casebus", "t", "a.b"]))
def test_isolation_holds_for_any_agency_ids(ids: list[str], prefix: str) -> None:
    """Whatever the ids (some dotted prefixes of others), no agency reaches another's inbox."""
    reg = _police_and_enforcement(ids)
    if reg is None:
        return
    plan = plan_acls(reg, _policy_enforcement_to_police(reg), prefix=prefix)
    for a in ids:
        for b in ids:
            if a == b:
                continue
            assert not plan.allows(a, "READ", "topic", inbox_topic(prefix, b))
            for g in inbox_groups(prefix, b):
                assert not plan.allows(a, "READ", "group", g)


def test_an_agency_named_like_an_adapter_group_is_refused() -> None:
    """``adapter.x``'s own group would be ``x``'s adapter group: the plan refuses to start."""
    reg = Registry(
        agencies=[
            Agency(id="casebus", kind="bus", name="bus"),
            Agency(id="x", kind="enforcement", name="x"),
            Agency(id="adapter.x", kind="police", name="y"),
        ]
    )
    with pytest.raises(ConfigError, match="not isolated"):
        plan_acls(reg, _policy_enforcement_to_police(reg))


def test_strimzi_users_carry_exactly_the_plan() -> None:
    users = strimzi_users(PLAN, cluster="casebus", namespace="casebus")
    assert [u["metadata"]["name"] for u in users] == list(PLAN.principals)
    for user in users:
        spec = user["spec"]
        assert spec["authentication"] == {"type": "scram-sha-512"}
        got = _flatten(user)
        want = {
            (b.resource_type, b.resource_name, b.pattern_type, b.operation)
            for b in PLAN.principals[user["metadata"]["name"]]
        }
        assert got == want


def _flatten(user: dict[str, Any]) -> set[tuple[str, str, str, str]]:
    """A KafkaUser's ACLs back in plan terms."""
    types = {
        "topic": "topic",
        "group": "group",
        "transactionalId": "transactional_id",
        "cluster": "cluster",
    }
    ops = {
        "Read": "READ",
        "Write": "WRITE",
        "Describe": "DESCRIBE",
        "IdempotentWrite": "IDEMPOTENT_WRITE",
    }
    out = set()
    for acl in user["spec"]["authorization"]["acls"]:
        r = acl["resource"]
        name = r.get("name", "kafka-cluster")
        pattern = r.get("patternType", "literal")
        for op in acl["operations"]:
            out.add((types[r["type"]], name, pattern, ops[op]))
    return out


@pytest.fixture
def runner() -> Iterator[CliRunner]:
    # The root callback points structlog at the runner's stderr, closed after the call; put
    # the previous configuration back for the tests that run after.
    saved = structlog.get_config()
    yield CliRunner()
    structlog.configure(**saved)


def test_cli_plan_prints_text_json_and_strimzi(runner: CliRunner) -> None:
    text = runner.invoke(app, ["acl", "plan"])
    assert text.exit_code == 0, text.output
    assert f"User:{ROUTER_PRINCIPAL}  ALLOW  IDEMPOTENT_WRITE" in text.output
    assert (
        "User:ygh.police.bureau  ALLOW  READ             "
        "topic:literal:casebus.inbox.ygh.police.bureau" in text.output
    )
    js = runner.invoke(app, ["acl", "plan", "--format", "json"])
    assert js.exit_code == 0
    assert json.loads(js.output) == json.loads(render_json(PLAN))
    st_out = runner.invoke(app, ["acl", "plan", "--format", "strimzi"])
    assert st_out.exit_code == 0
    docs = list(yaml.safe_load_all(st_out.output))
    assert {d["kind"] for d in docs} == {"KafkaUser"}
    bad = runner.invoke(app, ["acl", "plan", "--format", "xml"])
    assert bad.exit_code == 2


def test_client_security_plaintext_is_empty_and_sasl_needs_everything(tmp_path: Path) -> None:
    assert client_security(protocol="PLAINTEXT") == {}
    with pytest.raises(ConfigError, match="password"):
        client_security(protocol="SASL_SSL", username="u", ca_file=tmp_path / "ca.crt")
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    pw.chmod(0o600)
    ca = self_signed_ca(tmp_path)
    kw = client_security(protocol="SASL_SSL", username="u", password_file=pw, ca_file=ca)
    assert kw["sasl_plain_password"] == "s3cret"
    assert kw["sasl_mechanism"] == "SCRAM-SHA-512"
    assert isinstance(kw["ssl_context"], ssl.SSLContext)


def test_plan_type_is_frozen() -> None:
    assert isinstance(PLAN, AclPlan)
    with pytest.raises(AttributeError):
        PLAN.prefix = "x"  # type: ignore[misc]


def test_an_agency_named_like_the_router_user_is_refused() -> None:
    reg = Registry(
        agencies=[
            Agency(id="casebus", kind="bus", name="bus"),
            Agency(id="e", kind="enforcement", name="e"),
            Agency(id="p", kind="police", name="p"),
            Agency(id=ROUTER_PRINCIPAL, kind="bus", name="r", parent="casebus"),
        ]
    )
    with pytest.raises(ConfigError, match="router's Kafka user"):
        plan_acls(reg, _policy_enforcement_to_police(reg))


# --- per-agency submit topics ----------------------------------------------------------------


def test_the_submitters_are_the_principals_that_may_send() -> None:
    senders = submitters(REGISTRY, POLICY)
    assert "casebus" not in senders  # the router writes its own messages straight to inboxes
    assert set(senders) == {a.id for a in PARTIES} | {SLA_PRINCIPAL}
    assert list(senders) == [a.id for a in REGISTRY.agencies if a.id in senders]


def test_per_agency_plan_has_the_same_principals_and_inbox_bindings() -> None:
    assert set(PER_AGENCY.principals) == set(PLAN.principals)
    for principal, bindings in PLAN.principals.items():
        shared = {b for b in bindings if "submit" not in b.resource_name}
        mine = {b for b in PER_AGENCY.principals[principal] if "submit" not in b.resource_name}
        assert shared == mine, principal


@pytest.mark.parametrize("agency", [*PARTIES, REGISTRY.get(SLA_PRINCIPAL)], ids=lambda a: a.id)
def test_per_agency_an_agency_writes_only_its_own_submit_topic(agency: Agency) -> None:
    own = submit_topic(PREFIX, agency.id)
    written = {b.resource_name for b in PER_AGENCY.principals[agency.id] if b.operation == "WRITE"}
    assert written == {own}
    assert PER_AGENCY.allows(agency.id, "DESCRIBE", "topic", own)
    assert not PER_AGENCY.allows(agency.id, "READ", "topic", own)
    assert not PER_AGENCY.allows(agency.id, "WRITE", "topic", SUBMIT)
    for other in submitters(REGISTRY, POLICY):
        if other != agency.id:
            assert not PER_AGENCY.allows(agency.id, "WRITE", "topic", submit_topic(PREFIX, other))


def test_per_agency_only_the_router_reads_the_submit_topics_and_it_reads_them_all() -> None:
    for sender in submitters(REGISTRY, POLICY):
        topic = submit_topic(PREFIX, sender)
        readers = {p for p in PER_AGENCY.principals if PER_AGENCY.allows(p, "READ", "topic", topic)}
        writers = {
            p for p in PER_AGENCY.principals if PER_AGENCY.allows(p, "WRITE", "topic", topic)
        }
        assert readers == {ROUTER_PRINCIPAL}, topic
        assert writers == {sender}, topic
    # The shared topic is nobody's any more: a forgotten client fails loudly, not silently.
    assert not any(PER_AGENCY.allows(p, "WRITE", "topic", SUBMIT) for p in PER_AGENCY.principals)
    assert not PER_AGENCY.allows(ROUTER_PRINCIPAL, "READ", "topic", SUBMIT)


@settings(max_examples=40, deadline=None)
@given(ids=_IDS, prefix=st.sampled_from(["casebus", "t", "a.b"]))
def test_per_agency_no_agency_writes_another_submit_topic_for_any_ids(
    ids: list[str], prefix: str
) -> None:
    """Dotted ids that prefix each other (``x`` and ``x.y``) still get disjoint topics."""
    reg = _police_and_enforcement(ids)
    if reg is None:
        return
    policy = _policy_enforcement_to_police(reg)
    plan = plan_acls(reg, policy, prefix=prefix, submit_topics="per_agency")
    senders = set(submitters(reg, policy))
    assert senders == {i for n, i in enumerate(ids) if n % 2 == 0}  # the enforcement ones
    for a in ids:
        assert plan.allows(a, "WRITE", "topic", submit_topic(prefix, a)) == (a in senders)
        for b in ids:
            if a != b:
                assert not plan.allows(a, "WRITE", "topic", submit_topic(prefix, b))


def test_cli_plan_follows_the_submit_topics_setting(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CASEBUS_SUBMIT_TOPICS", "per_agency")
    out = runner.invoke(app, ["acl", "plan", "--format", "json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output) == json.loads(render_json(PER_AGENCY))
    assert (
        "topic:literal:casebus.submit.ygh.police.bureau"
        in runner.invoke(app, ["acl", "plan"]).output
    )


def test_client_security_takes_the_mechanism_and_refuses_a_bad_ca(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    pw.chmod(0o600)
    ca = self_signed_ca(tmp_path)
    kw = client_security(
        protocol="SASL_SSL", username="u", password_file=pw, ca_file=ca, mechanism="SCRAM-SHA-256"
    )
    assert kw["sasl_mechanism"] == "SCRAM-SHA-256"
    junk = tmp_path / "junk.crt"
    junk.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match="CA certificate"):
        client_security(protocol="SASL_SSL", username="u", password_file=pw, ca_file=junk)
