"""The one error hierarchy of casebus.

Every error raised on purpose by casebus code derives from :class:`CasebusError`.
Errors that mean "the caller got it wrong" also derive from :class:`ValueError`;
transport errors say whether retrying can help (``retriable``). Errors carry
structured fields, not only text, so logs and nacks can name what failed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "CasebusError",
    "ConfigError",
    "DecodeError",
    "Problem",
    "ProofError",
    "SignatureError",
    "TransportError",
    "ValidationFailed",
]


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
            out["value"] = (
                self.value if isinstance(self.value, str | int | float | bool) else repr(self.value)
            )
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
