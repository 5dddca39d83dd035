"""A fake police case system for tests and the demo, and documents in the police's vocabulary."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from adapters._framework.fake_department import DepartmentClient, FakeDepartment

__all__ = [
    "DepartmentClient",
    "FakePolice",
    "case_update",
    "filing_decision",
    "jurisdiction_forward",
    "receipt",
    "reconsideration_decision",
]


class FakePolice(FakeDepartment):
    """The police's case system taking webhooks (移送、复议、移交物品、监督通知 arrive here)."""


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _head(code: str, ajbh: str, jsdw: list[str], glbh: str | None) -> dict[str, Any]:
    doc: dict[str, Any] = {"ywlx": code, "ajbh": ajbh, "jsdw": jsdw}
    if glbh:
        doc["glbh"] = glbh
    return doc


def receipt(*, ajbh: str, ysshh: str, jsdw: list[str], glbh: str | None = None) -> dict[str, Any]:
    """移送回执: the police sign the receipt on the transfer letter."""
    return _head("移送回执", ajbh, jsdw, glbh) | {
        "ysshh": ysshh,
        "jssj": _now(),
        "jsr": "法制大队",
        "qzr": "王某",
    }


def jurisdiction_forward(
    *, ajbh: str, ysshh: str, jsdw: list[str], gxdw: str, glbh: str | None = None
) -> dict[str, Any]:
    """移送管辖: the case goes to ``gxdw``; ``jsdw`` names it and the transferring agency."""
    return _head("移送管辖", ajbh, jsdw, glbh) | {
        "ysshh": ysshh,
        "gxdw": gxdw,
        "gxdwmc": "昆明市公安局经济犯罪侦查支队",
        "ly": "涉案金额达到市级管辖标准",
        "zssj": _now(),
        "tzsh": f"转管〔2026〕{ysshh[-6:]}",
    }


def filing_decision(
    *,
    ajbh: str,
    ysshh: str,
    jsdw: list[str],
    filed: bool,
    jdsh: str,
    glbh: str | None = None,
    reasons: list[str] | None = None,
) -> dict[str, Any]:
    """立案决定: FILED with a criminal case number, or NOT_FILED with reasons and materials back."""
    doc = _head("立案决定", ajbh, jsdw, glbh) | {
        "ysshh": ysshh,
        "jd": "立案" if filed else "不予立案",
        "jdsh": jdsh,
        "jdsj": _now(),
    }
    if filed:
        doc["xsajbh"] = f"刑{jdsh}"
    else:
        if reasons is not None:
            doc["ly"] = reasons
        doc["thcl"] = [{"mc": "案卷材料", "sl": 1}, {"mc": "涉案物品清单", "sl": 1}]
    return doc


def reconsideration_decision(
    *,
    ajbh: str,
    ysshh: str,
    jsdw: list[str],
    fysqh: str,
    file_case: bool,
    jdsh: str,
    glbh: str | None = None,
) -> dict[str, Any]:
    """复议决定: keep the refusal (with reasons) or file the case."""
    doc = _head("复议决定", ajbh, jsdw, glbh) | {
        "ysshh": ysshh,
        "fysqh": fysqh,
        "jd": "立案" if file_case else "维持不予立案",
        "jdsh": jdsh,
        "jdsj": _now(),
    }
    if file_case:
        doc["xsajbh"] = f"刑{jdsh}"
    else:
        doc["ly"] = ["经复议，涉案金额未达立案追诉标准"]
    return doc


def case_update(
    *, ajbh: str, ysshh: str, jsdw: list[str], zt: str = "侦查中", note: str | None = None
) -> dict[str, Any]:
    """案件进展: where the criminal case stands."""
    doc = _head("案件进展", ajbh, jsdw, None) | {"ysshh": ysshh, "zt": zt, "gxsj": _now()}
    if note:
        doc["bz"] = note
    return doc
