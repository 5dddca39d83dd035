"""Every place a message kind must be registered knows every kind (docs/changing-casebus.md).

A new kind starts as a payload model in ``bus.models.kinds._MODELS``, which makes it part of
``KINDS``; these tests then fail, one per place, for each place the kind was forgotten in. A place
that legitimately leaves a kind out says which and why in ``EXEMPT``, so leaving one out is a
decision someone wrote down, not an accident.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

import pytest

import bus.models
from adapters.specs import SPECS
from bus.agencies import load_registry
from bus.attachments import load_retention
from bus.console.i18n import Labels
from bus.models import KINDS, PAYLOAD_MODELS
from bus.models.kinds import BUSINESS_KINDS
from bus.routing import DEFAULT_POLICY_PATH, load_policy
from bus.samples import SAMPLE_ROUTES
from bus.samples._agencies import REFUSED_ROUTES
from bus.samples._build import _BUILDERS
from bus.settings import REPO_ROOT
from bus.sim.report import _EXPECTED_KINDS
from bus.sla.policy import KINDS as POLICY_KINDS
from schemas import kind_schema_paths

PAGE = REPO_ROOT / "docs" / "changing-casebus.md"


@dataclass(frozen=True)
class Place:
    """One place a kind is registered: the file the page names and what it knows."""

    file: str
    known: Callable[[], Collection[str]]
    kinds: tuple[str, ...] = KINDS


def _routing_kinds() -> Collection[str]:
    policy = load_policy(DEFAULT_POLICY_PATH, load_registry(REPO_ROOT / "deploy" / "agencies.yaml"))
    return {rule.kind for rule in policy.rules()}


IN_OUR_NAMES = {("procuratorate", "penalty.feedback")}
"""(adapter, kind) a department receives in casebus's names: it has no terms of its own for it."""


def _adapter_vocabulary() -> Collection[str]:
    """Kinds that every adapter exchanging them can name in its department's terms (every
    department receives the bus's receipts and SLA events)."""
    known = set()
    for kind in KINDS:
        users = [
            a
            for a in SPECS
            if (kind in (*a.sends, *a.receives) or kind.startswith(("bus.", "sla.")))
            and (a.kind, kind) not in IN_OUR_NAMES
        ]
        if users and all(kind in a.vocabulary.kinds() for a in users):
            known.add(kind)
    return known


def _console_codes() -> Collection[str]:
    zh = Labels("zh")
    return {k for k in KINDS if zh.kind(k) != k}


PLACES: dict[str, Place] = {
    "schema": Place("schemas/<kind>/v1.avsc", lambda: kind_schema_paths().keys()),
    "model export": Place(
        "bus/models/__init__.py",
        lambda: {k for k, m in PAYLOAD_MODELS.items() if m.__name__ in bus.models.__all__},
    ),
    "routing rule": Place("deploy/routing.yaml", _routing_kinds),
    "retention": Place(
        "deploy/attachment-retention.yaml", lambda: load_retention().kinds.keys(), BUSINESS_KINDS
    ),
    "sample builder": Place("bus/samples/_build.py", lambda: _BUILDERS.keys()),
    "sample route": Place("bus/samples/_agencies.py", lambda: SAMPLE_ROUTES.keys()),
    "refused route": Place("bus/samples/_agencies.py", lambda: REFUSED_ROUTES.keys()),
    "adapter sends": Place(
        "adapters/<agency>/mapping.py",
        lambda: {k for a in SPECS for k in a.sends},
        BUSINESS_KINDS,
    ),
    "adapter receives": Place(
        "adapters/<agency>/mapping.py",
        lambda: {k for a in SPECS for k in a.receives},
        BUSINESS_KINDS,
    ),
    "adapter vocabulary": Place("adapters/_framework/", _adapter_vocabulary),
    "console code": Place("bus/console/i18n.py", _console_codes),
    "fortnight outcome": Place("bus/sim/report.py", lambda: _EXPECTED_KINDS),
}
"""Where a kind must be registered by hand. The rest follows from ``KINDS`` (see the page)."""

EXEMPT: dict[str, dict[str, str]] = {
    "adapter vocabulary": {
        "audit.tree_head": "the procuratorate's adapter stores tree heads as they are",
    },
    "console code": {"audit.tree_head": "departments have no document code for a tree head"},
    "fortnight outcome": {
        "criminal.case_update": "no flow of the simulated fortnight reports case progress",
        "bus.delivered": "receipts follow every message; the report counts business outcomes",
        "bus.ack": "receipts follow every message; the report counts business outcomes",
        "bus.nack": "a refusal is a planted fault, reported on its own",
        "audit.tree_head": "the report verifies the audit log itself",
    },
}
"""Place → kind → why that place leaves the kind out."""


@pytest.mark.parametrize("place", PLACES)
def test_every_kind_is_registered_in_each_place_or_exempt_with_a_reason(place: str) -> None:
    where = PLACES[place]
    exempt = EXEMPT.get(place, {})
    known = set(where.known())
    missing = [k for k in where.kinds if k not in known and k not in exempt]
    assert not missing, f"{where.file} ({place}) does not know {missing}: docs/changing-casebus.md"
    stale = sorted(set(exempt) - set(where.kinds))
    assert not stale, f"EXEMPT[{place!r}] names kinds that are not in KINDS: {stale}"
    wrongly_exempt = sorted(k for k in exempt if k in known)
    assert not wrongly_exempt, f"{place} knows {wrongly_exempt}: drop them from EXEMPT"


def test_no_place_knows_a_kind_that_is_not_in_kinds() -> None:
    extra = {place: sorted(set(p.known()) - set(KINDS)) for place, p in PLACES.items()}
    assert not {place: kinds for place, kinds in extra.items() if kinds}


def test_the_kinds_lists_derived_from_the_models_are_not_written_again() -> None:
    assert tuple(PAYLOAD_MODELS) == KINDS
    assert POLICY_KINDS is BUSINESS_KINDS
    assert set(BUSINESS_KINDS) < set(KINDS)


def test_the_page_names_every_place_the_tests_check() -> None:
    page = PAGE.read_text(encoding="utf-8")
    unnamed = sorted({p.file for p in PLACES.values() if f"`{p.file}`" not in page})
    assert not unnamed, f"{PAGE.name} does not name {unnamed}"


def test_every_file_the_page_names_exists() -> None:
    page = PAGE.read_text(encoding="utf-8")
    named = set(re.findall(r"`((?:bus|adapters|schemas|deploy|docs|bench|tests)/[^`<>* ]+)`", page))
    assert named, "the page names no file"
    assert not sorted(n for n in named if not Path(REPO_ROOT, n).exists())
