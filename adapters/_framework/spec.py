"""One declarative spec per adapter, from which the framework and the CLI build everything.

An adapter is learned once: what differs between departments is data (their vocabulary, what
they send and receive, the statutory checks of their submissions) plus, for the procuratorate
alone, extra routes and extra inbox readers. ``adapters/<kind>/__init__.py`` declares its
:class:`AdapterSpec`; the service, the HTTP API and ``casebus adapter <kind>`` are built from it,
and :mod:`adapters.specs` lists every spec.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from fastapi import FastAPI

from adapters._framework.app import create_app
from adapters._framework.checks import SubmissionCheck
from adapters._framework.config import AdapterConfig
from adapters._framework.service import AdapterService
from adapters._framework.vocabulary import Vocabulary
from bus.agencies import AgencyKind
from bus.inbox import InboxReader
from bus.settings import Settings

__all__ = ["AdapterSpec", "ReaderFactory", "RouteInstaller"]

RouteInstaller = Callable[[FastAPI, AdapterService], None]
"""Adds an adapter's own routes (and middleware) to the common API of a service."""
ReaderFactory = Callable[[AdapterService, str], InboxReader]
"""Makes one extra inbox reader of a service for one agency it serves; the service keeps it
running (replaced after a pause if it gives up) beside the adapter's own reader."""


@dataclass(frozen=True, kw_only=True)
class AdapterSpec:
    """What one kind of department adapter is: everything else is the framework's."""

    kind: str
    """The adapter's name: ``casebus adapter <kind>``."""
    agency_kind: AgencyKind
    """The kind of agency it serves, as the registry (``deploy/agencies.yaml``) names it."""
    summary: str
    """One line for the CLI's help."""
    vocabulary: Vocabulary
    """Every kind the department sends or receives, in its terms."""
    sends: Sequence[str]
    """What the department submits."""
    receives: Sequence[str]
    """What the department is sent (besides the bus's own receipts and SLA events)."""
    checks: tuple[SubmissionCheck, ...] = ()
    """Statutory checks of submissions, before anything is signed."""
    routes: tuple[RouteInstaller, ...] = ()
    """Routes beyond the common API."""
    readers: tuple[ReaderFactory, ...] = ()
    """Inbox readers beyond the one storing deliveries."""

    def __post_init__(self) -> None:
        # Kept as tuples: a spec is a value, not a view of some module's lists.
        object.__setattr__(self, "sends", tuple(self.sends))
        object.__setattr__(self, "receives", tuple(self.receives))

    def build_service(
        self,
        settings: Settings,
        config: AdapterConfig,
        *,
        relay_settings: Settings | None = None,
        run_relay: bool = True,
        run_readers: bool = True,
    ) -> AdapterService:
        """The service behind the API: signers, outbox relays, inbox readers, deliverers."""
        return AdapterService(
            settings,
            config,
            spec=self,
            relay_settings=relay_settings,
            run_relay=run_relay,
            run_readers=run_readers,
        )

    def create_app(self, service: AdapterService, *, manage_service: bool = True) -> FastAPI:
        """The HTTP API over ``service`` (see :meth:`build_service`), this spec's routes
        included."""
        return create_app(service, manage_service=manage_service)
