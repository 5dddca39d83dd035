"""A fake procuratorate system for tests and the demo, and documents in its vocabulary."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from adapters._framework.fake_department import (
    DepartmentClient,
    FakeDepartment,
    RunningAdapter,
    running_adapter,
)
from adapters.procuratorate import build_service
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


def running_procuratorate(
    settings: Settings,
    *,
    key_dir: Path,
    webhooks: dict[str, FakeDepartment | None],
    **config: Any,
) -> contextlib.AbstractAsyncContextManager[RunningAdapter]:
    """As :func:`~adapters._framework.fake_department.running_adapter` for the procuratorate
    (its own routes, timeline, screening, statistics and audit proofs, are on the in-process
    client)."""
    return running_adapter(build_service, settings, key_dir=key_dir, webhooks=webhooks, **config)
