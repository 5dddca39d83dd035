"""The console's language, without a database: Chinese by default, English on request, agencies
by their registry names, flows and message kinds by their Chinese names, ids kept in the
markup."""

from __future__ import annotations

import html as html_module
import re
from datetime import UTC, datetime, timedelta

import pytest

from bus.agencies import load_registry
from bus.console.i18n import Labels, choose_lang
from bus.console.queries import DeadlineFilter
from bus.console.views import case_page, overview_page
from bus.settings import REPO_ROOT
from bus.sla.policy import DEFAULT_POLICIES_PATH, load_policies
from bus.trace import CaseTrace, DeadlineStep, MessageStep

POLICE = "ygh.police.bureau"
BUREAU = "ygh.enforcement.bureau"
NOW = datetime(2026, 12, 4, 3, 0, tzinfo=UTC)

REGISTRY = load_registry(REPO_ROOT / "deploy" / "agencies.yaml")
NAMES = {a.id: (a.name, a.name_en) for a in REGISTRY.agencies}


@pytest.mark.parametrize(
    ("param", "header", "expected"),
    [
        (None, None, "zh"),
        (None, "", "zh"),
        (None, "zh-CN,zh;q=0.9,en;q=0.8", "zh"),
        (None, "en-US,en;q=0.9,zh-CN;q=0.8", "en"),
        (None, "en;q=0.5, zh;q=0.7", "zh"),
        (None, "fr-FR, en;q=0.3", "en"),
        (None, "fr-FR, de", "zh"),
        (None, "en;q=0, zh;q=0.1", "zh"),
        (None, "en;q=abc", "zh"),
        ("en", "zh-CN", "en"),
        ("zh", "en-US", "zh"),
        ("fr", "en-US", "en"),
    ],
)
def test_the_language_is_chinese_unless_asked_or_the_browser_prefers_english(
    param: str | None, header: str | None, expected: str
) -> None:
    assert choose_lang(param, header) == expected


def test_every_shipped_deadline_policy_and_state_has_a_chinese_name() -> None:
    zh, en = Labels("zh", NAMES), Labels("en", NAMES)
    for policy in load_policies(DEFAULT_POLICIES_PATH):
        assert re.search(r"[\u4e00-\u9fff]", zh.flow(policy.id)), policy.id
        assert en.flow(policy.id) != zh.flow(policy.id)
    for state in ("open", "met", "breached", "lapsed", "cancelled"):
        assert re.search(r"[\u4e00-\u9fff]", zh.state(state)), state
    for agency in REGISTRY.agencies:
        assert zh.agency(agency.id) == agency.name
    assert zh.kind("criminal.transfer") == "涉嫌犯罪案件移送"
    assert zh.kind("clue.receipt") == "线索签收"
    assert en.kind("criminal.transfer") == "criminal.transfer"
    assert zh.left(timedelta(days=2, hours=3)) == "2天3小时"
    assert en.left(-timedelta(hours=1, minutes=5)) == "-1h 5m"


def _overview(labels: Labels) -> str:
    deadline = {
        "policy_id": "criminal.filing_decision",
        "case_id": "阳城执〔2026〕0001号",
        "owner_agency": POLICE,
        "waiting_agency": BUREAU,
        "due_at": NOW,
        "time_left": timedelta(hours=-2),
        "warnings_sent": 2,
        "state": "breached",
        "closed_at": None,
    }
    return overview_page(
        f=DeadlineFilter(agency=POLICE),
        now=NOW,
        agencies=[BUREAU, POLICE],
        flows=["criminal.filing_decision"],
        deadlines=[deadline],
        totals=[
            {
                "agency": POLICE,
                "flow": "criminal.filing_decision",
                "open": 0,
                "warnings": 2,
                "met": 0,
                "breached": 1,
            }
        ],
        health={"outbox": [], "deliveries": [], "rejected": 0},
        dead=[],
        times=[{"agency": POLICE, "closed": 3, "p50_h": 20.0, "p90_h": 60.0}],
        refresh_s=5,
        labels=labels,
    )


def test_the_overview_speaks_chinese_and_keeps_the_ids_in_the_markup() -> None:
    html = _overview(Labels("zh", NAMES))
    assert '<html lang="zh-CN">' in html
    assert "<h1>两法衔接运行监控台</h1>" in html
    assert "昆明市公安局阳宗海风景名胜区分局" in html
    assert "立案审查决定" in html and '<span class="breached">超期</span>' in html
    assert f'<option value="{POLICE}" selected>昆明市公安局阳宗海风景名胜区分局</option>' in html
    assert f'title="{POLICE}"' in html
    # No English left in what a reader sees: headings, column heads, cards.
    visible = re.sub(r"<[^>]+>", " ", html.split("<body>", 1)[1])
    words = set(re.findall(r"[A-Za-z]{4,}", visible)) - {"English"}
    assert not words, words
    assert 'href="/?agency=ygh.police.bureau&amp;lang=en">English</a>' in html


def test_the_overview_in_english_links_on_in_english() -> None:
    html = _overview(Labels("en", NAMES))
    assert '<html lang="en">' in html and "<h1>casebus ops console</h1>" in html
    assert "Kunming Public Security Bureau, Yangzonghai Branch" in html
    assert "filing decision" in html and '<span class="breached">breached</span>' in html
    assert "?lang=en" in html.split('<table class="deadlines">', 1)[1]  # the case link
    assert '<input type="hidden" name="lang" value="en">' in html
    assert not re.search(
        r"[\u4e00-\u9fff]", html.replace("阳城执〔2026〕0001号", "").replace("中文", "")
    )


def test_the_case_page_names_kinds_by_their_document_codes() -> None:
    trace = CaseTrace(
        case_id="阳城执〔2026〕0001号",
        messages=(
            MessageStep(
                audit_index=7,
                event="accepted",
                message_id="00000000-0000-0000-0000-000000000001",
                recorded_at=NOW,
                kind="criminal.transfer",
                sender=BUREAU,
                recipients=(POLICE, "ygh.procuratorate"),
                sent_at=NOW,
            ),
        ),
        deadlines=(
            DeadlineStep(
                policy_id="criminal.receipt",
                owner_agency=POLICE,
                waiting_agency=BUREAU,
                start_at=NOW,
                due_at=NOW + timedelta(days=1),
                state="met",
                closed_kind="criminal.receipt",
                closed_at=NOW + timedelta(hours=1),
                opened_by="00000000-0000-0000-0000-000000000001",
            ),
        ),
    )
    html = case_page(trace, refresh_s=5, labels=Labels("zh", NAMES))
    assert "涉嫌犯罪案件移送" in html and "移送回执" in html and "移送书回执签字" in html
    assert "阳宗海风景名胜区城乡管理综合执法大队" in html
    assert "已受理" in html and "2026-12-04 11:00" in html
    en = html_module.unescape(case_page(trace, refresh_s=5, labels=Labels("en", NAMES)))
    assert "criminal.transfer" in en and "Yangzonghai Scenic Area People's Procuratorate" in en
