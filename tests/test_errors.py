"""The error hierarchy's shared pieces: a problem's value renders as short, valid JSON."""

from __future__ import annotations

import json
import math

import pytest

from bus.errors import MAX_RENDERED_CHARS, Problem, render_value


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (None, None),
        (True, True),
        (7, 7),
        (-(10**39), -(10**39)),
        (1.5, 1.5),
        (math.nan, "nan"),
        (math.inf, "inf"),
        (-math.inf, "-inf"),
        ("阳城执〔2026〕1号", "阳城执〔2026〕1号"),
        ("a\ud800b", "a\\ud800b"),
        ([1, "x"], "[1, 'x']"),
    ],
)
def test_a_value_renders_as_itself_or_as_safe_text(value: object, shown: object) -> None:
    assert render_value(value) == shown


def test_an_integer_too_long_to_print_renders_as_its_size() -> None:
    huge = 10**5000  # str() of it raises ValueError (more than 4,300 digits)
    assert render_value(huge) == "<an integer of about 5001 digits>"
    assert render_value([huge]) == "<list>"


def test_long_text_is_cut_and_says_how_long_it_was() -> None:
    shown = render_value("案" * 3000)
    assert isinstance(shown, str)
    assert len(shown) < MAX_RENDERED_CHARS + 30 and shown.endswith("…(3000 characters)")


def test_a_problem_with_any_value_dumps_as_strict_json() -> None:
    for value in (math.nan, 10**5000, "x" * 10_000, "\udfff"):
        out = json.dumps(Problem("$", "r", "m", value=value).as_dict(), allow_nan=False)
        assert len(out) < 1000
        out.encode("utf-8")
