"""The submission body's parser: it walks a document for values no field may hold (NUL, lone
surrogates, non-finite numbers, integers too long to convert) only when one may be there, and
names the same problems as walking every document did."""

from __future__ import annotations

import json

import pytest

from adapters._framework.documents import _integer, _unusable
from adapters._framework.documents import parse_document as _parse
from bus.errors import SubmissionRejectedError

Answer = tuple[int, list[tuple[str, str]]]
"""Status and each problem's field and rule; (0, []) for a usable document."""


def _walked(body: bytes) -> Answer:
    """What walking the whole document, as every submission once was, answers."""
    try:
        doc = json.loads(body, parse_int=_integer)
    except (ValueError, RecursionError):
        return 400, [("$", "invalid_json")]
    try:
        problems = list(_unusable(doc, ""))
    except RecursionError:
        return 422, [("$", "invalid_characters")]
    return (422 if problems else 0), [(p["field"], p["rule"]) for p in problems]


def _parsed(body: bytes) -> Answer:
    try:
        _parse(body)
    except SubmissionRejectedError as e:
        return e.status, [(p["field"], p["rule"]) for p in e.problems]
    return 0, []


def _nested(depth: int) -> bytes:
    return ('{"a": ' * depth + '"x"' + "}" * depth).encode()


BODIES = {
    "plain": '{"ajbh": "阳城执〔2026〕1号", "n": 3, "x": 1.5, "l": [1, {"k": "v"}]}'.encode(),
    "escaped text": b'{"a": "caf\\u00e9 \\n"}',
    "NUL in a value": b'{"a": {"b": ["x\\u0000y"]}}',
    "NUL in a key": b'{"a\\u0000": 1}',
    "lone surrogate escaped": b'{"a": "\\ud800"}',
    "lone surrogate in UTF-8": '{"a": "\ud800"}'.encode("utf-8", "surrogatepass"),
    "lone surrogate in UTF-16": '{"a": "\ud800"}'.encode("utf-16-le", "surrogatepass"),
    "UTF-16 plain": '{"a": "阳城"}'.encode("utf-16"),
    "NaN": b'{"a": NaN}',
    "Infinity": b'{"a": [Infinity]}',
    "-Infinity": b'{"a": {"b": -Infinity}}',
    "1e999": b'{"a": 1e999}',
    "a float of 400 digits": b'{"a": 1' + b"0" * 400 + b".0}",
    "an integer of 5000 digits": b'{"a": ' + b"9" * 5000 + b"}",
    "nested 150 deep": _nested(150),
    "nested 600 deep": _nested(600),
    "nested 3000 deep": _nested(3000),
}


@pytest.mark.parametrize("name", BODIES)
def test_parsing_names_what_walking_every_document_named(name: str) -> None:
    body = BODIES[name]
    assert _parsed(body) == _walked(body)


def test_the_bodies_cover_both_answers() -> None:
    """Some bodies have problems, some none: the comparison above is not vacuous."""
    clean = {name for name, body in BODIES.items() if _parsed(body) == (0, [])}
    assert clean >= {"plain", "escaped text", "UTF-16 plain", "nested 150 deep"}
    assert len(clean) < len(BODIES) - 10
