"""Department adapters in this process, without their Kafka parts: each app behind an ASGI
transport, each adapter connecting to PostgreSQL as its own role, a token per agency. For tests
of an adapter's HTTP API over the real database (attachments, retention)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import asyncpg
import httpx

from adapters._framework.auth import create_token
from adapters._framework.config import AdapterConfig, AgencyEndpoint
from adapters._framework.service import AdapterService
from bus.agencies import load_registry
from bus.agency_db import sync_agencies
from bus.provision import ensure_registered
from bus.settings import Settings
from bus.signing import write_keypair

__all__ = ["InProcess", "adapters_in_process"]


@dataclass
class InProcess:
    pool: asyncpg.Pool
    """The owner's pool (the operator's view of the database)."""
    clients: dict[str, httpx.AsyncClient]
    """Each agency's own adapter's API."""
    tokens: dict[str, str]


@contextlib.asynccontextmanager
async def adapters_in_process(
    settings: Settings, keys: Path, kinds: Mapping[str, tuple[ModuleType, tuple[str, ...]]]
) -> AsyncIterator[InProcess]:
    """``kinds`` maps an adapter kind to its package (``adapters.police`` ...) and the agencies
    it serves; their signing keys are written under ``keys``."""
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=4)
    services: list[AdapterService] = []
    clients: dict[str, httpx.AsyncClient] = {}
    try:
        async with pool.acquire() as conn:
            await sync_agencies(conn, load_registry(settings.agencies_file))
        tokens = {
            a: await create_token(pool, a) for _, agencies in kinds.values() for a in agencies
        }
        for kind, (module, agencies) in kinds.items():
            endpoints = tuple(
                AgencyEndpoint(agency_id=a, key_file=write_keypair(a, keys / kind / a).private_key)
                for a in agencies
            )
            config = AdapterConfig(adapter_kind=kind, agencies=endpoints)
            service = module.build_service(
                settings.for_service(config.service), config, run_relay=False, run_readers=False
            )
            async with pool.acquire() as conn:  # the operator registers the agencies' keys
                await ensure_registered(conn, registry=None, keys=service.own_keys)
            await service.start()
            services.append(service)
            app = module.create_app(service, manage_service=False)
            client = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url=f"http://{kind}"
            )
            clients |= {a: client for a in agencies}
        yield InProcess(pool, clients, tokens)
    finally:
        for client in set(clients.values()):
            await client.aclose()
        for service in services:
            await service.stop()
        await pool.close()
