"""The ops console on real data: a small scenario through the adapters (one transfer the police
never decide, one that goes through), and one undecodable record sent straight to the bus."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from rich.console import Console

from adapters._framework.auth import create_token
from bus.console import create_app
from bus.demo import run_days
from bus.settings import Settings
from bus.sim import Fortnight, SteppedClock, running_world

pytestmark = [pytest.mark.integration, pytest.mark.slow]

POLICE = "ygh.police.bureau"
BUREAU = "ygh.enforcement.bureau"
PROCURATORATE = "ygh.procuratorate"
MARKET = "ygh.regulator.market"


@dataclass
class Scenario:
    client: httpx.AsyncClient
    silent: str
    filed: str
    settings: Settings
    tokens: dict[str, str]


@pytest.fixture
async def scenario(provisioned: Settings, tmp_path: Path) -> AsyncIterator[Scenario]:
    settings = provisioned.model_copy(
        update={"bus_key_file": tmp_path / "bus" / "casebus.key.pem", "checkpoint_interval_s": 1.0}
    )
    since = datetime.now(UTC)
    async with running_world(settings, key_dir=tmp_path / "k", clock=SteppedClock()) as world:
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(settings.topic_submit(), b"not an envelope", key=b"x")
        finally:
            await producer.stop()
        sim = Fortnight(world, seed=5, days=6)
        flows = [sim.transfer_filed(0, evidence=True), sim.transfer_never_decided(0, report_on=5)]
        await run_days(sim, flows, console=Console(quiet=True), since=since)
        app = create_app(settings, pool=world.pool, clock=world.clock, dead_letter_cache_s=0)
        transport = httpx.ASGITransport(app=app)
        # The overview spans every agency's cases: the procuratorate's token reads it.
        tokens = {a: await create_token(world.pool, a) for a in (PROCURATORATE, POLICE, MARKET)}
        async with httpx.AsyncClient(
            transport=transport,
            base_url="http://console",
            headers={"Authorization": f"Bearer {tokens[PROCURATORATE]}"},
        ) as client:
            yield Scenario(
                client,
                silent=sim.expected.flows["transfer: never decided"],
                filed=sim.expected.flows["transfer: filed and evidence"],
                settings=settings,
                tokens=tokens,
            )


def rows(html: str, table: str) -> list[str]:
    """The body rows of the table of class ``table``."""
    body = html.split(f'<table class="{table}">', 1)[1].split("</table>", 1)[0]
    return re.findall(r"<tr>(.*?)</tr>", body.split("<tbody>", 1)[1])


async def test_console_shows_the_breach_filters_and_delivery_health(scenario: Scenario) -> None:
    r = await scenario.client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    assert '<meta http-equiv="refresh" content="5">' in html
    breach = int(re.search(r'id="breach-count"><b>(\d+)</b>', html).group(1))  # type: ignore[union-attr]
    assert breach >= 1
    deadlines = rows(html, "deadlines")
    breached = [row for row in deadlines if '<span class="breached">超期</span>' in row]
    assert any("criminal.filing_decision" in row and scenario.silent in row for row in breached)
    # Open deadlines come first, with the time left.
    states = [re.search(r'<span class="(\w+)">', row).group(1) for row in deadlines]  # type: ignore[union-attr]
    assert states == sorted(states, key=lambda s: s != "open")
    # Totals by agency and flow: the police owe the breached filing decision.
    totals = rows(html, "totals")
    [police_filing] = [t for t in totals if POLICE in t and "criminal.filing_decision" in t]
    assert 'class="breached">1<' in police_filing
    # Response times: an inline SVG bar per agency that closed something.
    assert "<svg" in html and POLICE in html.split("<svg", 1)[1]
    # The undecodable record is among the dead letters, with its code and source.
    dead = rows(html, "dead")
    assert any(scenario.settings.topic_submit() in row for row in dead), dead

    r = await scenario.client.get("/", params={"status": "breached"})
    only_breached = rows(r.text, "deadlines")
    assert only_breached and all('<span class="breached">' in row for row in only_breached)

    r = await scenario.client.get("/", params={"agency": POLICE})
    narrowed = rows(r.text, "deadlines")
    assert 0 < len(narrowed) < len(deadlines)
    assert all(POLICE in row for row in narrowed)
    assert f'<option value="{POLICE}" selected>' in r.text

    r = await scenario.client.get("/", params={"flow": "criminal.receipt"})
    receipts = rows(r.text, "deadlines")
    assert receipts and all(
        row.startswith('<td><span title="criminal.receipt">移送书回执签字</span></td>')
        for row in receipts
    )


async def test_case_page_shows_the_timeline_and_deadlines(scenario: Scenario) -> None:
    r = await scenario.client.get(f"/cases/{quote(scenario.filed, safe='')}")
    assert r.status_code == 200
    steps = rows(r.text, "timeline")
    kinds = [re.findall(r'<span title="([a-z_.]+)">', s)[0] for s in steps]
    assert [k for k in kinds if k.startswith("criminal.")] == [
        "criminal.transfer",
        "criminal.receipt",
        "criminal.filing_decision",
        "criminal.evidence_handover",
    ]
    deadlines = rows(r.text, "case-deadlines")
    assert deadlines and all('<span class="met">按期办结</span>' in d for d in deadlines)
    assert "<td>涉嫌犯罪案件移送</td>" not in r.text and ">涉嫌犯罪案件移送</span>" in r.text

    r = await scenario.client.get("/cases/no-such-case")
    assert r.status_code == 404

    # The police, a party to the case, read it from a browser (HTTP Basic, the token as the
    # password); the market regulator, no party to it, may not, and the overview is not theirs.
    page = f"/cases/{quote(scenario.filed, safe='')}"
    police = ("police", scenario.tokens[POLICE])
    assert (await scenario.client.get(page, auth=police)).status_code == 200
    assert (await scenario.client.get("/", auth=police)).status_code == 403
    market = ("market", scenario.tokens[MARKET])
    assert (await scenario.client.get(page, auth=market)).status_code == 403
    assert (await scenario.client.get("/healthz")).text == "ok"


async def test_console_speaks_chinese_with_registry_names_and_english_on_request(
    scenario: Scenario,
) -> None:
    r = await scenario.client.get("/")
    assert r.headers["content-language"] == "zh" and "Accept-Language" in r.headers["vary"]
    html = r.text
    assert '<html lang="zh-CN">' in html and "<h1>两法衔接运行监控台</h1>" in html
    # Agencies by the registry's names (deploy/agencies.yaml), flows by the statute's step.
    police = "昆明市公安局阳宗海风景名胜区分局"
    [row] = [t for t in rows(html, "totals") if POLICE in t and "criminal.filing_decision" in t]
    assert f'<span title="{POLICE}">{police}</span>' in row and ">立案审查决定</span>" in row
    assert f'<option value="{POLICE}">{police}</option>' in html

    english = {"lang": "en"}
    for how in ({"params": english}, {"headers": {"Accept-Language": "en-GB,en;q=0.9,zh;q=0.5"}}):
        r = await scenario.client.get("/", **how)  # type: ignore[arg-type]
        assert r.headers["content-language"] == "en", how
        assert "<h1>casebus ops console</h1>" in r.text
        assert "Kunming Public Security Bureau, Yangzonghai Branch" in r.text
    r = await scenario.client.get("/", headers={"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"})
    assert r.headers["content-language"] == "zh"
    # A page asked for in English links on in English; the switch leads back to Chinese.
    r = await scenario.client.get("/", params={"lang": "en", "agency": POLICE})
    case_links = re.findall(r'<a href="(/cases/[^"]+)"', r.text)
    assert case_links and all(link.endswith("?lang=en") for link in case_links)
    r = await scenario.client.get(case_links[0].replace("&amp;", "&"))
    assert r.status_code == 200 and r.headers["content-language"] == "en"
    assert 'href="/?lang=en"' in r.text and ">中文</a>" in r.text
