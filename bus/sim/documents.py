"""The enforcement bureau's documents the simulation submits, in the bureau's vocabulary.

The adapters' ``testing`` modules hold the other parties' documents; the bureau's criminal and
court documents are built here, with timestamps on the simulated clock where the statute counts
from them.
"""

from __future__ import annotations

import hashlib
from datetime import date, datetime, timedelta
from typing import Any

__all__ = [
    "ALL_DOCUMENTS",
    "court_application",
    "evidence_handover",
    "obstruction_report",
    "reconsideration_request",
    "supervision_request",
    "transfer",
]

ALL_DOCUMENTS = ("移送书", "调查报告", "涉案物品清单", "检验报告或鉴定结论")
"""The art. 6 manifest of a transfer (Decree 310)."""


def _file(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    content = f"{name} 正文".encode()
    digest = hashlib.sha256(content).hexdigest()
    attachment = {
        "mc": name,
        "lx": "application/pdf",
        "dx": len(content),
        "hash": digest,
        "dz": f"https://files.example.gov.cn/{name}",
    }
    return attachment, {"bt": name.removesuffix(".pdf"), "fjmc": name, "fjhash": digest}


def transfer(
    *,
    ajbh: str,
    ysshh: str,
    jsdw: list[str],
    now: datetime,
    offence: str = "非法占用农用地罪",
    amount_fen: int = 120_000_000,
) -> dict[str, Any]:
    """涉嫌犯罪案件移送 with its full art. 6 manifest as attachments."""
    attachments, manifest = [], []
    for kind in ALL_DOCUMENTS:
        attachment, ref = _file(f"{kind}-{ysshh}.pdf")
        attachments.append(attachment)
        manifest.append({"wslx": kind, **ref})
    return {
        "ywlx": "涉嫌犯罪案件移送",
        "ajbh": ajbh,
        "jsdw": jsdw,
        "fj": attachments,
        "ysshh": ysshh,
        "xzajbh": ajbh,
        "ajmc": f"某公司{offence.removesuffix('罪')}案",
        "sxzm": offence,
        "xftw": ["《中华人民共和国刑法》第三百四十二条"],
        "dsr": [
            {
                "xm": "某某建材有限公司",
                "js": "涉嫌犯罪单位",
                "zjlx": "统一社会信用代码",
                "zjhm": "91530100MA6K000000",
            }
        ],
        "ajss": "当事人在阳宗海北岸非法占用耕地堆放建材",
        "saje": amount_fen,
        "spxx": {"spr": "张某", "zw": "局长", "spsj": now.isoformat()},
        "yscl": manifest,
        "lxr": "李某",
        "lxdh": "0871-67000000",
    }


def evidence_handover(
    *, ajbh: str, ysshh: str, xsajbh: str, jsdw: list[str], now: datetime, glbh: str
) -> dict[str, Any]:
    """移交涉案物品 after the police filed the case."""
    return {
        "ywlx": "移交涉案物品",
        "ajbh": ajbh,
        "jsdw": jsdw,
        "glbh": glbh,
        "ysshh": ysshh,
        "xsajbh": xsajbh,
        "wp": [{"lx": "涉案物品", "ms": "挖掘机", "sl": 1, "dw": "台"}],
        "yjsj": now.isoformat(),
        "yjr": "李某",
        "jsr": "王某",
    }


def reconsideration_request(
    *, ajbh: str, ysshh: str, fysqh: str, jdsh: str, jsdw: list[str], now: datetime, glbh: str
) -> dict[str, Any]:
    """提请复议 of a refusal to file."""
    return {
        "ywlx": "提请复议",
        "ajbh": ajbh,
        "jsdw": jsdw,
        "glbh": glbh,
        "ysshh": ysshh,
        "fysqh": fysqh,
        "byljdsh": jdsh,
        "fyly": "涉案面积已达立案追诉标准",
        "tqsj": now.isoformat(),
    }


def supervision_request(
    *,
    ajbh: str,
    ysshh: str,
    jdsh: str,
    gajg: str,
    jsdw: list[str],
    now: datetime,
    refusal_id: str,
    glbh: str,
) -> dict[str, Any]:
    """提请立案监督 after the police kept their refusal on reconsideration."""
    return {
        "ywlx": "提请立案监督",
        "ajbh": ajbh,
        "jsdw": jsdw,
        "glbh": glbh,
        "jdsqh": f"监督申请-{ysshh}",
        "ysshh": ysshh,
        "byljdsh": jdsh,
        "byljdxx": refusal_id,
        "gajg": gajg,
        "ly": "复议后仍不立案，理由不能成立",
        "tqsj": now.isoformat(),
    }


def obstruction_report(
    *, ajbh: str, ysshh: str, jsdw: list[str], zadw: str, now: datetime
) -> dict[str, Any]:
    """移送受阻报告: the police neither decide nor explain."""
    return {
        "ywlx": "移送受阻报告",
        "ajbh": ajbh,
        "jsdw": jsdw,
        "bgbh": f"阳城执报-{ysshh}",
        "ysshh": ysshh,
        "szlx": "不出具回执",
        "zadw": zadw,
        "qkms": "移送后逾期未作出立案决定",
        "szsj": now.isoformat(),
        "bgsj": now.isoformat(),
    }


def court_application(
    *, ajbh: str, sqh: str, jsdw: list[str], today: date, now: datetime
) -> dict[str, Any]:
    """强制执行申请: the reminder served 30 days ago, the party's deadline passed 20 days ago."""
    compliance_deadline = today - timedelta(days=20)
    return {
        "ywlx": "强制执行申请",
        "ajbh": ajbh,
        "jsdw": jsdw,
        "sqh": sqh,
        "jdsh": "阳城执罚决字〔2026〕0007号",
        "jdrq": (compliance_deadline - timedelta(days=15)).isoformat(),
        "bzxr": {
            "xm": "某某餐饮有限公司",
            "zjlx": "统一社会信用代码",
            "zjhm": "91530100MA6K000000",
        },
        "yw": "缴纳罚款五万元",
        "lxqx": compliance_deadline.isoformat(),
        "cgsdrq": (today - timedelta(days=30)).isoformat(),
        "je": 5_000_000,
        "sqsj": now.isoformat(),
    }
