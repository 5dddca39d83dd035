"""What one adapter process is told: its agencies, their keys, how each takes deliveries."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from bus.errors import ConfigError
from bus.settings import Service
from bus.sla.clock import Clock, RealClock

__all__ = ["AdapterConfig", "AgencyEndpoint", "DeliveryMode"]

DeliveryMode = Literal["webhook", "pull"]
"""How a department receives messages: we POST to it, or it GETs ``/v1/inbox``."""

# Which PostgreSQL role an adapter kind connects as (Settings.for_service): the procuratorate's
# also reads and appends to the audit log (migration 0011); every other kind is casebus_adapter.
_SERVICE_OF_KIND: dict[str, Service] = {"procuratorate": "procuratorate_adapter"}


@dataclass(frozen=True, kw_only=True)
class AgencyEndpoint:
    """One agency served by the adapter."""

    agency_id: str
    key_file: Path
    """The agency's Ed25519 private key (PKCS#8 PEM, mode 0600)."""
    webhook_url: str | None = None
    """Where messages are POSTed; None: the department pulls ``/v1/inbox``."""
    webhook_secret: bytes = b""
    """The HMAC-SHA256 key of the webhook signature."""

    @property
    def mode(self) -> DeliveryMode:
        """``webhook`` when a URL is set, else ``pull``."""
        return "webhook" if self.webhook_url else "pull"


@dataclass(frozen=True, kw_only=True)
class AdapterConfig:
    """Knobs of one adapter process; units are in the names."""

    adapter_kind: str
    agencies: tuple[AgencyEndpoint, ...]
    max_body_bytes: int = 1024 * 1024
    webhook_timeout_s: float = 10.0
    webhook_concurrency: int = 8
    """Webhook requests in flight per agency, each for a different case."""
    retry_initial_s: float = 0.5
    retry_max_s: float = 60.0
    breaker_failures: int = 5
    """Consecutive webhook failures that open an agency's circuit."""
    breaker_open_s: float = 30.0
    """How long an open circuit refuses to try before one trial request."""
    max_wait_s: float = 300.0
    """A message pending longer than this raises the ``late`` metric and logs an alert."""
    poll_interval_s: float = 0.5
    """How often a webhook deliverer looks for due deliveries it was not woken for (retries)."""
    lateness_interval_s: float = 5.0
    """How often the lateness gauges and alert are refreshed (a query each time)."""
    relay_poll_interval_s: float = 1.0
    """How often an agency's outbox relay looks for rows it was not woken for. Every commit
    of this process wakes it, so this only picks up what another replica left; at 0.2 s the
    sixteen agencies' relays of a deployment cost PostgreSQL a few hundred statements a
    second doing nothing (deploy/CAPACITY.md §8.7)."""
    pull_max_limit: int = 500
    db_pool_max_size: int = 20
    clock: Clock = field(default_factory=RealClock)
    """What time it is when the adapter stamps ``sent_at`` (and a bus.ack's time): the wall
    clock, or the demo's simulated one, so that its deadlines count on the SLA engine's clock."""

    def __post_init__(self) -> None:
        if not self.agencies:
            raise ConfigError("an adapter serves at least one agency (--agency)")
        ids = [a.agency_id for a in self.agencies]
        if len(set(ids)) != len(ids):
            raise ConfigError(f"an agency is named twice: {ids}")
        for a in self.agencies:
            if a.webhook_url and not a.webhook_secret:
                raise ConfigError(
                    f"{a.agency_id}: a webhook needs an HMAC secret", agency=a.agency_id
                )
        if self.webhook_concurrency < 1:
            raise ConfigError("webhook_concurrency must be at least 1")
        if self.max_body_bytes < 1024:
            raise ConfigError("max_body_bytes must be at least 1024")

    @property
    def service(self) -> Service:
        """The service whose database login this adapter uses (its own least privilege)."""
        return _SERVICE_OF_KIND.get(self.adapter_kind, "adapter")

    def agency(self, agency_id: str) -> AgencyEndpoint | None:
        """The endpoint of ``agency_id``, if this adapter serves it."""
        return next((a for a in self.agencies if a.agency_id == agency_id), None)

    @property
    def agency_ids(self) -> list[str]:
        """Every agency served."""
        return [a.agency_id for a in self.agencies]
