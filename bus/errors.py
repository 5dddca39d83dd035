"""The one error hierarchy of casebus: every public error class is defined here.

Every error raised on purpose by casebus code derives from :class:`CasebusError`, and every public
one is named ``...Error`` (as in temporalio's ``exceptions.py``), so one module tells a caller all
it may have to catch. Errors that mean "the caller got it wrong" also derive from
:class:`ValueError`, lookups that found nothing from :class:`LookupError`; transport errors say
whether retrying can help (``retriable``). Errors carry structured fields, not only text, so logs
and nacks can name what failed.

This module imports nothing from casebus, so every module can import it without a cycle.
Exceptions that are not part of the surface stay beside the code that raises and catches them:
private control-flow signals (``bus.inbox._BatchFailed``, ``bus.attachments._postgres.
_AlreadyStored``) and the Kafka protocol errors of ``bus.router.eos``
(``UnstableOffsetCommitError``, ``MembershipFencedError``), which subclass aiokafka's
``KafkaError`` like the broker errors they stand in for. tests/test_errors.py checks both
rules over every module of ``bus`` and ``adapters``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

__all__ = [
    "MAX_RENDERED_CHARS",
    "AttachmentNotFoundError",
    "AttachmentTooLargeError",
    "BundleError",
    "CasebusError",
    "CheckpointError",
    "CheckpointErrorReason",
    "ConfigError",
    "DecodeError",
    "DeliveryConflictError",
    "DeliveryNotFoundError",
    "DigestMismatchError",
    "EntryNotFoundError",
    "InactiveTokenError",
    "InboxHandlerError",
    "NaiveDatetimeError",
    "NoPartyError",
    "OutboxConflictError",
    "OutboxMisuseError",
    "OutsideTransactionError",
    "PeriodError",
    "PolicyInputError",
    "Problem",
    "ProofError",
    "RangeNotSatisfiableError",
    "RoutingPolicyError",
    "ServiceMisuseError",
    "SignatureError",
    "SimulationError",
    "SubmissionRejectedError",
    "TransportError",
    "UnknownKindError",
    "UnknownOverrideError",
    "UnknownPolicyError",
    "ValidationFailedError",
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
    """Root of every casebus error; carries optional structured context.

    Catch it to handle anything casebus raised on purpose; anything else is a bug or a failure of
    a library underneath."""

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


# -- Configuration ---------------------------------------------------------------------------------


class ConfigError(CasebusError, ValueError):
    """A setting or a configuration file is wrong; the text names which one. Fix it and restart."""


class RoutingPolicyError(ConfigError):
    """The routing policy file is wrong; ``problems`` lists each problem, its ``path`` is
    ``file:line``. Raised at start-up: fix the file and restart."""

    def __init__(self, source: str, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  {p.path}: {p.message} [{p.rule}]" for p in self.problems)
        super().__init__(f"{source}: {len(self.problems)} problem(s) in routing policy:\n{lines}")


class UnknownPolicyError(CasebusError, ValueError):
    """No SLA policy has this id; ``known`` lists the ids there are. Use one of them."""

    def __init__(self, policy_id: str, known: Sequence[str]) -> None:
        self.policy_id = policy_id
        self.known = list(known)
        super().__init__(f"unknown policy {policy_id!r}; known: {', '.join(self.known)}")


class PeriodError(CasebusError, ValueError):
    """An SLA period or warning point is malformed (unknown unit, negative amount, bad
    fraction); the text says which. Fix the policy."""


# -- Bad input: final, never retried ---------------------------------------------------------------


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


class ValidationFailedError(CasebusError, ValueError):
    """Input broke one or more rules; ``problems`` lists every one. Final: never retried, the
    message goes to the dead-letter topic with that list."""

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


class UnknownKindError(CasebusError, ValueError):
    """The routing policy has no rule for this message kind: the message cannot be routed."""


class NaiveDatetimeError(CasebusError, ValueError):
    """A datetime without a UTC offset was given where an instant is needed; pass an aware one."""


class PolicyInputError(CasebusError, ValueError):
    """A message lacks, or has a malformed, field an SLA policy needs (e.g. ``approved_at``): no
    deadline opens for it."""


class NoPartyError(CasebusError, ValueError):
    """An SLA policy names a party the opening message has no agency for: no deadline opens."""


class UnknownOverrideError(CasebusError, ValueError):
    """A sample override names neither a field of the kind's payload nor an option of its
    sampler; use one that exists."""


# -- Signatures and proofs: final ------------------------------------------------------------------


class SignatureError(CasebusError, ValueError):
    """A signature did not verify. ``reason`` is a stable code such as ``bad_signature``,
    ``unknown_key``, ``revoked_key``, ``expired_key``, ``key_not_yet_valid``,
    ``sender_mismatch``, ``unsupported_algorithm``."""

    retriable = False

    def __init__(self, reason: str, detail: str, **context: Any) -> None:
        self.reason = reason
        super().__init__(f"{reason}: {detail}", **context)


class ProofError(CasebusError, ValueError):
    """A Merkle inclusion or consistency proof (or its inputs) is not valid: do not trust it."""

    retriable = False


CheckpointErrorReason = Literal[
    "malformed", "bad_root_length", "bad_key", "unknown_key", "bad_signature", "wrong_origin"
]
"""Why a checkpoint, note or verifier key was refused (:attr:`CheckpointError.reason`)."""


class CheckpointError(ProofError):
    """A signed checkpoint, note or verifier key is not valid. ``reason`` says which rule broke:
    ``malformed``, ``bad_root_length``, ``bad_key``, ``unknown_key`` (no signature by the
    expected key), ``bad_signature`` or ``wrong_origin``."""

    def __init__(self, reason: CheckpointErrorReason, detail: str) -> None:
        self.reason: CheckpointErrorReason = reason
        super().__init__(f"{reason}: {detail}")


class BundleError(CasebusError, ValueError):
    """An evidence bundle did not verify; ``reason`` names the first check that failed. Do not
    trust the bundle."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        super().__init__(f"{reason}: {detail}")


# -- Transport -------------------------------------------------------------------------------------


class TransportError(CasebusError):
    """Kafka or PostgreSQL failed; ``retriable`` says whether trying again can help."""

    def __init__(self, message: str, *, retriable: bool, **context: Any) -> None:
        super().__init__(message, **context)
        self.retriable = retriable


# -- Misuse of an API: a bug in the caller ---------------------------------------------------------


class ServiceMisuseError(CasebusError, ValueError):
    """A background service was started while it was already running."""


class OutboxMisuseError(CasebusError, ValueError):
    """The outbox was called wrongly: outside a transaction, with an unsigned envelope, etc."""


class OutsideTransactionError(CasebusError, ValueError):
    """A check that only holds inside a transaction was called outside one; open one first."""


# -- Messaging -------------------------------------------------------------------------------------


class OutboxConflictError(CasebusError, ValueError):
    """A ``message_id`` already in the outbox was added again with different bytes: two
    messages share an id. Final; the first one stands."""


class InboxHandlerError(CasebusError):
    """The inbox handler failed on one message ``attempts`` times; the reader stopped before it.
    The message is read again on the next run, so fix the handler (or what it depends on)."""

    retriable = True

    def __init__(
        self,
        message: str,
        *,
        attempts: int,
        topic: str,
        partition: int,
        offset: int,
        **context: Any,
    ) -> None:
        super().__init__(message, **context)
        self.attempts = attempts
        self.topic = topic
        self.partition = partition
        self.offset = offset


# -- Audit log -------------------------------------------------------------------------------------


class EntryNotFoundError(CasebusError, LookupError):
    """No audit entry for that message and event (not yet recorded, or never)."""


# -- Attachments -----------------------------------------------------------------------------------


class AttachmentTooLargeError(CasebusError, ValueError):
    """The upload passed the store's size limit (``max_bytes``); nothing was kept. Final."""

    retriable = False

    def __init__(self, max_bytes: int) -> None:
        super().__init__(f"the attachment exceeds {max_bytes} bytes")
        self.max_bytes = max_bytes


class DigestMismatchError(CasebusError, ValueError):
    """The bytes hash to another SHA-256 than the uploader declared; nothing was kept. Final:
    upload the right bytes or declare their digest."""

    retriable = False

    def __init__(self, expected: str, actual: str) -> None:
        super().__init__(f"the bytes hash to {actual}, not the declared {expected}")
        self.expected = expected
        self.actual = actual


class AttachmentNotFoundError(CasebusError, LookupError):
    """No document with this SHA-256 in the store (never uploaded, or swept)."""


class RangeNotSatisfiableError(CasebusError, ValueError):
    """A ``Range`` header no byte of the document satisfies; answer HTTP 416."""


# -- Adapters --------------------------------------------------------------------------------------


class SubmissionRejectedError(CasebusError):
    """A department's submission was refused: ``status`` is the HTTP status to answer,
    ``problems`` every reason, JSON-ready."""

    def __init__(self, status: int, problems: list[dict[str, Any]]) -> None:
        super().__init__(f"{status}: " + "; ".join(str(p.get("message")) for p in problems))
        self.status = status
        self.problems = problems


class InactiveTokenError(CasebusError):
    """The token a department's submission came with is no longer active for its agency
    (revoked since the adapter last looked it up): answered 401 ``invalid_token``."""

    def __init__(self) -> None:
        super().__init__("the API token is no longer active")


class DeliveryNotFoundError(CasebusError, ValueError):
    """No delivery with this message id for this agency."""


class DeliveryConflictError(CasebusError, ValueError):
    """The delivery cannot be settled so: settled otherwise already, or an earlier one waits."""


# -- Tools -----------------------------------------------------------------------------------------


class SimulationError(CasebusError):
    """A step of the simulated fortnight did not happen; the text says which."""
