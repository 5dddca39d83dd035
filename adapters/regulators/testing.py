"""A fake regulator system for tests and the demo, and documents in its vocabulary."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

from adapters._framework.fake_department import DepartmentClient, FakeDepartment

__all__ = [
    "DepartmentClient",
    "FakeRegulator",
    "attachment",
    "clue_handover",
    "opinion_delegated",
    "opinion_response",
]


class FakeRegulator(FakeDepartment):
    """A regulator's system taking webhooks (线索签收、意见征询、处罚反馈 arrive here)."""


def _now(offset_h: float = 0) -> str:
    return (datetime.now(UTC) + timedelta(hours=offset_h)).isoformat()


def attachment(name: str, content: bytes, *, media_type: str = "application/pdf") -> dict[str, Any]:
    """An ``fj`` entry: the document travels by reference and SHA-256."""
    return {
        "mc": name,
        "lx": media_type,
        "dx": len(content),
        "hash": hashlib.sha256(content).hexdigest(),
        "dz": f"https://files.example.gov.cn/{name}",
    }


def clue_handover(
    *, ajbh: str, xsbh: str, jsdw: list[str], records: dict[str, bytes] | None = None
) -> dict[str, Any]:
    """线索移交 with its supervision records (监管记录) as attachments."""
    records = records if records is not None else {"巡查记录.pdf": b"%PDF-1.7 patrol record"}
    return {
        "ywlx": "线索移交",
        "ajbh": ajbh,
        "jsdw": jsdw,
        "xsbh": xsbh,
        "wflx": "违法建设",
        "wfss": "未取得建设工程规划许可证擅自搭建彩钢瓦房约120平方米",
        "fxdd": "阳宗海镇汤池村委会东侧",
        "fxsj": _now(-48),
        "flyj": ["《中华人民共和国城乡规划法》第四十条", "《中华人民共和国城乡规划法》第六十四条"],
        "dsr": [{"xm": "张某", "zjlx": "居民身份证", "zjhm": "530101198001011234"}],
        "jgjl": [
            {"bt": name, "fjmc": name, "fjhash": hashlib.sha256(body).hexdigest()}
            for name, body in records.items()
        ],
        "fj": [attachment(name, body) for name, body in records.items()],
    }


def opinion_response(
    *, ajbh: str, qqbh: str, dfbh: str, jsdw: list[str], glbh: str | None = None
) -> dict[str, Any]:
    """意见答复: the written answer to an opinion request."""
    doc: dict[str, Any] = {
        "ywlx": "意见答复",
        "ajbh": ajbh,
        "jsdw": jsdw,
        "qqbh": qqbh,
        "dfbh": dfbh,
        "dfnr": "经鉴定，涉案建筑位于生态保护红线范围内，不符合控制性详细规划。",
        "jl": ["违法建设", "无法采取改正措施消除影响"],
        "dfsj": _now(),
        "qfr": "王某",
    }
    if glbh:
        doc["glbh"] = glbh
    return doc


def opinion_delegated(
    *, ajbh: str, qqbh: str, jsdw: list[str], glbh: str | None = None
) -> dict[str, Any]:
    """委托机构办理: the regulator commissioned a qualified institution."""
    doc: dict[str, Any] = {
        "ywlx": "委托机构办理",
        "ajbh": ajbh,
        "jsdw": jsdw,
        "qqbh": qqbh,
        "jgmc": "云南省建设工程质量检测中心",
        "jgxydm": "12530000431200079X",
        "zzzsbh": "云建检字第2026001号",
        "wtfw": "房屋结构安全鉴定",
        "wtsj": _now(),
        "yjwcsj": _now(24 * 15),
    }
    if glbh:
        doc["glbh"] = glbh
    return doc
