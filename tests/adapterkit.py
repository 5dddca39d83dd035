"""Department adapters in this process, without their Kafka parts: each app behind an ASGI
transport, each adapter connecting to PostgreSQL as its own role, a token per agency. For tests
of an adapter's HTTP API over the real database (attachments, retention)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import asyncpg
import httpx
from buskit import Bus

from adapters import enforcement, regulators
from adapters._framework.auth import create_token
from adapters._framework.config import AdapterConfig, AgencyEndpoint
from adapters._framework.fake_department import FakeDepartment, RunningAdapter, running_adapter
from adapters._framework.service import AdapterService
from bus.agencies import load_registry
from bus.agency_db import sync_agencies
from bus.provision import ensure_registered
from bus.settings import Settings
from bus.signing import algorithm_of_profile, write_keypair

__all__ = [
    "BUREAU",
    "LAND",
    "PLANNING",
    "InProcess",
    "adapters_in_process",
    "case_no",
    "regulators_and_bureau",
    "wait_kind",
]

BUREAU = "ygh.enforcement.bureau"
PLANNING = "ygh.regulator.planning"
LAND = "ygh.regulator.land"


def case_no() -> str:
    """A fresh 案件编号, so that tests sharing a broker never share a case."""
    return f"阳城执〔2026〕{uuid.uuid4().hex[:6]}号"


async def wait_kind(
    fake: FakeDepartment, code: str, *, count: int = 1, timeout_s: float = 40
) -> list[dict[str, Any]]:
    """The documents of one 业务类型 the fake received, once ``count`` of them arrived."""
    for _ in range(int(timeout_s * 10)):
        found = [d for d in fake.received if d["ywlx"] == code]
        if len(found) >= count:
            return found
        await asyncio.sleep(0.1)
    got = [d["ywlx"] for d in fake.received]
    raise AssertionError(f"fewer than {count} {code} after {timeout_s}s; got {got}")


@contextlib.asynccontextmanager
async def regulators_and_bureau(
    bus: Bus,
    folder: Path,
    webhooks: Mapping[str, FakeDepartment | None],
    *,
    bureau: FakeDepartment | None,
    **regulators_config: Any,
) -> AsyncIterator[tuple[RunningAdapter, RunningAdapter]]:
    """A router, the regulators' adapter (for the agencies of ``webhooks``, configured with
    ``regulators_config``) and the enforcement bureau's (``bureau``: None, it pulls); both
    with their keys under ``folder / "keys"``."""
    keys = folder / "keys"
    async with (
        bus.router(),
        running_adapter(
            regulators.build_service,
            bus.settings,
            key_dir=keys,
            webhooks=webhooks,
            **regulators_config,
        ) as regs,
        running_adapter(
            enforcement.build_service, bus.settings, key_dir=keys, webhooks={BUREAU: bureau}
        ) as enf,
    ):
        yield regs, enf


@dataclass
class InProcess:
    pool: asyncpg.Pool
    """The owner's pool (the operator's view of the database)."""
    clients: dict[str, httpx.AsyncClient]
    """Each agency's own adapter's API."""
    tokens: dict[str, str]


def _key(settings: Settings, agency: str, folder: Path) -> Path:
    """A fresh key of the settings' crypto profile for ``agency``: its private key file."""
    algorithm = algorithm_of_profile(settings.crypto_profile)
    return write_keypair(agency, folder, algorithm=algorithm).private_key


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
                AgencyEndpoint(agency_id=a, key_file=_key(settings, a, keys / kind / a))
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
