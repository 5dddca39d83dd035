"""A department's submitted document as JSON, read strictly, and the shape of the problems a
department is told about.

Python's JSON reader is lenient where a department's document must not be: it reads NaN and the
infinities (and ``1e999`` as infinity), integers longer than it converts fail the whole body,
and strings may carry NUL or lone surrogates that PostgreSQL and UTF-8 cannot store. Each of
those is named here, with its field, before anything else looks at the document.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

from bus.errors import SubmissionRejectedError, render_value

__all__ = ["department_problem", "parse_document"]


def department_problem(
    field: str, rule: str, message: str, message_zh: str, value: Any = None
) -> dict[str, Any]:
    """One problem as a department reads it: its field name, the value, the rule, both languages."""
    out: dict[str, Any] = {"field": field, "rule": rule, "message": message}
    out["message_zh"] = message_zh
    if value is not None:
        out["value"] = render_value(value)
    return out


@dataclass(frozen=True, slots=True)
class _LongInteger:
    """A JSON integer with more digits than Python converts (4,300 by default): kept as its
    size so the field can be named, instead of failing the whole body."""

    digits: int


def _integer(text: str) -> int | _LongInteger:
    try:
        return int(text)
    except ValueError:
        return _LongInteger(len(text.lstrip("-")))


def parse_document(body: bytes) -> dict[str, Any]:
    """The JSON object a department submitted, or the 400/422 naming what is wrong with it."""
    # Numbers no field may hold are seen as they are parsed; only then, or when a string may
    # hold NUL or a lone surrogate, is the whole document walked to name them.
    odd: list[str] = []

    def integer(text: str) -> int | _LongInteger:
        value = _integer(text)
        if isinstance(value, _LongInteger):
            odd.append(text)
        return value

    def number(text: str) -> float:
        value = float(text)
        if not math.isfinite(value):
            odd.append(text)
        return value

    def constant(name: str) -> float:  # NaN, Infinity, -Infinity
        odd.append(name)
        return float(name)

    try:
        doc = json.loads(body, parse_int=integer, parse_float=number, parse_constant=constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:  # JSONDecodeError: ValueError
        raise SubmissionRejectedError(
            400,
            [
                department_problem(
                    "$", "invalid_json", f"the body is not JSON: {e}", "请求体不是合法的 JSON"
                )
            ],
        ) from e
    if isinstance(doc, dict) and (odd or not _plain_strings(body)):
        try:
            bad = list(_unusable(doc, ""))
        except RecursionError:
            bad = [_invalid_characters("$")]
        if bad:
            raise SubmissionRejectedError(422, bad)
    if not isinstance(doc, dict):
        raise SubmissionRejectedError(
            422,
            [
                department_problem(
                    "$", "dict_type", "the body must be a JSON object", "请求体须为 JSON 对象"
                )
            ],
        )
    return doc


_SHALLOW: Final = 100
"""At most this many arrays and objects: nested no deeper, so the walk cannot exceed the
recursion limit."""


def _plain_strings(body: bytes) -> bool:
    """Whether no string parsed from ``body`` can hold NUL or a lone surrogate (and the walk
    would find nothing else than the parser saw): JSON refuses raw
    control characters in strings, so both come only from a ``\\u`` escape, or from text that
    is not strict UTF-8 (Python's JSON decodes UTF-16 and UTF-32, told by their NUL bytes, and
    UTF-8 with surrogates passed through)."""
    if b"\\u" in body or b"\x00" in body:
        return False
    if body.count(b"[") + body.count(b"{") > _SHALLOW:
        return False  # walked as before: how a document too deep for the walk is refused
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _invalid_characters(path: str) -> dict[str, Any]:
    return department_problem(
        path,
        "invalid_characters",
        "text may not contain NUL or unpaired surrogate characters",
        "文本中不得含有空字符或无效的 Unicode 字符",
    )


def _unusable(value: Any, path: str) -> Iterator[dict[str, Any]]:
    """Problems with values no field may hold: strings (keys included) PostgreSQL and UTF-8
    cannot store (NUL, lone surrogates), NaN and the infinities (JSON has none; Python reads
    them, and ``1e999`` as infinity), and integers too long to convert."""
    if isinstance(value, str):
        if "\x00" in value or not _utf8(value):
            yield _invalid_characters(path or "$")
    elif isinstance(value, float):
        if not math.isfinite(value):
            yield department_problem(
                path or "$",
                "non_finite_number",
                "a number must be finite: NaN and Infinity are not JSON",
                "数值须为有限数，不得为 NaN 或 Infinity",
                value,
            )
    elif isinstance(value, _LongInteger):
        limit = sys.get_int_max_str_digits()
        yield department_problem(
            path or "$",
            "integer_too_long",
            f"an integer may have at most {limit} digits",
            f"整数至多 {limit} 位",
            f"<an integer of {value.digits} digits>",
        )
    elif isinstance(value, dict):
        for key, item in value.items():
            sub = f"{path}.{key}" if path else str(key)
            if "\x00" in key or not _utf8(key):
                yield _invalid_characters(path or "$")
            else:
                yield from _unusable(item, sub)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _unusable(item, f"{path}[{i}]")


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
