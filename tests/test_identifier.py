"""The rules of an identifier (bus/models/_identifier.py), one by one and as a property."""

from __future__ import annotations

import sys
import unicodedata
import uuid
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from bus.models import MAX_IDENTIFIER_LENGTH, Envelope, Identifier, problems_from_validation_error
from bus.models._identifier import FORBIDDEN_CATEGORIES

# PostgreSQL refuses a B-tree index row over 2,704 bytes (a third of an 8 kB page, less headers).
_BTREE_ROW_MAX = 2704
_AGENCY_ID_MAX = 128  # bus.models.AgencyId, ASCII


class _Holder(BaseModel):
    case_id: Identifier


def _rule(value: str) -> str | None:
    try:
        _Holder(case_id=value)
    except ValidationError as e:
        [problem] = problems_from_validation_error(e)
        assert problem.path == "case_id" and problem.message_zh, problem
        return problem.rule
    return None


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        ("阳城执〔2026〕0001号", None),
        ("YGH-2017-0042", None),
        ("Café 第 1 号", None),
        ("a" * MAX_IDENTIFIER_LENGTH, None),
        ("a" * (MAX_IDENTIFIER_LENGTH + 1), "string_too_long"),
        ("", "identifier_blank"),
        ("   ", "identifier_blank"),
        ("\u3000", "identifier_blank"),
        (" A1", "identifier_untrimmed"),
        ("A1 ", "identifier_untrimmed"),
        ("A\x1b[2J\r\n1", "identifier_character"),  # Cc
        ("A\u202e1", "identifier_character"),  # Cf: right-to-left override
        ("A\u200b1", "identifier_character"),  # Cf: zero-width space
        ("A\ud8001", "string_unicode"),  # Cs: pydantic refuses it before the rules
        ("A\ue0001", "identifier_character"),  # Co
        ("A\u03781", "identifier_character"),  # Cn
        ("A\u20281", "identifier_character"),  # Zl
        ("A\u20291", "identifier_character"),  # Zp
        ("A\u00a01", "identifier_character"),  # Zs other than U+0020
        ("A\u30001", "identifier_character"),  # ideographic space
        ("Cafe\u0301", "identifier_not_nfc"),
    ],
)
def test_each_identifier_rule_is_named(value: str, rule: str | None) -> None:
    assert _rule(value) == rule


def test_the_forbidden_character_is_named_with_its_category() -> None:
    with pytest.raises(ValidationError) as e:
        _Holder(case_id="A\u202e1")
    [problem] = problems_from_validation_error(e.value)
    assert "U+202E" in problem.message and "Cf" in problem.message
    assert "U+202E" in (problem.message_zh or "")


def test_the_longest_identifier_fits_a_btree_row_with_an_agency_id_and_a_bigint() -> None:
    # 4 bytes per character at worst in UTF-8; varlena headers and the tuple header are small.
    worst = 4 * MAX_IDENTIFIER_LENGTH + _AGENCY_ID_MAX + 8 + 3 * 4 + 16
    assert worst <= _BTREE_ROW_MAX


@pytest.mark.parametrize("field", ["case_id", "correlation_id", "causation_id"])
def test_the_envelope_case_and_thread_ids_are_identifiers(field: str) -> None:
    envelope = {
        "message_id": uuid.UUID(int=1),
        "kind": "clue.handover",
        "schema_version": 1,
        "sender": "ygh.regulator.planning",
        "recipients": ["ygh.enforcement.bureau"],
        "case_id": "阳城执〔2026〕1号",
        "correlation_id": "q1",
        "sent_at": datetime(2026, 3, 2, tzinfo=UTC),
        "payload": b"",
        "signature": {"algorithm": "ed25519", "key_id": "k", "value": b""},
    }
    Envelope.model_validate(envelope)
    with pytest.raises(ValidationError) as e:
        Envelope.model_validate(envelope | {field: "q\u202e1"})
    assert [(p.path, p.rule) for p in problems_from_validation_error(e.value)] == [
        (field, "identifier_character")
    ]


@given(st.text(max_size=40))
@settings(max_examples=300, deadline=None)
def test_every_accepted_identifier_is_visible_trimmed_nfc_and_short(value: str) -> None:
    if _rule(value) is not None:
        return
    assert value.strip() == value and value
    assert unicodedata.is_normalized("NFC", value)
    assert len(value) <= MAX_IDENTIFIER_LENGTH
    for char in value:
        category = unicodedata.category(char)
        assert category not in FORBIDDEN_CATEGORIES
        assert category != "Zs" or char == " "


_BY_CATEGORY: dict[str, list[str]] = {}
for _code in range(sys.maxunicode + 1):
    _BY_CATEGORY.setdefault(unicodedata.category(chr(_code)), []).append(chr(_code))


@given(st.sampled_from(sorted(FORBIDDEN_CATEGORIES)), st.data())
@settings(max_examples=200, deadline=None)
def test_a_character_of_any_forbidden_category_is_refused(
    category: str, data: st.DataObject
) -> None:
    char = data.draw(st.sampled_from(_BY_CATEGORY[category]))
    expected = "string_unicode" if category == "Cs" else "identifier_character"
    assert _rule(f"A{char}1") == expected
