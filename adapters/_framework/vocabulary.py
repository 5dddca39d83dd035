"""Translate between a department's vocabulary and ours, both ways, field by field.

A department names fields with pinyin initials (``ajbh`` 案件编号, ``xsbh`` 线索编号) and names
message kinds in its own terms (``ywlx`` 业务类型: ``线索移交``). A :class:`Vocabulary` is data:
for each kind, a table *department name → our field name* (or a :class:`Nested` table for a record
or a list of records), plus optional value tables for enums. From it the framework derives the
translation of documents in both directions and of problem paths (``decisions[0].amount_fen`` →
``cfjd[0].fkje``), so every 4xx names fields the way the department wrote them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeAlias

from bus.attachments import sha256_of_uri
from bus.errors import Problem

__all__ = [
    "BUS_KINDS",
    "DOCUMENT_REF_FIELDS",
    "DOWNLOAD_FIELD",
    "ENVELOPE_FIELDS",
    "ID_TYPES",
    "KIND_FIELD",
    "SUBJECT_FIELDS",
    "FieldTable",
    "KindVocabulary",
    "Nested",
    "Vocabulary",
    "download_path",
]


@dataclass(frozen=True)
class Nested:
    """A record (or list of records) field: our name, and the table of its own fields."""

    name: str
    fields: FieldTable


FieldTable: TypeAlias = Mapping[str, "str | Nested"]
"""Department field name → our field name, or :class:`Nested` for records."""

KIND_FIELD: Final = "ywlx"
"""业务类型: the department's name of a message kind."""

ENVELOPE_FIELDS: Final[FieldTable] = {
    "xxbh": "message_id",  # 消息编号
    "ajbh": "case_id",  # 案件编号
    "fsdw": "sender",  # 发送单位
    "jsdw": "recipients",  # 接收单位
    "glbh": "correlation_id",  # 关联编号（所答复的请求）
    "yyxx": "causation_id",  # 引起本消息的消息编号
    "fssj": "sent_at",  # 发送时间
    "qx": "due_at",  # 期限
    "fj": Nested(  # 附件
        "attachments",
        {
            "mc": "name",  # 名称
            "lx": "media_type",  # 类型
            "dx": "size_bytes",  # 大小（字节）
            "hash": "sha256",  # SHA-256
            "dz": "uri",  # 地址
            "sm3": "sm3",  # SM3 杂凑值（国密配置下由适配器按上传文件填写）
        },
    ),
}
"""Envelope fields, the same for every adapter and kind."""

DOWNLOAD_FIELD: Final = "xzdz"
"""下载地址: added to each delivered ``fj`` entry kept in the bus's store: where the department
downloads it from its own adapter, with its own token."""


def download_path(sha256: str) -> str:
    """Where a department downloads the stored attachment ``sha256`` from its adapter."""
    return f"/v1/attachments/{sha256}"


# Fields a department may set on a submission; the others are the bus's to set.
_SUBMITTABLE_ENVELOPE: Final = frozenset({"ajbh", "fsdw", "jsdw", "glbh", "yyxx", "qx", "fj"})

_PATH_TOKEN = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


@dataclass(frozen=True)
class KindVocabulary:
    """One kind in a department's terms: its ``ywlx`` code, its fields and its enum values."""

    kind: str
    code: str
    fields: FieldTable
    values: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    """Our field name → (department value → our value), for enums."""


def _reverse(table: FieldTable) -> dict[str, tuple[str, FieldTable | None]]:
    out: dict[str, tuple[str, FieldTable | None]] = {}
    for theirs, ours in table.items():
        if isinstance(ours, Nested):
            out[ours.name] = (theirs, ours.fields)
        else:
            out[ours] = (theirs, None)
    return out


def _problem(path: str, rule: str, en: str, zh: str, value: Any = None) -> Problem:
    return Problem(path=path, rule=rule, message=en, value=value, message_zh=zh)


class Vocabulary:
    """Every kind an adapter knows, in the department's terms."""

    def __init__(self, kinds: list[KindVocabulary]) -> None:
        self._by_kind = {k.kind: k for k in kinds}
        self._by_code = {k.code: k for k in kinds}
        for k in kinds:
            clash = set(k.fields) & (set(ENVELOPE_FIELDS) | {KIND_FIELD})
            if clash:
                raise ValueError(f"{k.kind}: fields {sorted(clash)} clash with envelope fields")

    def kinds(self) -> list[str]:
        """Our names of every kind described."""
        return list(self._by_kind)

    def code(self, kind: str) -> str:
        """The department's ``ywlx`` code of ``kind`` (our name if it has none)."""
        entry = self._by_kind.get(kind)
        return entry.code if entry else kind

    def kind_of(self, code: str) -> str | None:
        """Our kind for a department ``ywlx`` code."""
        entry = self._by_code.get(code)
        return entry.kind if entry else None

    def codes(self, kinds: list[str]) -> list[str]:
        """The department codes of ``kinds``."""
        return [self.code(k) for k in kinds]

    def describe(self, kinds: list[str]) -> str:
        """A Markdown table per kind: the department's field names next to ours (for OpenAPI)."""
        parts = []
        for kind in kinds:
            entry = self._by_kind.get(kind)
            if entry is None:
                continue
            lines = [
                f"**{KIND_FIELD} = {entry.code}** (`{kind}`)",
                "",
                "| 字段 | field |",
                "|---|---|",
            ]
            lines += [f"| `{theirs}` | `{ours}` |" for theirs, ours in _flatten(entry.fields, "")]
            parts.append("\n".join(lines))
        return "\n\n".join(parts)

    # -- department → bus ---------------------------------------------------------------------

    def split_submission(
        self, kind: str, doc: Mapping[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any], list[Problem]]:
        """``(envelope fields, payload, problems)`` of a submitted document, in our names."""
        entry = self._by_kind[kind]
        envelope: dict[str, Any] = {}
        payload: dict[str, Any] = {}
        problems: list[Problem] = []
        for key, value in doc.items():
            if key == KIND_FIELD:
                continue
            if key in _SUBMITTABLE_ENVELOPE:
                spec = ENVELOPE_FIELDS[key]
                if key == "fj" and isinstance(value, list):  # forwarded as received: the link
                    value = [_without_link(v) for v in value]  # is the adapter's, not the file's
                envelope.update(self._in({key: value}, {key: spec}, "", problems, {}))
            elif key in entry.fields:
                payload.update(
                    self._in({key: value}, {key: entry.fields[key]}, "", problems, entry.values)
                )
            else:
                problems.append(
                    _problem(key, "extra_forbidden", "unknown field", "不允许出现该字段", None)
                )
        return envelope, payload, problems

    def _in(
        self,
        doc: Mapping[str, Any],
        table: FieldTable,
        prefix: str,
        problems: list[Problem],
        values: Mapping[str, Mapping[str, str]],
    ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in doc.items():
            path = f"{prefix}.{key}" if prefix else key
            spec = table.get(key)
            if spec is None:
                problems.append(
                    _problem(path, "extra_forbidden", "unknown field", "不允许出现该字段")
                )
            elif isinstance(spec, Nested):
                if isinstance(value, list):
                    out[spec.name] = [
                        self._in(item, spec.fields, f"{path}[{i}]", problems, values)
                        if isinstance(item, Mapping)
                        else item
                        for i, item in enumerate(value)
                    ]
                elif isinstance(value, Mapping):
                    out[spec.name] = self._in(value, spec.fields, path, problems, values)
                else:
                    out[spec.name] = value  # the model reports the wrong type
            else:
                out[spec] = _translate_value(value, values.get(spec))
        return out

    def department_path(self, kind: str | None, path: str, *, envelope: bool = False) -> str:
        """Our problem path (``decisions[0].amount_fen``) in the department's names."""
        if path in ("", "$"):
            return "$"
        if path == "kind":
            return KIND_FIELD
        table: FieldTable | None
        if envelope or kind is None or kind not in self._by_kind:
            table = ENVELOPE_FIELDS
        else:
            table = self._by_kind[kind].fields
        out = ""
        for name, index in _PATH_TOKEN.findall(path):
            if index:
                out += f"[{index}]"
                continue
            theirs = name
            if table is not None:
                found = _reverse(table).get(name)
                if found is not None:
                    theirs, table = found
                else:
                    table = None
            out += f".{theirs}" if out else theirs
        return out or "$"

    # -- bus → department ---------------------------------------------------------------------

    def document(self, envelope: Mapping[str, Any], payload: Mapping[str, Any]) -> dict[str, Any]:
        """A delivered message in the department's vocabulary (JSON-ready values)."""
        kind = str(envelope["kind"])
        entry = self._by_kind.get(kind)
        doc: dict[str, Any] = {KIND_FIELD: self.code(kind)}
        doc.update(self._out(envelope, ENVELOPE_FIELDS, {}))
        for item in doc.get("fj") or ():
            if item.get("sm3") is None:  # only an envelope of version 2 carries one
                item.pop("sm3", None)
            if sha256_of_uri(str(item.get("dz"))) == item.get("hash"):
                item[DOWNLOAD_FIELD] = download_path(str(item["hash"]))
        if entry is None:
            doc.update(payload)  # a kind this department has no terms for: our names
        else:
            doc.update(self._out(payload, entry.fields, entry.values))
        return doc

    def _out(
        self,
        data: Mapping[str, Any],
        table: FieldTable,
        values: Mapping[str, Mapping[str, str]],
    ) -> dict[str, Any]:
        reverse = _reverse(table)
        out: dict[str, Any] = {}
        for ours, value in data.items():
            found = reverse.get(ours)
            if found is None:
                continue
            theirs, sub = found
            if sub is not None and isinstance(value, list):
                out[theirs] = [
                    self._out(v, sub, values) if isinstance(v, Mapping) else v for v in value
                ]
            elif sub is not None and isinstance(value, Mapping):
                out[theirs] = self._out(value, sub, values)
            else:
                table_of_values = values.get(ours)
                if table_of_values is not None:
                    back = {v: k for k, v in table_of_values.items()}
                    if isinstance(value, list):
                        value = [back.get(v, v) if isinstance(v, str) else v for v in value]
                    elif isinstance(value, str):
                        value = back.get(value, value)
                out[theirs] = value
        return out


def _without_link(entry: Any) -> Any:
    if isinstance(entry, Mapping) and DOWNLOAD_FIELD in entry:
        return {k: v for k, v in entry.items() if k != DOWNLOAD_FIELD}
    return entry


def _flatten(table: FieldTable, prefix: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for theirs, ours in table.items():
        if isinstance(ours, Nested):
            out.append((f"{prefix}{theirs}", f"{ours.name}"))
            out += [
                (f"{prefix}{theirs}[].{t}", f"{ours.name}[].{o}")
                for t, o in _flatten(ours.fields, "")
            ]
        else:
            out.append((f"{prefix}{theirs}", ours))
    return out


def _translate_value(value: Any, table: Mapping[str, str] | None) -> Any:
    if table is None:
        return value
    if isinstance(value, str):
        return table.get(value, value)
    if isinstance(value, list):
        return [table.get(v, v) if isinstance(v, str) else v for v in value]
    return value


# -- tables every department shares ----------------------------------------------------------------

ID_TYPES: Final[Mapping[str, str]] = {
    "居民身份证": "RESIDENT_ID_CARD",
    "护照": "PASSPORT",
    "港澳居民来往内地通行证": "HK_MACAO_PERMIT",
    "台湾居民来往大陆通行证": "TAIWAN_PERMIT",
    "外国人永久居留身份证": "FOREIGN_PERMANENT_RESIDENT_ID",
    "统一社会信用代码": "UNIFIED_SOCIAL_CREDIT_CODE",
    "其他": "OTHER",
}
"""证件类型 as departments write it → our symbol."""

SUBJECT_FIELDS: Final[FieldTable] = {
    "xm": "name",  # 姓名或名称
    "zjlx": "id_type",  # 证件类型
    "zjhm": "id_number",  # 证件号码
    "dz": "address",  # 地址
}
"""当事人."""

DOCUMENT_REF_FIELDS: Final[FieldTable] = {
    "bt": "title",  # 标题
    "fjmc": "attachment_name",  # 附件名称（与 fj[].mc 对应）
    "fjhash": "attachment_sha256",  # 附件 SHA-256
}
"""A document listed in a payload, pointing at one of the attachments (``fj``)."""

_SLA_FIELDS: Final[FieldTable] = {
    "clbh": "policy_id",  # 期限策略编号
    "qxbh": "deadline_id",  # 期限编号
    "ajbh_qx": "case_id",  # 期限所属案件编号
    "qdxx": "opened_by",  # 起算消息
    "dqsj": "due_at",  # 到期时间
    "zrdw": "owner_agency",  # 责任单位
    "ddd": "waiting_agency",  # 等待方
    "fssj_sj": "occurred_at",  # 事件时间
    "bjxx": "closed_by",  # 办结消息
}

BUS_KINDS: Final[tuple[KindVocabulary, ...]] = (
    KindVocabulary(
        "bus.delivered",
        "投递回执",
        {
            "yxxbh": "original_message_id",  # 原消息编号
            "yywlx": "original_kind",  # 原业务类型
            "tddw": "recipients",  # 投递单位
            "sjxh": "audit_index",  # 审计序号
            "tdsj": "delivered_at",  # 投递时间
        },
    ),
    KindVocabulary(
        "bus.ack",
        "签收确认",
        {
            "yxxbh": "original_message_id",
            "qsdw": "acknowledged_by",  # 签收单位
            "qssj": "acknowledged_at",  # 签收时间
        },
    ),
    KindVocabulary(
        "bus.nack",
        "拒收通知",
        {
            "yxxbh": "original_message_id",
            "jsdm": "code",  # 拒收代码
            "yy": Nested(
                "reasons",
                {"lj": "path", "gz": "rule", "sm": "message", "zwsm": "message_zh"},
            ),
            "jsfdw": "rejected_by",  # 拒收方
            "jssj": "rejected_at",  # 拒收时间
        },
    ),
    KindVocabulary("sla.warning", "期限预警", _SLA_FIELDS),
    KindVocabulary("sla.breach", "超期通报", _SLA_FIELDS),
    KindVocabulary("sla.met", "按期办结", _SLA_FIELDS),
)
"""The bus's own kinds, as every department receives them."""
