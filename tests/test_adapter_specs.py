"""Each adapter's spec agrees with the routing policy, and every agency kind has one adapter.

A spec's ``sends`` and ``receives`` describe the department's API (what it may submit, what its
inbox and webhooks document); ``deploy/routing.yaml`` decides what the router lets through. When
they disagree a department is offered a kind the router refuses, or gets a kind its API never
described. No Kafka or PostgreSQL here: the files only.
"""

from __future__ import annotations

from collections import Counter

import pytest

from adapters._framework.spec import AdapterSpec
from adapters.specs import SPECS, spec
from bus.agencies import Registry, load_registry
from bus.errors import ConfigError
from bus.routing import RoutingPolicy, load_policy
from bus.settings import Settings

SETTINGS = Settings()
REGISTRY: Registry = load_registry(SETTINGS.agencies_file)
POLICY: RoutingPolicy = load_policy(SETTINGS.routing_policy_file, REGISTRY)
GRANTS = POLICY.grants()


def senders(kind: str) -> set[str]:
    return {a.id for a in REGISTRY.agencies if POLICY.may_send(a.id, kind)}


def the_bus_own(kind: str) -> bool:
    """Receipts, settlements, SLA events, tree heads: the bus's, not a department's document."""
    return kind.startswith("bus.") or all(
        REGISTRY.get(a).kind == "bus"  # type: ignore[union-attr]
        for a in senders(kind)
    )


def receivable(agency_id: str) -> set[str]:
    """The department kinds the policy lets reach ``agency_id`` (a copy of a kind only it sends
    never does: copies never go back to their sender)."""
    grants = GRANTS[agency_id]
    return {
        k
        for k in grants.receives
        if not the_bus_own(k) and not (k in grants.copied and senders(k) <= {agency_id})
    }


def sendable(agency_id: str) -> set[str]:
    return {k for k in GRANTS[agency_id].sends if not the_bus_own(k)}


@pytest.mark.parametrize("adapter", SPECS, ids=lambda s: s.kind)
def test_a_spec_sends_what_the_routing_policy_lets_its_agencies_send(adapter: AdapterSpec) -> None:
    agencies = REGISTRY.of_kind(adapter.agency_kind)
    assert agencies, adapter.agency_kind
    for agency in agencies:
        assert set(adapter.sends) == sendable(agency.id), agency.id


@pytest.mark.parametrize("adapter", SPECS, ids=lambda s: s.kind)
def test_a_spec_receives_what_the_routing_policy_delivers_to_its_agencies(
    adapter: AdapterSpec,
) -> None:
    for agency in REGISTRY.of_kind(adapter.agency_kind):
        assert set(adapter.receives) == receivable(agency.id), agency.id


@pytest.mark.parametrize("adapter", SPECS, ids=lambda s: s.kind)
def test_a_spec_names_each_kind_once_and_its_department_can_submit_each(
    adapter: AdapterSpec,
) -> None:
    assert len(set(adapter.sends)) == len(adapter.sends)
    assert len(set(adapter.receives)) == len(adapter.receives)
    for kind in adapter.sends:  # a kind the vocabulary has no terms for cannot be submitted
        assert adapter.vocabulary.kind_of(adapter.vocabulary.code(kind)) == kind
    assert {c.kind for c in adapter.checks} <= set(adapter.sends)


def test_every_agency_kind_in_the_registry_has_exactly_one_adapter() -> None:
    served = Counter(s.agency_kind for s in SPECS)
    kinds = {a.kind for a in REGISTRY.agencies} - {"bus"}
    assert kinds == set(served)
    assert all(n == 1 for n in served.values()), served
    assert len({s.kind for s in SPECS}) == len(SPECS)


def test_an_adapter_is_found_by_its_name_and_an_unknown_one_names_the_known() -> None:
    assert spec("court").agency_kind == "court"
    with pytest.raises(ConfigError, match="regulators"):
        spec("customs")
