"""The console's two languages: Chinese for the ops staff and prosecutors who read it, English
as an option (``?lang=en``, or a browser whose Accept-Language prefers English).

Agencies are named as the registry names them (``name`` / ``name_en`` of deploy/agencies.yaml,
as loaded into the ``agencies`` table). Message kinds are named by the departments' national
document codes (``ywlx``, the adapters' shared vocabulary), and deadlines by the step the
statute or the policy default requires (deploy/sla-policies.yaml cites the article); the ids
stay in the markup (``title`` attributes, option values) so links and filters do not depend on
the language.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Final, Literal
from urllib.parse import urlencode

from adapters._framework.chain import CHAIN_KINDS
from adapters._framework.regulatory import REGULATORY_KINDS, clue_receipt
from adapters._framework.vocabulary import BUS_KINDS

__all__ = ["DEFAULT_LANG", "Labels", "Lang", "choose_lang"]

Lang = Literal["zh", "en"]
DEFAULT_LANG: Final[Lang] = "zh"

_TEXT: Final[Mapping[str, tuple[str, str]]] = {
    "title": ("两法衔接运行监控台", "casebus ops console"),
    "now": ("当前时间 {now}（北京时间）", "now {now} (Asia/Shanghai)"),
    "refresh": ("每 {s} 秒刷新", "refreshes every {s}s"),
    "filtered": ("筛选：{q}", "filter {q}"),
    "list_sep": ("、", ", "),
    "all": ("{label}：全部", "{label}: all"),
    "agency": ("单位", "agency"),
    "flow": ("期限事项", "flow"),
    "status": ("状态", "status"),
    "filter": ("筛选", "filter"),
    "clear": ("清除", "clear"),
    "open_count": ("未到期期限", "open deadlines"),
    "warning_count": ("已发预警", "warnings sent"),
    "breach_count": ("超期", "breaches"),
    "dead_count": ("死信", "dead letters"),
    "totals": ("各单位、各事项的预警与超期", "Warnings and breaches by agency and flow"),
    "owes": ("责任单位", "agency (owes)"),
    "open": ("未到期", "open"),
    "warnings": ("预警", "warnings"),
    "met": ("按期", "met"),
    "breached": ("超期", "breached"),
    "deadlines": ("期限", "Deadlines"),
    "case": ("案件", "case"),
    "owes_waits": ("责任单位 → 等待单位", "owes → waits"),
    "due": ("到期时间", "due"),
    "left": ("剩余", "time left"),
    "state": ("状态", "state"),
    "closed": ("办结时间", "closed"),
    "response": (
        "各单位办理用时（起算至办结，小时）",
        "Response time by agency (start → close, hours)",
    ),
    "no_closed": ("尚无办结的期限", "no closed deadlines yet"),
    "median": ("中位数", "median"),
    "health": ("投递状况", "Delivery health"),
    "outbox": ("待发布的发件箱消息", "Outbox waiting to be published"),
    "owner": ("所属单位", "owner"),
    "pending": ("待处理", "pending"),
    "oldest": ("最早", "oldest"),
    "attempts": ("尝试次数", "attempts"),
    "deliveries": ("待投递至业务系统", "Deliveries to departments pending"),
    "late": ("逾时（超过1分钟）", "late (>1 min)"),
    "rejected": ("被业务系统拒收：{n}", "rejected by departments: {n}"),
    "dead": ("死信", "Dead letters"),
    "broker_down": ("消息总线未响应", "the broker did not answer"),
    "offset": ("偏移量", "offset"),
    "code": ("代码", "code"),
    "reason": ("原因", "reason"),
    "source": ("来源", "source"),
    "at": ("时间", "at"),
    "none": ("无", "none"),
    "back": ("← 返回监控台", "← console"),
    "case_title": ("案件 {case}", "case {case}"),
    "timeline": ("时间线（已审计 {n} 步）", "Timeline ({n} audited steps)"),
    "audit_no": ("审计序号", "audit #"),
    "time": ("时间", "time"),
    "kind": ("业务类型", "kind"),
    "sender": ("发送单位", "sender"),
    "recipients": ("接收单位", "recipients"),
    "event": ("事件", "event"),
    "message": ("消息", "message"),
    "start": ("起算时间", "start"),
    "closed_by": ("办结依据", "closed by"),
    "other_lang": ("English", "中文"),
}

_STATES: Final[Mapping[str, tuple[str, str]]] = {
    "open": ("未到期", "open"),
    "met": ("按期办结", "met"),
    "breached": ("超期", "breached"),
    "lapsed": ("期满失效", "lapsed"),
    "cancelled": ("已撤销", "cancelled"),
}

_EVENTS: Final[Mapping[str, tuple[str, str]]] = {
    "accepted": ("已受理", "accepted"),
    "rejected": ("已拒绝", "rejected"),
    "dead_lettered": ("转入死信", "dead_lettered"),
}

# The step each deadline policy (deploy/sla-policies.yaml) waits for, as its legal basis says it.
_FLOWS: Final[Mapping[str, tuple[str, str]]] = {
    "criminal.transfer_after_approval": ("批准后24小时内移送", "transfer within 24 h of approval"),
    "criminal.receipt": ("移送书回执签字", "receipt of the transfer"),
    "criminal.jurisdiction_forward": (
        "24小时内转送有管辖权的机关",
        "forward to the competent agency within 24 h",
    ),
    "criminal.filing_decision": ("立案审查决定", "filing decision"),
    "criminal.reconsideration_request": ("提请复议", "request for reconsideration"),
    "criminal.reconsideration_decision": ("复议决定", "reconsideration decision"),
    "criminal.evidence_handover": ("移交涉案物品", "hand-over of seized items"),
    "supervision.explanation": ("说明不立案理由", "explanation of a refusal to file"),
    "supervision.filing": ("通知立案后立案", "filing after a notice to file"),
    "clue.receipt": ("线索签收", "clue receipt"),
    "opinion.response": ("出具专业意见", "professional opinion"),
    "penalty.feedback": ("处罚情况反馈", "penalty feedback"),
    "court.execution_application": ("申请强制执行", "application for compulsory execution"),
    "court.acceptance": ("强制执行申请受理", "acceptance of the application"),
    "court.ruling": ("执行裁定", "execution ruling"),
}

# Message kinds in the departments' own national codes (the adapters' shared vocabulary).
_KIND_CODES: Final[Mapping[str, str]] = {
    **{k: v.code for k, v in CHAIN_KINDS.items()},
    **{k: v.code for k, v in REGULATORY_KINDS.items()},
    **{k.kind: k.code for k in BUS_KINDS},
    "clue.receipt": clue_receipt(decision="clyj", case_id="lajbh").code,
}


_LANGS: Final[Mapping[str, Lang]] = {"zh": "zh", "en": "en"}


def _q(params: str) -> float:
    for p in params.split(";"):
        name, _, value = p.strip().partition("=")
        if name.strip() == "q":
            try:
                return float(value)
            except ValueError:
                return 0.0
    return 1.0


def choose_lang(param: str | None, accept_language: str | None) -> Lang:
    """``?lang=`` if it names a language, else the one of zh / en the browser prefers
    (Accept-Language q-values, the earlier on a tie), else Chinese."""
    if param is not None and param in _LANGS:
        return _LANGS[param]
    best: tuple[float, int, Lang] | None = None
    for n, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        lang = _LANGS.get(tag.strip().lower().split("-", 1)[0])
        q = _q(params)
        if lang is not None and q > 0 and (best is None or (q, -n) > best[:2]):
            best = (q, -n, lang)
    return best[2] if best is not None else DEFAULT_LANG


@dataclass(frozen=True)
class Labels:
    """Everything the pages say, in one language."""

    lang: Lang = DEFAULT_LANG
    agencies: Mapping[str, tuple[str, str | None]] = field(default_factory=dict)
    """Agency id → (name, English name), from the registry."""

    def _pick(self, pair: tuple[str, str]) -> str:
        return pair[0] if self.lang == "zh" else pair[1]

    def t(self, key: str, **values: object) -> str:
        """The UI text ``key``, with ``values`` filled in."""
        return self._pick(_TEXT[key]).format(**values)

    def agency(self, agency_id: str) -> str:
        """The registry's name of the agency (the id if the registry does not know it)."""
        name, name_en = self.agencies.get(agency_id, (agency_id, None))
        return name if self.lang == "zh" else (name_en or agency_id)

    def flow(self, policy_id: str) -> str:
        """The step a deadline policy waits for."""
        pair = _FLOWS.get(policy_id)
        return self._pick(pair) if pair is not None else policy_id

    def kind(self, kind: str) -> str:
        """A message kind: its document code in Chinese, its id in English."""
        return _KIND_CODES.get(kind, kind) if self.lang == "zh" else kind

    def state(self, state: str) -> str:
        """A deadline's state."""
        pair = _STATES.get(state)
        return self._pick(pair) if pair is not None else state

    def event(self, event: str) -> str:
        """An audited event's kind."""
        pair = _EVENTS.get(event)
        return self._pick(pair) if pair is not None else event

    def left(self, delta: timedelta | None) -> str:
        """Time left until a due instant (negative once past)."""
        if delta is None:
            return "-"
        seconds = int(delta.total_seconds())
        sign = "-" if seconds < 0 else ""
        days, rest = divmod(abs(seconds), 86_400)
        hours, minutes = rest // 3600, rest % 3600 // 60
        if self.lang == "zh":
            return f"{sign}{days}天{hours}小时" if days else f"{sign}{hours}小时{minutes}分"
        return f"{sign}{days}d {hours}h" if days else f"{sign}{hours}h {minutes}m"

    def href(self, path: str, **params: str) -> str:
        """A link that keeps the chosen language (Chinese, the default, needs no parameter)."""
        query = {k: v for k, v in params.items() if v}
        if self.lang != DEFAULT_LANG:
            query["lang"] = self.lang
        return f"{path}?{urlencode(query)}" if query else path
