"""Carrying an ACL plan out on a Kafka cluster: reconcile bindings, set or drop SCRAM users.

Access must end when the registry says so: an agency removed from ``deploy/agencies.yaml``, or
one whose kind changed, must lose what it no longer has. So ``casebus acl apply`` does not only
add the plan's bindings; :func:`acl_changes` (pure: a millisecond test calls it) compares the
plan with the cluster's bindings and :func:`apply_acls` adds what is missing, then removes what
the plan no longer has. It removes only bindings casebus manages (:func:`is_managed`): ALLOW
bindings of a principal named the way casebus names its principals (an agency id or
``casebus.router``: lowercase, dotted) on a resource of this deployment's topic prefix; a
super user, an operator's tool or another deployment under another prefix is never touched.

aiokafka's admin client has no ACL or SCRAM calls; Kafka's CreateAcls, DescribeAcls and
DeleteAcls requests are sent through it, and AlterUserScramCredentials (API 51, which aiokafka
does not define) is defined here. SCRAM passwords come from files and are salted here, so no
password is ever on a command line.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import (
    CompactArray,
    CompactBytes,
    CompactString,
    Int8,
    Int16,
    Int32,
    Schema,
    TaggedFields,
)

from bus.acl import (
    CLUSTER_RESOURCE,
    ROUTER_PRINCIPAL,
    AclBinding,
    AclPlan,
    Operation,
    PatternType,
    ResourceType,
)
from bus.errors import TransportError
from bus.settings import SaslMechanism

__all__ = [
    "AclChanges",
    "acl_changes",
    "apply_acls",
    "delete_scram_users",
    "describe_acls",
    "is_managed",
    "set_scram_users",
]

# Kafka's wire codes (org.apache.kafka.common.acl / resource).
_RESOURCE_CODE: Final[Mapping[ResourceType, int]] = {
    "topic": 2,
    "group": 3,
    "cluster": 4,
    "transactional_id": 5,
}
_PATTERN_CODE: Final[Mapping[PatternType, int]] = {"literal": 3, "prefixed": 4}
_OPERATION_CODE: Final[Mapping[Operation, int]] = {
    "READ": 3,
    "WRITE": 4,
    "DESCRIBE": 8,
    "IDEMPOTENT_WRITE": 12,
}
_RESOURCE_OF: Final = {v: k for k, v in _RESOURCE_CODE.items()}
_PATTERN_OF: Final = {v: k for k, v in _PATTERN_CODE.items()}
_OPERATION_OF: Final = {v: k for k, v in _OPERATION_CODE.items()}
_ANY: Final = 1
_ALLOW: Final = 3
_SCRAM_CODE: Final[Mapping[SaslMechanism, int]] = {"SCRAM-SHA-256": 1, "SCRAM-SHA-512": 2}
_SCRAM_ITERATIONS: Final = 8192
_RESOURCE_NOT_FOUND: Final = 91

# The names casebus gives principals: agency ids with at least one dot, and casebus.router.
# `admin`, `CN=...` and tools' users (`kafka-exporter`) never match.
_MANAGED_PRINCIPAL: Final = re.compile(r"^[a-z0-9]+(\.[a-z0-9_]+)+$")


@dataclass(frozen=True, slots=True)
class AclChanges:
    """What reconciling a plan with a cluster does: bindings to add and to remove."""

    add: tuple[AclBinding, ...]
    remove: tuple[AclBinding, ...]
    kept: int
    """Bindings the plan has that the cluster already had."""

    def lines(self) -> list[str]:
        """``+ <binding>`` and ``- <binding>`` lines, as ``acl apply --dry-run`` prints them."""
        return [f"+ {b.line()}" for b in self.add] + [f"- {b.line()}" for b in self.remove]


def _own_resource(prefix: str, resource_type: ResourceType, name: str) -> bool:
    if resource_type == "topic":
        return name in (f"{prefix}.submit", f"{prefix}.dead") or name.startswith(
            (f"{prefix}.submit.", f"{prefix}.inbox.")
        )
    if resource_type == "group":
        return name == f"{prefix}.router" or name.startswith(f"{prefix}.inbox.")
    if resource_type == "transactional_id":
        return name.startswith(f"{prefix}.router.")
    return False


def is_managed(binding: AclBinding, prefix: str) -> bool:
    """Whether casebus manages ``binding`` for the deployment of topic prefix ``prefix``, so
    that ``acl apply`` may remove it when the plan no longer has it."""
    if not _MANAGED_PRINCIPAL.match(binding.principal):
        return False
    if binding.resource_type == "cluster":
        return binding.principal == ROUTER_PRINCIPAL and binding.resource_name == CLUSTER_RESOURCE
    return _own_resource(prefix, binding.resource_type, binding.resource_name)


def acl_changes(plan: AclPlan, current: Iterable[AclBinding]) -> AclChanges:
    """What makes the cluster's bindings ``current`` say what ``plan`` says (pure)."""
    have = set(current)
    want = plan.bindings()
    wanted = set(want)
    add = tuple(b for b in want if b not in have)
    remove = tuple(sorted(b for b in have - wanted if is_managed(b, plan.prefix)))
    return AclChanges(add=add, remove=remove, kept=len(wanted) - len(add))


def _binding(resource: tuple[Any, ...], acl: tuple[Any, ...]) -> AclBinding | None:
    """A described ACL as an AclBinding; None for anything casebus never writes (DENY, a host,
    another operation or resource type, a principal type other than User)."""
    rtype, name, pattern = _RESOURCE_OF.get(resource[0]), resource[1], _PATTERN_OF.get(resource[2])
    principal, host, op, permission = acl
    operation = _OPERATION_OF.get(op)
    if (
        rtype is None
        or pattern is None
        or operation is None
        or permission != _ALLOW
        or host != "*"
        or not str(principal).startswith("User:")
    ):
        return None
    return AclBinding(str(principal).removeprefix("User:"), rtype, str(name), pattern, operation)


async def describe_acls(admin: Any) -> list[AclBinding]:
    """Every ALLOW binding on the cluster that casebus could have written (see _binding)."""
    from aiokafka.errors import for_code
    from aiokafka.protocol.admin import DescribeAclsRequest

    # None is Kafka's "any name / principal / host" (a nullable string).
    request = DescribeAclsRequest(_ANY, None, _ANY, None, None, _ANY, _ANY)
    response = await admin._send_request(request)
    if response.error_code:
        error = for_code(response.error_code)
        raise TransportError(
            f"Kafka refused to describe ACLs: {error.__name__} {response.error_message}",
            retriable=False,
        )
    out: list[AclBinding] = []
    for resource in response.resources:
        for acl in resource[3]:
            b = _binding(resource, acl)
            if b is not None:
                out.append(b)
    return out


def _exact(b: AclBinding) -> dict[str, Any]:
    """The wire fields of one casebus binding (an ALLOW for one principal on any host), the same
    for creating it and for a delete filter that matches it and nothing else."""
    return {
        "resource_type": _RESOURCE_CODE[b.resource_type],
        "resource_name": b.resource_name,
        "resource_pattern_type_filter": _PATTERN_CODE[b.pattern_type],
        "principal": f"User:{b.principal}",
        "host": "*",
        "operation": _OPERATION_CODE[b.operation],
        "permission_type": _ALLOW,
    }


async def _create(admin: Any, b: AclBinding) -> None:
    from aiokafka.errors import for_code
    from aiokafka.protocol.admin import CreateAclsRequest

    request = CreateAclsRequest(**_exact(b))
    # A private method: aiokafka has no public way to send an admin request.
    response = await admin._send_request(request)
    for code, message in response.creation_responses:
        if code != 0:
            raise TransportError(
                f"Kafka refused ACL {b.line().strip()}: {for_code(code).__name__} {message}",
                retriable=False,
            )


async def _delete(admin: Any, b: AclBinding) -> None:
    from aiokafka.errors import for_code
    from aiokafka.protocol.admin import DeleteAclsRequest

    # Every field exact: the filter matches this one binding and nothing else.
    request = DeleteAclsRequest(**_exact(b))
    response = await admin._send_request(request)
    for code, message, *_ in response.filter_responses:
        if code != 0:
            raise TransportError(
                f"Kafka refused to delete ACL {b.line().strip()}: "
                f"{for_code(code).__name__} {message}",
                retriable=False,
            )


async def apply_acls(plan: AclPlan, *, admin: Any, dry_run: bool = False) -> AclChanges:
    """Reconcile the cluster with ``plan`` through a started super user's admin client.

    Bindings are added first and removed after, so no principal the plan keeps loses access
    in between. ``dry_run`` only computes the changes. Raises
    :class:`~bus.errors.TransportError` naming the binding Kafka refused.
    """
    from aiokafka.errors import KafkaError

    try:
        changes = acl_changes(plan, await describe_acls(admin))
        if not dry_run:
            for b in changes.add:
                await _create(admin, b)
            for b in changes.remove:
                await _delete(admin, b)
        return changes
    except KafkaError as e:
        raise TransportError(f"applying ACLs failed: {e}", retriable=True) from e


# --- SCRAM users (AlterUserScramCredentials, KIP-554) -----------------------------------------


# aiokafka's protocol classes are untyped (Any) to mypy.
class _AlterScramResponse_v0(Response):  # type: ignore[misc]
    API_KEY = 51
    API_VERSION = 0
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "results",
            CompactArray(
                ("user", CompactString("utf-8")),
                ("error_code", Int16),
                ("error_message", CompactString("utf-8")),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class _AlterScramRequest_v0(RequestStruct):  # type: ignore[misc]
    FLEXIBLE_VERSION = True
    API_KEY = 51
    API_VERSION = 0
    RESPONSE_TYPE = _AlterScramResponse_v0
    SCHEMA = Schema(
        (
            "deletions",
            CompactArray(
                ("name", CompactString("utf-8")), ("mechanism", Int8), ("tags", TaggedFields)
            ),
        ),
        (
            "upsertions",
            CompactArray(
                ("name", CompactString("utf-8")),
                ("mechanism", Int8),
                ("iterations", Int32),
                ("salt", CompactBytes),
                ("salted_password", CompactBytes),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class _AlterScramRequest(Request[_AlterScramRequest_v0]):  # type: ignore[misc]
    API_KEY = 51

    def __init__(self, deletions: list[tuple[Any, ...]], upsertions: list[tuple[Any, ...]]):
        self._deletions = deletions
        self._upsertions = upsertions

    def build(self, request_struct_class: type[_AlterScramRequest_v0]) -> _AlterScramRequest_v0:
        return request_struct_class(self._deletions, self._upsertions, {})


async def _alter_scram(
    admin: Any, deletions: list[tuple[Any, ...]], upsertions: list[tuple[Any, ...]]
) -> list[str]:
    """Send one AlterUserScramCredentials; the users Kafka changed. A deletion of a user that
    has no credential is no error (it is already gone)."""
    from aiokafka.errors import KafkaError, for_code

    try:
        response = await admin._send_request(_AlterScramRequest(deletions, upsertions))
    except KafkaError as e:
        raise TransportError(f"changing SCRAM users failed: {e}", retriable=True) from e
    done: list[str] = []
    for user, code, message, _tags in response.results:
        if code == _RESOURCE_NOT_FOUND and not upsertions:
            continue
        if code != 0:
            raise TransportError(
                f"Kafka refused the SCRAM credential of {user}: {for_code(code).__name__} "
                f"{message}",
                retriable=False,
                agency=user,
            )
        done.append(user)
    return done


async def set_scram_users(
    admin: Any, passwords: Mapping[str, str], *, mechanism: SaslMechanism = "SCRAM-SHA-512"
) -> list[str]:
    """Create or update one SCRAM user per ``name → password`` (salted here, as Kafka's own
    tools do: PBKDF2-HMAC with a random salt)."""
    algorithm = "sha512" if mechanism == "SCRAM-SHA-512" else "sha256"
    upsertions: list[tuple[Any, ...]] = []
    for name, password in passwords.items():
        salt = secrets.token_bytes(32)
        salted = hashlib.pbkdf2_hmac(algorithm, password.encode(), salt, _SCRAM_ITERATIONS)
        upsertions.append((name, _SCRAM_CODE[mechanism], _SCRAM_ITERATIONS, salt, salted, {}))
    return await _alter_scram(admin, [], upsertions)


async def delete_scram_users(
    admin: Any, names: Iterable[str], *, mechanism: SaslMechanism = "SCRAM-SHA-512"
) -> list[str]:
    """Delete the SCRAM credentials of ``names``: they can no longer log in. The names that had
    one are returned."""
    deletions: list[tuple[Any, ...]] = [(name, _SCRAM_CODE[mechanism], {}) for name in names]
    return await _alter_scram(admin, deletions, [])
