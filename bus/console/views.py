"""Server-rendered HTML of the ops console: plain tables, one inline SVG chart, no scripts; in
the reader's language (:mod:`bus.console.i18n`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from html import escape
from typing import Any
from urllib.parse import quote, urlencode

from bus.console.i18n import Labels
from bus.console.queries import STATES, DeadLetter, DeadlineFilter
from bus.sla.calendar import SHANGHAI
from bus.trace import CaseTrace

__all__ = ["case_page", "overview_page"]

_STYLE = """
body{font-family:system-ui,"Noto Sans CJK SC",sans-serif;margin:1.2rem;color:#1d2733}
h1{font-size:1.35rem;margin:0 0 .6rem} h2{font-size:1.05rem;margin:1.4rem 0 .4rem}
table{border-collapse:collapse;font-size:.85rem;margin-bottom:.6rem}
th,td{border-bottom:1px solid #dde3ea;padding:.25rem .6rem;text-align:left;vertical-align:top}
th{background:#f1f4f8} .num{text-align:right} .muted{color:#6b7785}
.breached{color:#b3261e;font-weight:600} .open{color:#1a5fb4} .met{color:#26734d}
.lapsed,.cancelled{color:#6b7785} .late{color:#b3261e} .deadlines td{white-space:nowrap}
.cards{display:flex;gap:.8rem;margin:.4rem 0 1rem} .card{border:1px solid #dde3ea;
border-radius:6px;padding:.5rem .9rem;min-width:7rem} .card b{display:block;font-size:1.4rem}
form{margin:.4rem 0} select,button{font-size:.85rem;margin-right:.4rem}
.lang{float:right;font-size:.85rem}
"""


def _page(title: str, body: str, *, refresh_s: int | None, labels: Labels) -> str:
    meta = f'<meta http-equiv="refresh" content="{refresh_s}">' if refresh_s else ""
    html_lang = "zh-CN" if labels.lang == "zh" else "en"
    return (
        f'<!doctype html><html lang="{html_lang}"><head><meta charset="utf-8">{meta}'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>{body}</body></html>"
    )


def _t(at: datetime | None) -> str:
    return at.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M") if at is not None else "-"


def _table(
    head: Sequence[str], rows: Iterable[Sequence[str]], *, labels: Labels, cls: str = ""
) -> str:
    ths = "".join(f"<th>{escape(h)}</th>" for h in head)
    trs = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    if not trs:
        trs = f'<tr><td colspan="{len(head)}" class="muted">{escape(labels.t("none"))}</td></tr>'
    return f'<table class="{cls}"><thead><tr>{ths}</tr></thead><tbody>{trs}</tbody></table>'


def _agency(agency_id: str, labels: Labels) -> str:
    """The agency's name, its id in the title (what filters and links use)."""
    return f'<span title="{escape(agency_id)}">{escape(labels.agency(agency_id))}</span>'


def _flow(policy_id: str, labels: Labels) -> str:
    return f'<span title="{escape(policy_id)}">{escape(labels.flow(policy_id))}</span>'


def _kind(kind: str, labels: Labels) -> str:
    return f'<span title="{escape(kind)}">{escape(labels.kind(kind))}</span>'


def _state(state: str, labels: Labels) -> str:
    return f'<span class="{escape(state)}">{escape(labels.state(state))}</span>'


def _case_link(case_id: str, labels: Labels) -> str:
    href = labels.href(f"/cases/{quote(case_id, safe='')}")
    return f'<a href="{escape(href)}">{escape(case_id)}</a>'


def _select(
    name: str, current: str, options: Sequence[tuple[str, str]], label: str, labels: Labels
) -> str:
    """A filter: option values are ids, the text is in the reader's language."""
    opts = [f'<option value="">{escape(labels.t("all", label=label))}</option>']
    for value, text in options:
        sel = " selected" if value == current else ""
        opts.append(f'<option value="{escape(value)}"{sel}>{escape(text)}</option>')
    return f'<select name="{name}" id="{name}">{"".join(opts)}</select>'


def _chart(rows: Sequence[dict[str, Any]], labels: Labels) -> str:
    """Horizontal bars: median hours from start to close per owing agency (p90 as a tick)."""
    if not rows:
        return f'<p class="muted">{escape(labels.t("no_closed"))}</p>'
    top = max(float(r["p90_h"] or 0) for r in rows) or 1.0
    bar_h, label_w, width = 22, 320, 420
    median = escape(labels.t("median"))
    parts = []
    for i, r in enumerate(rows):
        y = i * bar_h
        p50, p90 = float(r["p50_h"] or 0), float(r["p90_h"] or 0)
        w50, w90 = width * p50 / top, width * p90 / top
        agency = str(r["agency"])
        parts.append(
            f'<text x="0" y="{y + 15}" font-size="12" data-agency="{escape(agency)}">'
            f"{escape(labels.agency(agency))}</text>"
            f'<rect x="{label_w}" y="{y + 4}" width="{w50:.1f}" height="14" fill="#3d7bd9">'
            f"<title>{median} {p50:.1f} h</title></rect>"
            f'<line x1="{label_w + w90:.1f}" x2="{label_w + w90:.1f}" y1="{y + 2}" '
            f'y2="{y + 20}" stroke="#b3261e" stroke-width="2"/>'
            f'<text x="{label_w + max(w50, w90) + 6:.1f}" y="{y + 15}" font-size="11">'
            f"{p50:.1f} h / p90 {p90:.1f} h (n={int(r['closed'])})</text>"
        )
    h = bar_h * len(rows)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_w + width + 190}" height="{h}" '
        f'role="img" aria-label="{escape(labels.t("response"))}">{"".join(parts)}</svg>'
    )


def _switch(labels: Labels, path: str, params: dict[str, str]) -> str:
    """The link to the same page in the other language."""
    other = "en" if labels.lang == "zh" else "zh"
    href = f"{path}?{urlencode(params | {'lang': other})}"
    return f'<a class="lang" href="{escape(href)}">{escape(labels.t("other_lang"))}</a>'


def overview_page(
    *,
    f: DeadlineFilter,
    now: datetime,
    agencies: Sequence[str],
    flows: Sequence[str],
    deadlines: Sequence[dict[str, Any]],
    totals: Sequence[dict[str, Any]],
    health: dict[str, Any],
    dead: Sequence[DeadLetter] | None,
    times: Sequence[dict[str, Any]],
    refresh_s: int,
    labels: Labels,
) -> str:
    """The console's front page."""
    lb = labels
    open_n = sum(int(t["open"]) for t in totals)
    warn_n = sum(int(t["warnings"]) for t in totals)
    breach_n = sum(int(t["breached"]) for t in totals)
    keep_lang = f'<input type="hidden" name="lang" value="{lb.lang}">' if lb.lang != "zh" else ""
    form = (
        '<form method="get" action="/">'
        + _select("agency", f.agency, [(a, lb.agency(a)) for a in agencies], lb.t("agency"), lb)
        + _select("flow", f.flow, [(p, lb.flow(p)) for p in flows], lb.t("flow"), lb)
        + _select("status", f.status, [(s, lb.state(s)) for s in STATES], lb.t("status"), lb)
        + f'{keep_lang}<button type="submit">{escape(lb.t("filter"))}</button> '
        f'<a href="{escape(lb.href("/"))}">{escape(lb.t("clear"))}</a></form>'
    )
    dead_n = len(dead) if dead is not None else "?"
    cards = (
        '<div class="cards">'
        f'<div class="card" id="open-count"><b>{open_n}</b>{escape(lb.t("open_count"))}</div>'
        f'<div class="card" id="warning-count"><b>{warn_n}</b>{escape(lb.t("warning_count"))}</div>'
        f'<div class="card breached" id="breach-count"><b>{breach_n}</b>'
        f"{escape(lb.t('breach_count'))}</div>"
        f'<div class="card"><b>{dead_n}</b>{escape(lb.t("dead_count"))}</div>'
        "</div>"
    )
    totals_table = _table(
        [lb.t("owes"), lb.t("flow"), lb.t("open"), lb.t("warnings"), lb.t("met"), lb.t("breached")],
        (
            [
                _agency(t["agency"], lb),
                _flow(t["flow"], lb),
                str(t["open"]),
                str(t["warnings"]),
                str(t["met"]),
                f'<span class="breached">{t["breached"]}</span>' if t["breached"] else "0",
            ]
            for t in totals
        ),
        labels=lb,
        cls="totals",
    )
    deadline_rows = [
        [
            _flow(d["policy_id"], lb),
            _case_link(d["case_id"], lb),
            f"{_agency(d['owner_agency'], lb)} → {_agency(d['waiting_agency'], lb)}",
            _t(d["due_at"]),
            escape(lb.left(d["time_left"])) if d["state"] == "open" else "-",
            str(d["warnings_sent"]),
            _state(d["state"], lb),
            _t(d["closed_at"]),
        ]
        for d in deadlines
    ]
    deadlines_table = _table(
        [
            lb.t("flow"),
            lb.t("case"),
            lb.t("owes_waits"),
            lb.t("due"),
            lb.t("left"),
            lb.t("warnings"),
            lb.t("state"),
            lb.t("closed"),
        ],
        deadline_rows,
        labels=lb,
        cls="deadlines",
    )
    outbox = _table(
        [lb.t("owner"), lb.t("pending"), lb.t("oldest"), lb.t("attempts")],
        (
            [_agency(r["owner"], lb), str(r["pending"]), _t(r["oldest"]), str(r["attempts"])]
            for r in health["outbox"]
        ),
        labels=lb,
    )
    deliveries = _table(
        [lb.t("agency"), lb.t("pending"), lb.t("late"), lb.t("attempts"), lb.t("oldest")],
        (
            [
                _agency(r["agency"], lb),
                str(r["pending"]),
                f'<span class="late">{r["late"]}</span>' if r["late"] else "0",
                str(r["attempts"]),
                _t(r["oldest"]),
            ]
            for r in health["deliveries"]
        ),
        labels=lb,
    )
    if dead is None:
        dead_html = f'<p class="late">{escape(lb.t("broker_down"))}</p>'
    else:
        dead_html = _table(
            [lb.t("offset"), lb.t("code"), lb.t("reason"), lb.t("source"), lb.t("at")],
            (
                [str(d.offset), escape(d.code), escape(d.reason[:300]), escape(d.source), d.at]
                for d in dead
            ),
            labels=lb,
            cls="dead",
        )
    params = {k: v for k, v in vars(f).items() if v}
    chosen = [lb.agency(f.agency)] if f.agency else []
    chosen += [lb.flow(f.flow)] if f.flow else []
    chosen += [lb.state(f.status)] if f.status else []
    status = [lb.t("now", now=_t(now)), lb.t("refresh", s=refresh_s)]
    if chosen:
        status.append(lb.t("filtered", q=lb.t("list_sep").join(chosen)))
    body = (
        f"{_switch(lb, '/', params)}<h1>{escape(lb.t('title'))}</h1>"
        f"<p class='muted'>{escape(' · '.join(status))}</p>{form}{cards}"
        f"<h2>{escape(lb.t('totals'))}</h2>{totals_table}"
        f"<h2>{escape(lb.t('deadlines'))}</h2>{deadlines_table}"
        f"<h2>{escape(lb.t('response'))}</h2>{_chart(times, lb)}"
        f"<h2>{escape(lb.t('health'))}</h2><h3>{escape(lb.t('outbox'))}</h3>{outbox}"
        f"<h3>{escape(lb.t('deliveries'))}</h3>{deliveries}"
        f"<p>{escape(lb.t('rejected', n=health['rejected']))}</p>"
        f"<h3>{escape(lb.t('dead'))}</h3>{dead_html}"
    )
    return _page(lb.t("title"), body, refresh_s=refresh_s, labels=lb)


def case_page(trace: CaseTrace, *, refresh_s: int, labels: Labels) -> str:
    """One case's timeline and deadlines."""
    lb = labels
    steps = _table(
        [
            lb.t("audit_no"),
            lb.t("time"),
            lb.t("kind"),
            lb.t("sender"),
            lb.t("recipients"),
            lb.t("event"),
            lb.t("message"),
        ],
        (
            [
                str(m.audit_index),
                _t(m.sent_at or m.recorded_at),
                _kind(m.kind, lb),
                _agency(m.sender, lb),
                "、".join(_agency(r, lb) for r in m.recipients),
                escape(lb.event(m.event)) + (f" {escape(m.detail)}" if m.detail else ""),
                f"<code>{escape(m.message_id)}</code>",
            ]
            for m in trace.messages
        ),
        labels=lb,
        cls="timeline",
    )
    deadlines = _table(
        [
            lb.t("flow"),
            lb.t("owes_waits"),
            lb.t("start"),
            lb.t("due"),
            lb.t("state"),
            lb.t("closed_by"),
        ],
        (
            [
                _flow(d.policy_id, lb),
                f"{_agency(d.owner_agency, lb)} → {_agency(d.waiting_agency, lb)}",
                _t(d.start_at),
                _t(d.due_at),
                _state(d.state, lb),
                f"{_kind(d.closed_kind, lb)} {_t(d.closed_at)}" if d.closed_kind else "-",
            ]
            for d in trace.deadlines
        ),
        labels=lb,
        cls="case-deadlines",
    )
    path = f"/cases/{quote(trace.case_id, safe='')}"
    body = (
        f'{_switch(lb, path, {})}<p><a href="{escape(lb.href("/"))}">{escape(lb.t("back"))}</a></p>'
        f"<h1>{escape(lb.t('case_title', case=trace.case_id))}</h1>"
        f"<h2>{escape(lb.t('timeline', n=len(trace.messages)))}</h2>{steps}"
        f"<h2>{escape(lb.t('deadlines'))}</h2>{deadlines}"
    )
    return _page(lb.t("case_title", case=trace.case_id), body, refresh_s=refresh_s, labels=lb)
