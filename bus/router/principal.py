"""Binding an envelope's ``sender`` to the Kafka principal that wrote it.

A Kafka consumer is never told which principal produced a record. What it does know is the
topic, and with per-agency submit topics (``CASEBUS_SUBMIT_TOPICS=per_agency``) the ACLs of
``casebus acl plan`` let only agency A's principal write ``<prefix>.submit.<A>``. So a record
read from that topic was written with A's credentials, whatever its envelope says; an envelope
there that names another sender is refused with ``principal_mismatch``, and the nack goes to A,
the party that really sent it. A valid signature does not help: holding B's key (a leaked or
shared key) must not let A's systems speak for B on the bus.

With the shared ``<prefix>.submit`` every principal writes the same topic and there is nothing to
check: the signature is the only binding, as before.
"""

from __future__ import annotations

from dataclasses import dataclass

from bus.errors import Problem
from bus.settings import Settings

__all__ = ["PRINCIPAL_MISMATCH", "PrincipalCheck", "principal_check"]

PRINCIPAL_MISMATCH = "principal_mismatch"
"""The nack code, and the problem's rule, of an envelope whose sender is not its topic's agency."""


@dataclass(frozen=True, slots=True)
class PrincipalCheck:
    """Which agency each per-agency submit topic belongs to, and whether a record fits it."""

    prefix: str
    """The topic prefix: the topics checked are ``<prefix>.submit.<agency>``."""

    def owner(self, topic: str) -> str | None:
        """The agency whose principal alone may write ``topic``; None for any other topic."""
        head = f"{self.prefix}.submit."
        if not topic.startswith(head):
            return None
        return topic.removeprefix(head) or None

    def check(self, topic: str, sender: str) -> Problem | None:
        """The problem with an envelope claiming ``sender`` read from ``topic``, or None."""
        owner = self.owner(topic)
        if owner is None or owner == sender:
            return None
        return Problem(
            "sender",
            PRINCIPAL_MISMATCH,
            f"the envelope names sender {sender!r} but was written to {topic}, which only "
            f"{owner}'s Kafka principal may write",
            sender,
            f"信封中的发送方 {sender} 与写入该主题的 Kafka 身份 {owner} 不符",
        )


def principal_check(settings: Settings) -> PrincipalCheck | None:
    """The check for ``settings``: None with the shared submit topic (nothing to bind to)."""
    if settings.submit_topics != "per_agency":
        return None
    return PrincipalCheck(prefix=settings.topic_prefix)
