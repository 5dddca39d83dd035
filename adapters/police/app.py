"""The police adapter's HTTP API and service."""

from __future__ import annotations

from typing import Final

from fastapi import FastAPI

from adapters._framework.app import create_app as _create_app
from adapters._framework.config import AdapterConfig
from adapters._framework.service import AdapterService
from adapters.police.mapping import RECEIVES, SENDS, VOCABULARY
from bus.settings import Settings

__all__ = ["ADAPTER_KIND", "build_service", "create_app"]

ADAPTER_KIND: Final = "police"
"""The name of this adapter: ``casebus adapter police``."""


def build_service(
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
        vocabulary=VOCABULARY,
        sends=SENDS,
        receives=RECEIVES,
        relay_settings=relay_settings,
        run_relay=run_relay,
        run_readers=run_readers,
    )


def create_app(service: AdapterService, *, manage_service: bool = True) -> FastAPI:
    """The FastAPI app over ``service`` (see :func:`build_service`)."""
    return _create_app(service, manage_service=manage_service)
