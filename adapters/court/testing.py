"""A fake court system for tests and the demo, and documents in the court's vocabulary."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from adapters._framework.fake_department import DepartmentClient, FakeDepartment

__all__ = ["DepartmentClient", "FakeCourt", "acceptance", "ruling"]


class FakeCourt(FakeDepartment):
    """The court's system taking webhooks (强制执行申请 arrives here)."""


def acceptance(
    *,
    ajbh: str,
    sqh: str,
    jsdw: list[str],
    accepted: bool,
    fyah: str | None = None,
    hearing: bool = False,
    glbh: str | None = None,
) -> dict[str, Any]:
    """受理决定: accept (with the court's case number) or not, with reasons."""
    doc: dict[str, Any] = {
        "ywlx": "受理决定",
        "ajbh": ajbh,
        "jsdw": jsdw,
        "sqh": sqh,
        "jd": "受理" if accepted else "不予受理",
        "jdsj": datetime.now(UTC).isoformat(),
        "xtz": hearing,
    }
    if fyah:
        doc["fyah"] = fyah
    if not accepted:
        doc["ly"] = ["申请材料不齐全"]
    if glbh:
        doc["glbh"] = glbh
    return doc


def ruling(
    *, ajbh: str, sqh: str, fyah: str, jsdw: list[str], execute: bool = True
) -> dict[str, Any]:
    """执行裁定: execute, or not with reasons."""
    doc: dict[str, Any] = {
        "ywlx": "执行裁定",
        "ajbh": ajbh,
        "jsdw": jsdw,
        "sqh": sqh,
        "fyah": fyah,
        "cdsh": f"{fyah}之一",
        "cd": "准予执行" if execute else "不予执行",
        "cdsj": datetime.now(UTC).isoformat(),
    }
    if not execute:
        doc["ly"] = ["行政决定明显缺乏事实根据"]
    return doc
