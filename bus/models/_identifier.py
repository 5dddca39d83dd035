"""What an identifier (a case number, a thread id) may be: the rules, defined once.

A case number (``case_id``, the departments' ``ajbh``) is shown on every agency's screens, keys
each case's order in Kafka, and is a column of the PostgreSQL B-tree indexes of the outbox, the
adapters' deliveries, the audit log and the deadlines. So it must be something a person can read
and compare, and short enough for every index:

- **not blank**: not empty, not only white space;
- **only visible characters**: no control (Cc), format (Cf: U+202E RIGHT-TO-LEFT OVERRIDE,
  U+200B ZERO WIDTH SPACE), surrogate (Cs), private-use (Co) or unassigned (Cn) characters, no
  line or paragraph separators (Zl, Zp), and no space but U+0020 (a no-break or ideographic
  space looks like one and is another case number);
- **no white space at either end**, which no screen shows;
- **in Unicode NFC**, so one case number has one spelling (``é`` is one code point, not two);
- **at most** :data:`MAX_IDENTIFIER_LENGTH` **characters**: 4 bytes each at most in UTF-8, which
  with an agency id (128 ASCII characters) and a ``bigint`` stays well under the 2,704 bytes a
  B-tree index row may hold.

The envelope and every payload field that names a case use :data:`Identifier`; the adapter and
the router check with the same model, so what one accepts the other does.
"""

from __future__ import annotations

import unicodedata
from typing import Annotated, Final

from pydantic import AfterValidator, StringConstraints, WithJsonSchema
from pydantic_core import PydanticCustomError

__all__ = [
    "FORBIDDEN_CATEGORIES",
    "IDENTIFIER_FORMAT",
    "MAX_IDENTIFIER_LENGTH",
    "Identifier",
    "check_identifier",
]

MAX_IDENTIFIER_LENGTH: Final = 256
"""Most characters an identifier may have (1,024 bytes of UTF-8 at worst)."""

IDENTIFIER_FORMAT: Final = "casebus-identifier"
"""The JSON Schema ``format`` of an identifier (the rules do not fit a portable ``pattern``)."""

FORBIDDEN_CATEGORIES: Final = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
"""Unicode general categories never allowed in an identifier (besides spaces other than U+0020).
"Unassigned" (Cn) is as of the Unicode version of the running Python."""


def check_identifier(value: str) -> str:
    """``value`` if it is a valid identifier; otherwise the pydantic error of the first rule broken.

    The length is checked before, by the :class:`StringConstraints` of :data:`Identifier`.
    """
    # Most identifiers are printable ASCII: every such character is allowed (U+0020 is the one
    # space among them), and ASCII is always NFC, so only the ends remain to be checked. The
    # router checks two on every message; anything else takes the rules one by one.
    if value.isascii() and value.isprintable() and value and value[0] != " " != value[-1]:
        return value
    return _check_each_rule(value)


def _check_each_rule(value: str) -> str:
    if not value.strip():
        raise PydanticCustomError(
            "identifier_blank", "an identifier may not be empty or only white space"
        )
    for char in value:
        category = unicodedata.category(char)
        if category in FORBIDDEN_CATEGORIES or (category == "Zs" and char != " "):
            raise PydanticCustomError(
                "identifier_character",
                "an identifier may not contain {character} ({category}): only visible "
                "characters and the plain space U+0020",
                {"character": f"U+{ord(char):04X}", "category": category},
            )
    if value != value.strip():
        raise PydanticCustomError(
            "identifier_untrimmed", "an identifier may not begin or end with white space"
        )
    if not unicodedata.is_normalized("NFC", value):
        raise PydanticCustomError(
            "identifier_not_nfc",
            "an identifier must be in Unicode normalization form NFC",
        )
    return value


Identifier = Annotated[
    str,
    StringConstraints(max_length=MAX_IDENTIFIER_LENGTH),
    AfterValidator(check_identifier),
    WithJsonSchema(
        {
            "type": "string",
            "format": IDENTIFIER_FORMAT,
            "minLength": 1,
            "maxLength": MAX_IDENTIFIER_LENGTH,
        }
    ),
]
"""A case number or thread id: non-blank, visible characters only, trimmed, NFC, and at most
:data:`MAX_IDENTIFIER_LENGTH` characters."""
