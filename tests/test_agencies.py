"""The agency registry file."""

from __future__ import annotations

from pathlib import Path

import pytest

from bus.agencies import load_registry, uscc_is_valid
from bus.errors import ConfigError
from bus.settings import REPO_ROOT


def test_shipped_registry_has_every_party_kind_of_the_domain() -> None:
    registry = load_registry(REPO_ROOT / "deploy" / "agencies.yaml")
    kinds = {a.kind for a in registry.agencies}
    assert {"enforcement", "regulator", "police", "procuratorate", "court", "bus"} <= kinds
    assert len(registry.of_kind("regulator")) == 8  # the eight departments the seed names
    assert registry.get("casebus") is not None


def test_bad_registry_names_each_problem(tmp_path: Path) -> None:
    bad = tmp_path / "agencies.yaml"
    bad.write_text(
        "agencies:\n"
        "  - {id: Bad-Id, kind: enforcement, name: x}\n"
        "  - {id: ygh.a, kind: alien, name: y}\n"
        "  - {id: ygh.b, kind: court, name: z, parent: ygh.nowhere}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_registry(bad)
    text = str(info.value)
    assert "agencies.0.id" in text and "Bad-Id" in text
    assert "agencies.1.kind" in text and "(id 'ygh.a')" in text


def test_dangling_parent_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "agencies.yaml"
    bad.write_text("agencies:\n  - {id: ygh.b, kind: court, name: z, parent: ygh.nowhere}\n")
    with pytest.raises(ConfigError, match=r"parent 'ygh\.nowhere' is not in the registry"):
        load_registry(bad)


@pytest.mark.parametrize(
    ("code", "ok"),
    [
        ("91350100M000100Y43", True),
        ("91350100M000100Y44", False),  # wrong check character
        ("91350100M000100Y4", False),  # too short
        ("9135010OM000100Y43", False),  # letter O is not in the alphabet
    ],
)
def test_unified_social_credit_code_check_character(code: str, ok: bool) -> None:
    assert uscc_is_valid(code) is ok


def test_get_answers_from_the_agencies_the_registry_holds_even_after_a_copy() -> None:
    registry = load_registry(REPO_ROOT / "deploy" / "agencies.yaml")
    first, *rest = registry.agencies
    assert registry.get(first.id) == first
    assert registry.get("no.such.agency") is None
    # model_copy copies the instance's attributes and runs no validator: whatever get() looks
    # in (a cached index did, once), a copy must answer from the agencies it holds.
    without = registry.model_copy(update={"agencies": rest})
    assert without.get(first.id) is None
    renamed = registry.model_copy(
        update={"agencies": [first.model_copy(update={"kind": "bus"}), *rest]}
    )
    assert renamed.get(first.id) is not None and renamed.get(first.id).kind == "bus"
    assert registry.get(first.id) == first
