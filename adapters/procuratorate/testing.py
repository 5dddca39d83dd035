"""A fake procuratorate system for tests and the demo, and documents in its vocabulary."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from adapters._framework.testing import (
    DepartmentClient,
    FakeDepartment,
    RunningAdapter,
    running_adapter,
)
from adapters.procuratorate.app import build_service, create_app
from bus.settings import Settings

__all__ = [
    "DepartmentClient",
    "FakeProcuratorate",
    "running_procuratorate",
    "supervision_notice",
]


class FakeProcuratorate(FakeDepartment):
    """The procuratorate's system taking webhooks (the chain's copies arrive here)."""


def supervision_notice(
    *,
    ajbh: str,
    ysshh: str,
    jsdw: list[str],
    gajg: str,
    tzsh: str,
    file_case: bool,
    due_in_days: int = 15,
    glbh: str | None = None,
) -> dict[str, Any]:
    """立案监督通知: ask the police ``gajg`` to explain a refusal, or to file the case."""
    now = datetime.now(UTC)
    doc: dict[str, Any] = {
        "ywlx": "立案监督通知",
        "ajbh": ajbh,
        "jsdw": jsdw,
        "tzsh": tzsh,
        "tzlx": "通知立案" if file_case else "要求说明不立案理由",
        "ysshh": ysshh,
        "gajg": gajg,
        "nr": "经审查，不立案理由不能成立，请依法立案" if file_case else "请说明不立案理由",
        "qfsj": now.isoformat(),
        "xq": (now + timedelta(days=due_in_days)).isoformat(),
    }
    if glbh:
        doc["glbh"] = glbh
    return doc


@contextlib.asynccontextmanager
async def running_procuratorate(
    settings: Settings,
    *,
    key_dir: Path,
    webhooks: dict[str, FakeDepartment | None],
    **config: Any,
) -> AsyncIterator[RunningAdapter]:
    """As :func:`~adapters._framework.testing.running_adapter`, with the procuratorate's own
    routes (timeline, screening, statistics, audit proofs) on the in-process client."""
    async with running_adapter(
        build_service, settings, key_dir=key_dir, webhooks=webhooks, **config
    ) as base:
        app = create_app(base.service, manage_service=False)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://adapter") as client:
            running = RunningAdapter(base.service, client)
            running.tokens = dict(base.tokens)
            yield running
