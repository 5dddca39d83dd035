"""Turn pydantic's errors into :class:`~bus.errors.Problem` lists, in English and Chinese."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from bus.errors import Problem

__all__ = ["format_path", "problems_from_validation_error"]

# Chinese wording by pydantic error type (and our own rule names); ``{...}`` are error context keys.
_ZH: dict[str, str] = {
    "missing": "缺少必填字段",
    "extra_forbidden": "不允许出现该字段",
    "string_type": "应为字符串",
    "string_unicode": "文本中含有无效的 Unicode 字符（未配对的代理项）",
    "string_too_short": "内容过短（至少 {min_length} 个字符）",
    "string_too_long": "内容过长（至多 {max_length} 个字符）",
    "string_pattern_mismatch": "格式不符合要求（{pattern}）",
    "int_type": "应为整数",
    "int_parsing": "应为整数",
    "int_from_float": "应为整数，不能带小数",
    "greater_than_equal": "数值应不小于 {ge}",
    "greater_than": "数值应大于 {gt}",
    "less_than_equal": "数值应不大于 {le}",
    "less_than": "数值应小于 {lt}",
    "bool_type": "应为布尔值",
    "bool_parsing": "应为布尔值",
    "bytes_type": "应为字节串",
    "bytes_too_short": "字节串过短（至少 {min_length} 字节）",
    "bytes_too_long": "字节串过长（至多 {max_length} 字节）",
    "enum": "取值应为其中之一：{expected}",
    "literal_error": "取值应为其中之一：{expected}",
    "datetime_type": "应为日期时间",
    "datetime_parsing": "日期时间格式错误",
    "datetime_from_date_parsing": "日期时间格式错误",
    "timezone_aware": "日期时间须带时区（统一按 UTC 传输）",
    "datetime_out_of_range": "日期时间换算为 UTC 后须在公元 1 年至 9999 年之间",
    "date_type": "应为日期",
    "date_parsing": "日期格式错误",
    "date_from_datetime_parsing": "日期格式错误",
    "date_from_datetime_inexact": "日期不应带时分秒",
    "uuid_type": "应为 UUID",
    "uuid_parsing": "UUID 格式错误",
    "list_type": "应为列表",
    "too_short": "至少需要 {min_length} 项",
    "too_long": "至多允许 {max_length} 项",
    "model_type": "应为对象",
    "model_attributes_type": "应为对象",
    "dict_type": "应为对象",
    "value_error": "取值无效",
    "unknown_kind": "未知的消息类型",
    "reasons_required": "须说明理由",
    "transfer_letter_missing": "移送材料清单须包含移送书",
    "period_reversed": "期间终止日不得早于起始日",
    "attachment_ref_incomplete": "附件名称与 SHA-256 须同时提供",
    "duplicate_name": "名称重复",
    "identifier_blank": "编号不得为空，也不得仅含空白字符",
    "identifier_character": "编号中不得含有控制字符、格式字符等不可见字符，空格仅限普通空格"
    "（发现 {character}，Unicode 类别 {category}）",
    "identifier_untrimmed": "编号首尾不得有空白字符",
    "identifier_not_nfc": "编号须为 Unicode NFC 规范化形式",
}


def format_path(loc: Sequence[int | str], prefix: str = "") -> str:
    """``("decisions", 0, "amount_fen")`` → ``decisions[0].amount_fen``; the root is ``$``."""
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out or "$"


def _zh(error: ErrorDetails) -> str | None:
    template = _ZH.get(error["type"])
    if template is None:
        return None
    ctx: dict[str, Any] = dict(error.get("ctx") or {})
    try:
        return template.format(**ctx)
    except (KeyError, IndexError):
        return template


def problems_from_validation_error(error: ValidationError, *, prefix: str = "") -> list[Problem]:
    """Every error pydantic found, as :class:`Problem` with path, rule (the error type) and value.

    A cross-field rule reports the field at fault in its context (``ctx["field"]``); it is added to
    the path so the department sees e.g. ``reasons`` rather than the whole record.
    """
    problems: list[Problem] = []
    for e in error.errors(include_url=False):
        loc: list[int | str] = list(e["loc"])
        ctx = e.get("ctx") or {}
        if isinstance(ctx.get("field"), str):
            loc.append(ctx["field"])
        value = None if e["type"] == "missing" or isinstance(e.get("input"), dict) else e["input"]
        problems.append(
            Problem(
                path=format_path(loc, prefix),
                rule=e["type"],
                message=e["msg"],
                value=value,
                message_zh=_zh(e),
            )
        )
    return problems
