"""The router's answer on one submitted record, as two closed, immutable shapes.

An accepted submission always has its envelope and its recipients; a refused one always has a
code from the closed set the router puts on the wire (``bus.nack``, dead letters, audit
entries; docs/wire-format.md) and the problems that explain it. The classifier answers with
one of them and the batch rules (bus.router.plan) may turn it into the other, always by making
a new value, so no code has to check which fields happen to be filled.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import ClassVar, Final, Literal, TypeAlias, get_args

from aiokafka.structs import ConsumerRecord

from bus.errors import Problem
from bus.models import Envelope
from bus.signing import PublicKeyRecord

__all__ = [
    "ROUTER_NACK_CODES",
    "UNWITNESSED",
    "Accepted",
    "NackCode",
    "Outcome",
    "Refused",
    "Verdict",
    "readmit",
    "refuse",
    "undeliverable",
]

Outcome = Literal["accept", "reject", "dead"]

NackCode = Literal[
    "undecodable",
    "invalid_envelope",
    "principal_mismatch",
    "bad_signature",
    "unknown_kind",
    "invalid_payload",
    "party_mismatch",
    "unauthorized_route",
    "log_unwitnessed",
    "too_large",
    "conflicting_duplicate",
    "attachment_not_held",
    "undeliverable",
]
"""Every code the router refuses a submission with; the values are the wire codes."""

ROUTER_NACK_CODES: Final[tuple[NackCode, ...]] = get_args(NackCode)

UNWITNESSED: Final = "log_unwitnessed"
"""The code of a submission refused because the audit log went unwitnessed too long."""


@lru_cache(maxsize=4096)
def _broker_time(timestamp_ms: int) -> datetime:
    """A broker timestamp as an aware UTC instant. Cached: the router reads a verdict's
    ``received_at`` for its audit leaves, its receipt and its logs (a datetime is immutable)."""
    return datetime.fromtimestamp(timestamp_ms / 1000, tz=UTC)


class _Received:
    """What every verdict says of its record, whichever way it went."""

    __slots__ = ()
    record: ConsumerRecord[bytes, bytes]
    envelope: Envelope | None

    @property
    def received_at(self) -> datetime:
        """When the broker appended the submission: the bus's receive time."""
        return _broker_time(self.record.timestamp)

    @property
    def message_id(self) -> uuid.UUID | None:
        """The sender's message id, when the envelope could be read."""
        return self.envelope.message_id if self.envelope is not None else None

    @property
    def case_id(self) -> str | None:
        """The case, when the envelope could be read."""
        return self.envelope.case_id if self.envelope is not None else None


@dataclass(frozen=True, slots=True, kw_only=True)
class Accepted(_Received):
    """A submission the router delivers: signed, valid, and allowed to its recipients."""

    outcome: ClassVar[Literal["accept"]] = "accept"
    code: ClassVar[None] = None
    problems: ClassVar[tuple[Problem, ...]] = ()
    digest_only: ClassVar[bool] = False

    record: ConsumerRecord[bytes, bytes]
    value: bytes
    value_sha256: bytes
    envelope: Envelope
    key: PublicKeyRecord | None = None
    deliver_to: tuple[str, ...] = ()
    reply_to: str | None = None
    """Who gets a nack should the batch rules refuse it after all."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Refused(_Received):
    """A submission the router refuses (``reject``: nacked) or cannot read (``dead``)."""

    record: ConsumerRecord[bytes, bytes]
    value: bytes
    value_sha256: bytes
    outcome: Literal["reject", "dead"]
    code: NackCode
    problems: tuple[Problem, ...]
    envelope: Envelope | None = None
    key: PublicKeyRecord | None = None
    deliver_to: tuple[str, ...] = ()
    """Kept for a submission refused only because the log went unwitnessed (it may be
    readmitted, :func:`readmit`)."""
    reply_to: str | None = None
    """Who gets the nack: the sender when it is a registered agency."""
    digest_only: bool = False
    """Above the router's record limit, or refused by Kafka: audited and dead-lettered by
    digest and prefix."""


Verdict: TypeAlias = Accepted | Refused


def refuse(v: Verdict, code: NackCode, problems: list[Problem]) -> Refused:
    """``v`` refused with ``code``, everything else about it kept."""
    return Refused(
        record=v.record,
        value=v.value,
        value_sha256=v.value_sha256,
        outcome="reject",
        code=code,
        problems=tuple(problems),
        envelope=v.envelope,
        key=v.key,
        deliver_to=v.deliver_to,
        reply_to=v.reply_to,
        digest_only=v.digest_only,
    )


def readmit(v: Refused, envelope: Envelope) -> Accepted:
    """``v`` accepted after all (its ``envelope``), with the recipients it was classified for."""
    return Accepted(
        record=v.record,
        value=v.value,
        value_sha256=v.value_sha256,
        envelope=envelope,
        key=v.key,
        deliver_to=v.deliver_to,
        reply_to=v.reply_to,
    )


def undeliverable(v: Verdict, why: list[str]) -> Refused:
    """``v`` refused because Kafka refused for good to write what the bus produces for it
    (``why``, one reason per refusal): kept by digest. If what was refused was its nack, the
    second time it is dead-lettered without one."""
    nackable = v.reply_to is not None and len(why) < 2
    return Refused(
        record=v.record,
        value=v.value,
        value_sha256=v.value_sha256,
        outcome="reject" if nackable else "dead",
        code="undeliverable",
        problems=(
            Problem(
                "recipients",
                "undeliverable",
                f"Kafka refused to write what the bus produces for it ({why[-1]})",
                why[-1],
                "总线无法写入该消息的投递记录（Kafka 拒绝）",
            ),
        ),
        envelope=v.envelope,
        key=v.key,
        reply_to=v.reply_to if nackable else None,
        digest_only=True,
    )
