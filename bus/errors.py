"""The one error hierarchy of casebus.

Every error raised on purpose by casebus code derives from :class:`CasebusError`.
Errors that mean "the caller got it wrong" also derive from :class:`ValueError`;
transport errors say whether retrying can help (``retriable``). Errors carry
structured fields, not only text, so logs and nacks can name what failed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "MAX_RENDERED_CHARS",
    "CasebusError",
    "ConfigError",
    "DecodeError",
    "Problem",
    "ProofError",
    "SignatureError",
    "TransportError",
    "ValidationFailed",
    "render_value",
]

MAX_RENDERED_CHARS: Final = 200
"""Longest text of an offending value echoed in a problem; longer values are cut."""
_MAX_EXACT_INT: Final = 10**40


def render_value(value: Any) -> str | int | float | bool | None:
    """``value`` as a problem shows it: JSON-safe and short, whatever the input was.

    NaN and the infinities become text (JSON has no such numbers), integers of more than 40
    digits become a note of their size (Python refuses to print one of more than 4,300), text
    beyond :data:`MAX_RENDERED_CHARS` characters is cut with an ellipsis, and a lone surrogate
    (which UTF-8 cannot hold) is shown as its escape.
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, int):
        if -_MAX_EXACT_INT < value < _MAX_EXACT_INT:
            return value
        digits = int(value.bit_length() * math.log10(2)) + 1
        return f"<an integer of about {digits} digits>"
    if isinstance(value, str):
        text = value
    else:
        try:
            text = repr(value)
        except ValueError:  # a container holding an integer too long to print
            text = f"<{type(value).__name__}>"
    if len(text) > MAX_RENDERED_CHARS:
        text = text[:MAX_RENDERED_CHARS] + f"…({len(text)} characters)"
    # A lone surrogate cannot be written as UTF-8: show it as an escape instead.
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


class CasebusError(Exception):
    """Root of every casebus error; carries optional structured context."""

    def __init__(
        self,
        message: str,
        *,
        message_id: str | None = None,
        case_id: str | None = None,
        agency: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message_id = message_id
        self.case_id = case_id
        self.agency = agency


class ConfigError(CasebusError, ValueError):
    """A setting or a configuration file is wrong; the text names which one."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with an input: where, what was there, which rule it broke."""

    path: str
    rule: str
    message: str
    value: Any = None
    message_zh: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form, as adapters return it to a department."""
        out: dict[str, Any] = {"path": self.path, "rule": self.rule, "message": self.message}
        if self.value is not None:
            out["value"] = render_value(self.value)
        if self.message_zh is not None:
            out["message_zh"] = self.message_zh
        return out


class ValidationFailed(CasebusError, ValueError):
    """Input broke one or more rules; ``problems`` lists every one. Final: never retried."""

    retriable = False

    def __init__(self, problems: list[Problem], **context: Any) -> None:
        self.problems = list(problems)
        summary = "; ".join(f"{p.path}: {p.message} ({p.rule})" for p in self.problems)
        super().__init__(f"{len(self.problems)} problem(s): {summary}", **context)

    def as_list(self) -> list[dict[str, Any]]:
        """Every problem, JSON-ready."""
        return [p.as_dict() for p in self.problems]


class DecodeError(CasebusError, ValueError):
    """Bytes could not be decoded into an envelope or payload; the text says why. Final."""

    retriable = False


class SignatureError(CasebusError, ValueError):
    """A signature did not verify. ``reason`` is a stable code such as ``bad_signature``,
    ``unknown_key``, ``revoked_key``, ``expired_key``, ``key_not_yet_valid``,
    ``sender_mismatch``, ``unsupported_algorithm``."""

    retriable = False

    def __init__(self, reason: str, detail: str, **context: Any) -> None:
        self.reason = reason
        super().__init__(f"{reason}: {detail}", **context)


class ProofError(CasebusError, ValueError):
    """A Merkle inclusion or consistency proof (or its inputs) is not valid."""

    retriable = False


class TransportError(CasebusError):
    """Kafka or PostgreSQL failed; ``retriable`` says whether trying again can help."""

    def __init__(self, message: str, *, retriable: bool, **context: Any) -> None:
        super().__init__(message, **context)
        self.retriable = retriable
