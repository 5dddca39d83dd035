"""Bus → court: inbox messages in the department's vocabulary, by webhook or pull."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from adapters._framework.outbound import inbox_handler
from adapters.court.mapping import RECEIVES, VOCABULARY
from bus.inbox import InboxHandler
from bus.models import Envelope

__all__ = ["RECEIVES", "document", "handler"]


def handler(agency_id: str, *, on_stored: Callable[[str], None] | None = None) -> InboxHandler:
    """The inbox handler storing the court's messages as pending deliveries."""
    return inbox_handler(agency_id, vocabulary=VOCABULARY, on_stored=on_stored)


def document(envelope: Envelope, payload: dict[str, Any]) -> dict[str, Any]:
    """One message as the court's system reads it."""
    head = envelope.model_dump(mode="json", exclude={"payload", "signature"})
    return VOCABULARY.document(head, payload)
