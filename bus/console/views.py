"""Server-rendered HTML of the ops console: plain tables, one inline SVG chart, no scripts."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from html import escape
from typing import Any
from urllib.parse import quote, urlencode

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
"""


def _page(title: str, body: str, *, refresh_s: int | None) -> str:
    meta = f'<meta http-equiv="refresh" content="{refresh_s}">' if refresh_s else ""
    return (
        f'<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">{meta}'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>{body}</body></html>"
    )


def _t(at: datetime | None) -> str:
    return at.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M") if at is not None else "-"


def _left(delta: timedelta | None) -> str:
    if delta is None:
        return "-"
    seconds = int(delta.total_seconds())
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    days, rest = divmod(seconds, 86_400)
    return (
        f"{sign}{days}d {rest // 3600}h" if days else f"{sign}{rest // 3600}h {rest % 3600 // 60}m"
    )


def _table(head: Sequence[str], rows: Iterable[Sequence[str]], *, cls: str = "") -> str:
    ths = "".join(f"<th>{escape(h)}</th>" for h in head)
    trs = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    if not trs:
        trs = f'<tr><td colspan="{len(head)}" class="muted">none</td></tr>'
    return f'<table class="{cls}"><thead><tr>{ths}</tr></thead><tbody>{trs}</tbody></table>'


def _case_link(case_id: str) -> str:
    return f'<a href="/cases/{quote(case_id, safe="")}">{escape(case_id)}</a>'


def _select(name: str, current: str, options: Sequence[str], label: str) -> str:
    opts = [f'<option value="">{escape(label)}: all</option>']
    for o in options:
        sel = " selected" if o == current else ""
        opts.append(f'<option value="{escape(o)}"{sel}>{escape(o)}</option>')
    return f'<select name="{name}" id="{name}">{"".join(opts)}</select>'


def _chart(rows: Sequence[dict[str, Any]]) -> str:
    """Horizontal bars: median hours from start to close per owing agency (p90 as a tick)."""
    if not rows:
        return '<p class="muted">no closed deadlines yet</p>'
    top = max(float(r["p90_h"] or 0) for r in rows) or 1.0
    bar_h, label_w, width = 22, 230, 420
    parts = []
    for i, r in enumerate(rows):
        y = i * bar_h
        p50, p90 = float(r["p50_h"] or 0), float(r["p90_h"] or 0)
        w50, w90 = width * p50 / top, width * p90 / top
        parts.append(
            f'<text x="0" y="{y + 15}" font-size="12">{escape(str(r["agency"]))}</text>'
            f'<rect x="{label_w}" y="{y + 4}" width="{w50:.1f}" height="14" fill="#3d7bd9">'
            f"<title>median {p50:.1f} h</title></rect>"
            f'<line x1="{label_w + w90:.1f}" x2="{label_w + w90:.1f}" y1="{y + 2}" '
            f'y2="{y + 20}" stroke="#b3261e" stroke-width="2"/>'
            f'<text x="{label_w + max(w50, w90) + 6:.1f}" y="{y + 15}" font-size="11">'
            f"{p50:.1f} h / p90 {p90:.1f} h (n={int(r['closed'])})</text>"
        )
    h = bar_h * len(rows)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_w + width + 190}" height="{h}" '
        f'role="img" aria-label="response time by agency">{"".join(parts)}</svg>'
    )


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
) -> str:
    """The console's front page."""
    open_n = sum(int(t["open"]) for t in totals)
    warn_n = sum(int(t["warnings"]) for t in totals)
    breach_n = sum(int(t["breached"]) for t in totals)
    form = (
        '<form method="get" action="/">'
        + _select("agency", f.agency, agencies, "agency")
        + _select("flow", f.flow, flows, "flow")
        + _select("status", f.status, STATES, "status")
        + '<button type="submit">filter</button> <a href="/">clear</a></form>'
    )
    cards = (
        '<div class="cards">'
        f'<div class="card" id="open-count"><b>{open_n}</b>open deadlines</div>'
        f'<div class="card" id="warning-count"><b>{warn_n}</b>warnings sent</div>'
        f'<div class="card breached" id="breach-count"><b>{breach_n}</b>breaches</div>'
        f'<div class="card"><b>{len(dead) if dead is not None else "?"}</b>dead letters</div>'
        "</div>"
    )
    totals_table = _table(
        ["agency (owes)", "flow", "open", "warnings", "met", "breached"],
        (
            [
                escape(t["agency"]),
                escape(t["flow"]),
                str(t["open"]),
                str(t["warnings"]),
                str(t["met"]),
                f'<span class="breached">{t["breached"]}</span>' if t["breached"] else "0",
            ]
            for t in totals
        ),
        cls="totals",
    )
    deadline_rows = []
    for d in deadlines:
        state = escape(d["state"])
        left = _left(d["time_left"]) if d["state"] == "open" else "-"
        deadline_rows.append(
            [
                escape(d["policy_id"]),
                _case_link(d["case_id"]),
                f"{escape(d['owner_agency'])} → {escape(d['waiting_agency'])}",
                _t(d["due_at"]),
                left,
                str(d["warnings_sent"]),
                f'<span class="{state}">{state}</span>',
                _t(d["closed_at"]),
            ]
        )
    deadlines_table = _table(
        ["flow", "case", "owes → waits", "due", "time left", "warnings", "state", "closed"],
        deadline_rows,
        cls="deadlines",
    )
    outbox = _table(
        ["owner", "pending", "oldest", "attempts"],
        (
            [escape(r["owner"]), str(r["pending"]), _t(r["oldest"]), str(r["attempts"])]
            for r in health["outbox"]
        ),
    )
    deliveries = _table(
        ["agency", "pending", "late (>1 min)", "attempts", "oldest"],
        (
            [
                escape(r["agency"]),
                str(r["pending"]),
                f'<span class="late">{r["late"]}</span>' if r["late"] else "0",
                str(r["attempts"]),
                _t(r["oldest"]),
            ]
            for r in health["deliveries"]
        ),
    )
    if dead is None:
        dead_html = '<p class="late">the broker did not answer</p>'
    else:
        dead_html = _table(
            ["offset", "code", "reason", "source", "at"],
            (
                [str(d.offset), escape(d.code), escape(d.reason[:300]), escape(d.source), d.at]
                for d in dead
            ),
            cls="dead",
        )
    query = urlencode({k: v for k, v in vars(f).items() if v})
    body = (
        f"<h1>casebus ops console</h1><p class='muted'>now {_t(now)} (Asia/Shanghai) · "
        f"refreshes every {refresh_s}s{' · filter ' + escape(query) if query else ''}</p>"
        f"{form}{cards}"
        f"<h2>Warnings and breaches by agency and flow</h2>{totals_table}"
        f"<h2>Deadlines</h2>{deadlines_table}"
        f"<h2>Response time by agency (start → close, hours)</h2>{_chart(times)}"
        "<h2>Delivery health</h2><h3>Outbox waiting to be published</h3>"
        f"{outbox}<h3>Deliveries to departments pending</h3>{deliveries}"
        f"<p>rejected by departments: {health['rejected']}</p>"
        f"<h3>Dead letters</h3>{dead_html}"
    )
    return _page("casebus ops console", body, refresh_s=refresh_s)


def case_page(trace: CaseTrace, *, refresh_s: int) -> str:
    """One case's timeline and deadlines."""
    steps = _table(
        ["audit #", "time", "kind", "sender", "recipients", "event", "message"],
        (
            [
                str(m.audit_index),
                _t(m.sent_at or m.recorded_at),
                escape(m.kind),
                escape(m.sender),
                escape(", ".join(m.recipients)),
                escape(m.event) + (f" {escape(m.detail)}" if m.detail else ""),
                f"<code>{escape(m.message_id)}</code>",
            ]
            for m in trace.messages
        ),
        cls="timeline",
    )
    deadlines = _table(
        ["flow", "owes → waits", "start", "due", "state", "closed by"],
        (
            [
                escape(d.policy_id),
                f"{escape(d.owner_agency)} → {escape(d.waiting_agency)}",
                _t(d.start_at),
                _t(d.due_at),
                f'<span class="{escape(d.state)}">{escape(d.state)}</span>',
                f"{escape(d.closed_kind or '-')} {_t(d.closed_at) if d.closed_at else ''}",
            ]
            for d in trace.deadlines
        ),
        cls="case-deadlines",
    )
    body = (
        f'<p><a href="/">← console</a></p><h1>case {escape(trace.case_id)}</h1>'
        f"<h2>Timeline ({len(trace.messages)} audited steps)</h2>{steps}"
        f"<h2>Deadlines</h2>{deadlines}"
    )
    return _page(f"case {trace.case_id}", body, refresh_s=refresh_s)
