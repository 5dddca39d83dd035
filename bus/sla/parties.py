"""Who owes a deadline, who waits for it, and which procuratorate hears of a breach.

A policy names parties by role (``sender``, ``recipient``) or by agency kind (``police``); the
registry says which agency of the opening message is of that kind.
"""

from __future__ import annotations

from typing import get_args

from bus.agencies import AgencyKind, Registry
from bus.errors import NoPartyError
from bus.models import Envelope

__all__ = ["Parties"]

_KINDS: frozenset[str] = frozenset(get_args(AgencyKind))


class Parties:
    """Resolves policy parties against the agency registry."""

    def __init__(self, registry: Registry) -> None:
        self._kind_of = {a.id: a.kind for a in registry.agencies}
        self._registry = registry

    def resolve(self, party: str, envelope: Envelope) -> str:
        """The agency that plays ``party`` for a deadline opened by ``envelope``.

        ``sender`` and ``recipient`` (the first named one) are taken from the envelope; an
        agency kind is the first agency of that kind among the sender and recipients, else the
        only agency of that kind in the registry.
        """
        if party == "sender":
            return envelope.sender
        if party == "recipient":
            return envelope.recipients[0]
        if party not in _KINDS:
            raise NoPartyError(f"unknown party {party!r}")
        for agency_id in (envelope.sender, *envelope.recipients):
            if self._kind_of.get(agency_id) == party:
                return agency_id
        known = [a.id for a in self._registry.agencies if a.kind == party]
        if len(known) == 1:
            return known[0]
        raise NoPartyError(
            f"no {party} among {envelope.sender} and {', '.join(envelope.recipients)}, and the "
            f"registry has {len(known)} agencies of that kind",
            message_id=str(envelope.message_id),
            case_id=envelope.case_id,
        )

    def procuratorates(self, envelope: Envelope) -> tuple[str, ...]:
        """The procuratorates to tell of a breach: those the message names, else every one in
        the registry (a deployment registers the one competent for its area)."""
        named = [a for a in (envelope.sender, *envelope.recipients) if self.is_procuratorate(a)]
        if named:
            return tuple(dict.fromkeys(named))
        return tuple(a.id for a in self._registry.agencies if a.kind == "procuratorate")

    def is_procuratorate(self, agency_id: str) -> bool:
        """Whether ``agency_id`` is a procuratorate."""
        return self._kind_of.get(agency_id) == "procuratorate"

    def top_level(self, kind: str) -> list[str]:
        """Agencies of ``kind`` without a parent of the same kind (a bureau, not its squadrons)."""
        return [
            a.id
            for a in self._registry.agencies
            if a.kind == kind and (a.parent is None or self._kind_of.get(a.parent) != kind)
        ]

    def of_kind(self, kind: str) -> list[str]:
        """Every agency of ``kind``."""
        return [a.id for a in self._registry.agencies if a.kind == kind]
