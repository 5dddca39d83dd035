"""A fake enforcement-bureau system for tests and the demo, and documents in its vocabulary."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from adapters._framework.fake_department import DepartmentClient, FakeDepartment

__all__ = [
    "DepartmentClient",
    "FakeBureau",
    "clue_receipt",
    "opinion_request",
    "penalty_decision",
    "penalty_feedback",
]


class FakeBureau(FakeDepartment):
    """The bureau's case system taking webhooks (线索移交、意见答复 arrive here)."""


def _now(offset_h: float = 0) -> str:
    return (datetime.now(UTC) + timedelta(hours=offset_h)).isoformat()


def clue_receipt(
    *, ajbh: str, xsbh: str, jsdw: list[str], accept: bool = True, glbh: str | None = None
) -> dict[str, Any]:
    """线索签收: accept the clue (opening a case), or refuse it with a reason."""
    doc: dict[str, Any] = {
        "ywlx": "线索签收",
        "ajbh": ajbh,
        "jsdw": jsdw,
        "xsbh": xsbh,
        "clyj": "接收" if accept else "拒收",
        "qssj": _now(),
    }
    if accept:
        doc["lajbh"] = ajbh
    else:
        doc["jsly"] = "不属于本局管辖范围"
    if glbh:
        doc["glbh"] = glbh
    return doc


def opinion_request(
    *, ajbh: str, qqbh: str, jsdw: list[str], yjlx: str = "鉴定", due_in_days: int = 15
) -> dict[str, Any]:
    """意见征询: ask a regulator for an opinion, appraisal etc. within a set time."""
    return {
        "ywlx": "意见征询",
        "ajbh": ajbh,
        "jsdw": jsdw,
        "qqbh": qqbh,
        "yjlx": yjlx,
        "sx": "涉案建筑是否符合规划",
        "bj": "当事人在汤池村委会东侧搭建彩钢瓦房",
        "wt": ["是否取得规划许可", "是否可以采取改正措施消除影响"],
        "dfqx": _now(24 * due_in_days),
        "lxr": "李某",
        "lxdh": "0871-67000000",
    }


def penalty_decision(ajbh: str, n: int, *, amount_fen: int = 500_000) -> dict[str, Any]:
    """One 处罚决定 entry of a feedback report."""
    return {
        "ajbh": ajbh,
        "jdsh": f"阳城执罚决字〔2026〕{n:04d}号",
        "jdrq": date.today().isoformat(),
        "dsr": {"xm": "某某餐饮有限公司", "zjlx": "统一社会信用代码", "zjhm": "91530100MA6K000000"},
        "wfxw": "擅自占用城市道路经营",
        "flyj": "《城市市容和环境卫生管理条例》第三十六条",
        "cflx": "罚款",
        "fmje": amount_fen,
        "qzcs": ["扣押"],
        "zxzt": "执行完毕",
        "sxfz": False,
    }


def penalty_feedback(
    *, ajbh: str, bgbh: str, jsdw: list[str], decisions: list[dict[str, Any]]
) -> dict[str, Any]:
    """处罚情况反馈: the monthly report of penalties to one regulator."""
    today = date.today()
    return {
        "ywlx": "处罚情况反馈",
        "ajbh": ajbh,
        "jsdw": jsdw,
        "bgbh": bgbh,
        "qsrq": today.replace(day=1).isoformat(),
        "jzrq": today.isoformat(),
        "cfjd": decisions,
    }
