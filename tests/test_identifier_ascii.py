"""check_identifier's shortcut for printable ASCII (bus.models._identifier) decides every ASCII
string as the rules one by one do: the same value accepted, the same rule named when refused."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic_core import PydanticCustomError

from bus.models._identifier import _check_each_rule, check_identifier


def _outcome(check: object, value: str) -> tuple[str, str]:
    try:
        return "accepted", check(value)  # type: ignore[operator]
    except PydanticCustomError as e:
        return "refused", e.type


@settings(max_examples=2000, deadline=None, derandomize=True)
@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=12))
@example("")
@example(" ")
@example(" YGH-1")
@example("YGH-1 ")
@example("YGH 1")
@example("YGH\x7f1")
@example("YGH\t1")
@example("\x00")
def test_an_ascii_identifier_is_decided_as_the_rules_decide_it(value: str) -> None:
    assert _outcome(check_identifier, value) == _outcome(_check_each_rule, value)


def test_the_shortcut_still_refuses_what_it_must() -> None:
    for value, rule in [
        ("", "identifier_blank"),
        ("  ", "identifier_blank"),
        (" YGH-1", "identifier_untrimmed"),
        ("YGH-1 ", "identifier_untrimmed"),
        ("YGH\x7f1", "identifier_character"),
        ("YGH\n1", "identifier_character"),
    ]:
        assert _outcome(check_identifier, value) == ("refused", rule), value
    assert _outcome(check_identifier, "YGH 2026-0001") == ("accepted", "YGH 2026-0001")
