"""Kafka ACLs derived from the agency registry and the routing policy (``casebus acl plan``).

Design.md §1: every party writes only to ``<prefix>.submit`` and reads only its own inbox; Kafka
ACLs enforce it. :func:`plan_acls` turns the registry and :meth:`RoutingPolicy.grants` into
the exact bindings, one Kafka principal (``User:<name>``, a SCRAM user) per agency and per bus
service:

- an agency that may send anything: WRITE and DESCRIBE on ``<prefix>.submit``, or, with
  per-agency submit topics (``CASEBUS_SUBMIT_TOPICS=per_agency``), on its own
  ``<prefix>.submit.<agency>`` only: then a record's topic names the principal that wrote it,
  and the router refuses an envelope whose ``sender`` is another agency;
- an agency that may receive anything: READ and DESCRIBE on its own inbox
  ``<prefix>.inbox.<agency>``, and READ on the consumer groups the code uses for that inbox
  (``<prefix>.inbox.<agency>`` and the adapter's ``<prefix>.inbox.adapter.<agency>``; the
  procuratorate also the audit monitor's ``<prefix>.inbox.audit-monitor``);
- the SLA engine (``casebus.sla``) is an agency like the others: it reads its inbox, where the
  policy sends it its copies, and writes ``sla.*`` to submit;
- the router reads submit (every per-agency submit topic) in group ``<prefix>.router``,
  writes every inbox and the dead-letter
  topic, in transactions whose ids start with ``<prefix>.router.``.

Every topic and group binding is LITERAL. A prefixed grant on ``<prefix>.inbox.<agency>``
would be wrong here: agency ids are dotted and one can be the prefix of another (``casebus`` and
``casebus.sla``), so a prefix grant to one would open the other's inbox. :func:`plan_acls`
refuses a plan in which one agency's binding matches another agency's inbox or group.

The ``casebus`` agency is the router's signing identity, not a Kafka client of its own: it gets
no principal. Messages addressed to it stay in its inbox for the audit trail.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import yaml

from bus.agencies import Registry
from bus.errors import ConfigError
from bus.routing import RoutingPolicy
from bus.secret_files import read_secret_file
from bus.settings import SaslMechanism, SecurityProtocol, SubmitTopics

__all__ = [
    "CLUSTER_RESOURCE",
    "ROUTER_PRINCIPAL",
    "SLA_PRINCIPAL",
    "AclBinding",
    "AclPlan",
    "Operation",
    "PatternType",
    "ResourceType",
    "SaslMechanism",
    "SecurityProtocol",
    "SubmitTopics",
    "client_security",
    "inbox_groups",
    "inbox_topic",
    "plan_acls",
    "render_json",
    "render_strimzi_users",
    "render_text",
    "strimzi_acls",
    "strimzi_users",
    "submit_topic",
    "submitters",
]

ResourceType = Literal["topic", "group", "transactional_id", "cluster"]
PatternType = Literal["literal", "prefixed"]
Operation = Literal["READ", "WRITE", "DESCRIBE", "IDEMPOTENT_WRITE"]

ROUTER_PRINCIPAL: Final = "casebus.router"
"""The router's SCRAM user; it is no agency, so it cannot collide with an agency's name."""
SLA_PRINCIPAL: Final = "casebus.sla"
"""The SLA engine's SCRAM user: the agency id it reads and sends as."""
CLUSTER_RESOURCE: Final = "kafka-cluster"
"""Kafka's one name for the cluster resource."""

_NO_PRINCIPAL: Final = frozenset({"casebus"})
_MONITOR_GROUP: Final = "audit-monitor"

# Strimzi spells resource types and operations its own way (KafkaUser simple authorization).
_STRIMZI_TYPE: Final[Mapping[ResourceType, str]] = {
    "topic": "topic",
    "group": "group",
    "transactional_id": "transactionalId",
    "cluster": "cluster",
}
_STRIMZI_OP: Final[Mapping[Operation, str]] = {
    "READ": "Read",
    "WRITE": "Write",
    "DESCRIBE": "Describe",
    "IDEMPOTENT_WRITE": "IdempotentWrite",
}


@dataclass(frozen=True, slots=True, order=True)
class AclBinding:
    """One ALLOW binding: ``principal`` may do ``operation`` on the named resource(s)."""

    principal: str
    """The SCRAM user name, without ``User:``."""
    resource_type: ResourceType
    resource_name: str
    pattern_type: PatternType
    operation: Operation

    def matches(self, resource_type: ResourceType, name: str) -> bool:
        """Whether this binding's resource pattern covers the resource ``name``."""
        if resource_type != self.resource_type:
            return False
        if self.pattern_type == "prefixed":
            return name.startswith(self.resource_name)
        return name == self.resource_name

    def line(self) -> str:
        """One human-readable line, as ``casebus acl plan`` prints it."""
        return (
            f"User:{self.principal}  ALLOW  {self.operation:<16} "
            f"{self.resource_type}:{self.pattern_type}:{self.resource_name}"
        )


@dataclass(frozen=True, slots=True)
class AclPlan:
    """Every binding of one deployment, grouped by principal (registry order, router last)."""

    prefix: str
    principals: dict[str, tuple[AclBinding, ...]] = field(default_factory=dict)
    agencies: dict[str, str] = field(default_factory=dict)
    """Principal → the agency id it acts for (the router acts for none)."""

    def bindings(self) -> list[AclBinding]:
        """Every binding, principal by principal."""
        return [b for bs in self.principals.values() for b in bs]

    def allows(
        self, principal: str, operation: Operation, resource_type: ResourceType, name: str
    ) -> bool:
        """Whether the plan lets ``principal`` do ``operation`` on one resource.

        Kafka's implications are applied: READ or WRITE on a topic, or READ on a group, also
        allow DESCRIBE.
        """
        implied: set[Operation] = {operation}
        if operation == "DESCRIBE":
            implied |= {"READ", "WRITE"}
        return any(
            b.operation in implied and b.matches(resource_type, name)
            for b in self.principals.get(principal, ())
        )


def submit_topic(prefix: str, agency_id: str | None = None) -> str:
    """The shared submit topic, or ``agency_id``'s own (as
    :meth:`bus.settings.Settings.topic_submit`)."""
    return f"{prefix}.submit" if agency_id is None else f"{prefix}.submit.{agency_id}"


def _has_principal(registry: Registry, agency_id: str) -> bool:
    agency = registry.get(agency_id)
    if agency is None or agency.id in _NO_PRINCIPAL:
        return False
    return agency.kind != "bus" or agency.id == SLA_PRINCIPAL


def submitters(registry: Registry, policy: RoutingPolicy) -> tuple[str, ...]:
    """The agencies that write submit as Kafka clients: they have a principal and the policy
    lets them send something. With per-agency submit topics, each has one (registry order)."""
    grants = policy.grants()
    return tuple(
        a.id for a in registry.agencies if _has_principal(registry, a.id) and grants[a.id].sends
    )


def inbox_topic(prefix: str, agency_id: str) -> str:
    """The inbox topic of one agency (as :meth:`bus.settings.Settings.topic_inbox`)."""
    return f"{prefix}.inbox.{agency_id}"


def inbox_groups(
    prefix: str, agency_id: str, *, adapter: bool = True, procuratorate: bool = False
) -> tuple[str, ...]:
    """The consumer groups the code reads one agency's inbox with (see ``bus.inbox``)."""
    groups = [f"{prefix}.inbox.{agency_id}"]
    if adapter:
        groups.append(f"{prefix}.inbox.adapter.{agency_id}")
    if procuratorate:
        groups.append(f"{prefix}.inbox.{_MONITOR_GROUP}")
    return tuple(groups)


def plan_acls(
    registry: Registry,
    policy: RoutingPolicy,
    *,
    prefix: str = "casebus",
    submit_topics: SubmitTopics = "shared",
) -> AclPlan:
    """The ACL plan for ``registry`` under ``policy``; ConfigError if two principals overlap.

    ``submit_topics="per_agency"`` gives each sender WRITE on its own submit topic alone.
    """
    per_agency = submit_topics == "per_agency"
    dead = f"{prefix}.dead"
    senders = submitters(registry, policy)
    router_reads = (
        [submit_topic(prefix, a) for a in senders] if per_agency else [submit_topic(prefix)]
    )
    grants = policy.grants()
    principals: dict[str, tuple[AclBinding, ...]] = {}
    agencies: dict[str, str] = {}
    if registry.get(ROUTER_PRINCIPAL) is not None:
        raise ConfigError(f"agency id {ROUTER_PRINCIPAL!r} is the router's Kafka user; rename it")
    for agency in registry.agencies:
        if not _has_principal(registry, agency.id):
            continue
        g = grants[agency.id]
        out: list[AclBinding] = []
        if g.sends:
            submit = submit_topic(prefix, agency.id if per_agency else None)
            out += [
                AclBinding(agency.id, "topic", submit, "literal", "WRITE"),
                AclBinding(agency.id, "topic", submit, "literal", "DESCRIBE"),
            ]
        if g.receives:
            inbox = inbox_topic(prefix, agency.id)
            out += [
                AclBinding(agency.id, "topic", inbox, "literal", "READ"),
                AclBinding(agency.id, "topic", inbox, "literal", "DESCRIBE"),
            ]
            groups = inbox_groups(
                prefix,
                agency.id,
                adapter=agency.kind != "bus",
                procuratorate=agency.kind == "procuratorate",
            )
            out += [AclBinding(agency.id, "group", grp, "literal", "READ") for grp in groups]
        if out:
            principals[agency.id] = tuple(out)
            agencies[agency.id] = agency.id
    r = ROUTER_PRINCIPAL
    router: list[AclBinding] = []
    for topic in router_reads:
        router += [
            AclBinding(r, "topic", topic, "literal", "READ"),
            AclBinding(r, "topic", topic, "literal", "DESCRIBE"),
        ]
    router.append(AclBinding(r, "group", f"{prefix}.router", "literal", "READ"))
    for topic in [*(inbox_topic(prefix, a) for a in registry.ids()), dead]:
        router += [
            AclBinding(r, "topic", topic, "literal", "WRITE"),
            AclBinding(r, "topic", topic, "literal", "DESCRIBE"),
        ]
    router += [
        AclBinding(r, "transactional_id", f"{prefix}.router.", "prefixed", "WRITE"),
        AclBinding(r, "transactional_id", f"{prefix}.router.", "prefixed", "DESCRIBE"),
        AclBinding(r, "cluster", CLUSTER_RESOURCE, "literal", "IDEMPOTENT_WRITE"),
    ]
    principals[r] = tuple(router)
    plan = AclPlan(prefix=prefix, principals=principals, agencies=agencies)
    _check_isolation(plan, registry)
    return plan


def _check_isolation(plan: AclPlan, registry: Registry) -> None:
    """No agency principal may reach another agency's inbox, inbox groups or own submit topic."""
    problems: list[str] = []
    for principal, agency_id in plan.agencies.items():
        for other in registry.agencies:
            if other.id == agency_id:
                continue
            inbox = inbox_topic(plan.prefix, other.id)
            groups = inbox_groups(
                plan.prefix, other.id, procuratorate=other.kind == "procuratorate"
            )
            submit = submit_topic(plan.prefix, other.id)
            for b in plan.principals[principal]:
                if b.matches("topic", inbox) or any(b.matches("group", g) for g in groups):
                    problems.append(f"{principal}: {b.line().strip()} reaches {other.id}'s inbox")
                if b.operation == "WRITE" and b.matches("topic", submit):
                    problems.append(
                        f"{principal}: {b.line().strip()} writes {other.id}'s submit topic"
                    )
    if problems:
        raise ConfigError("ACL plan is not isolated:\n  " + "\n  ".join(problems))


# --- rendering -------------------------------------------------------------------------------


def render_text(plan: AclPlan) -> str:
    """The plan as text: one block per principal, one line per binding."""
    blocks = []
    for principal, bindings in plan.principals.items():
        head = f"# {principal} ({len(bindings)} bindings)"
        blocks.append("\n".join([head, *(b.line() for b in bindings)]))
    return "\n\n".join(blocks) + "\n"


def render_json(plan: AclPlan) -> str:
    """The plan as JSON: ``{"prefix": ..., "bindings": [{...}, ...]}``."""
    doc = {"prefix": plan.prefix, "bindings": [asdict(b) for b in plan.bindings()]}
    return json.dumps(doc, ensure_ascii=False, indent=2) + "\n"


def strimzi_acls(bindings: Iterable[AclBinding]) -> list[dict[str, object]]:
    """Bindings in Strimzi's ``KafkaUser.spec.authorization.acls`` form, one entry per resource."""
    merged: dict[tuple[ResourceType, str, PatternType], list[str]] = {}
    for b in bindings:
        key = (b.resource_type, b.resource_name, b.pattern_type)
        merged.setdefault(key, []).append(_STRIMZI_OP[b.operation])
    out: list[dict[str, object]] = []
    for (rtype, name, pattern), ops in merged.items():
        resource: dict[str, object] = {"type": _STRIMZI_TYPE[rtype]}
        if rtype != "cluster":
            resource |= {"name": name, "patternType": pattern}
        out.append({"resource": resource, "operations": ops, "host": "*"})
    return out


def strimzi_users(plan: AclPlan, *, cluster: str, namespace: str) -> list[dict[str, Any]]:
    """One Strimzi ``KafkaUser`` (SCRAM-SHA-512, simple authorization) per principal."""
    users: list[dict[str, Any]] = []
    for principal, bindings in plan.principals.items():
        if "_" in principal:
            # A KafkaUser's name is the SCRAM user name and must be a DNS-1123 subdomain.
            raise ConfigError(f"principal {principal!r}: '_' is not allowed in a KafkaUser name")
        users.append(
            {
                "apiVersion": "kafka.strimzi.io/v1beta2",
                "kind": "KafkaUser",
                "metadata": {
                    "name": principal,
                    "namespace": namespace,
                    "labels": {
                        "strimzi.io/cluster": cluster,
                        "app.kubernetes.io/part-of": "casebus",
                    },
                },
                "spec": {
                    "authentication": {"type": "scram-sha-512"},
                    "authorization": {"type": "simple", "acls": strimzi_acls(bindings)},
                },
            }
        )
    return users


def render_strimzi_users(
    plan: AclPlan, *, cluster: str = "casebus", namespace: str = "casebus"
) -> str:
    """The KafkaUsers as one multi-document YAML stream."""
    docs = strimzi_users(plan, cluster=cluster, namespace=namespace)
    head = "# Generated by `casebus acl plan --format strimzi`; do not edit by hand.\n"
    return head + yaml.safe_dump_all(docs, sort_keys=False, allow_unicode=True, explicit_start=True)


# --- clients ---------------------------------------------------------------------------------


def client_security(
    *,
    protocol: SecurityProtocol,
    username: str | None = None,
    password: str | None = None,
    password_file: Path | None = None,
    ca_file: Path | None = None,
    mechanism: SaslMechanism = "SCRAM-SHA-512",
) -> dict[str, object]:
    """Keyword arguments for aiokafka clients (producer, consumer, admin) on a secure listener.

    ``PLAINTEXT`` gives ``{}``: the default local broker. ``SASL_SSL`` needs a user and a
    password (given, or read from ``password_file`` so it never sits in the environment) and
    verifies the broker against ``ca_file``. Services call
    :meth:`bus.settings.Settings.kafka_client_options`, which comes here.
    """
    if protocol == "PLAINTEXT":
        return {}
    if password is None and password_file is not None:
        password = (
            read_secret_file(
                password_file,
                what="Kafka password file",
                leak=f"anyone could connect as {username}",
            )
            .decode("utf-8")
            .strip()
        )
    missing = [
        name
        for name, value in (("username", username), ("password", password), ("ca_file", ca_file))
        if not value
    ]
    if missing:
        raise ConfigError(f"SASL_SSL needs {', '.join(missing)}")
    try:
        context = ssl.create_default_context(cafile=str(ca_file))
    except (OSError, ssl.SSLError) as e:
        raise ConfigError(f"cannot load the Kafka CA certificate {ca_file}: {e}") from e
    return {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": mechanism,
        "sasl_plain_username": username,
        "sasl_plain_password": password,
        "ssl_context": context,
    }
