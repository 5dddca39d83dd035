"""The ops console in a real browser: headless Chromium renders it (screenshots kept under
``.ci/artifacts/``) and its DOM shows the breach this test caused; the agency filter narrows
the deadline list. The page is Chinese for a Chinese browser and its Chinese text is drawn in
real glyphs, not tofu: that needs a CJK font on the machine (.ci/run installs Debian's
fonts-noto-cjk), and the glyph test fails without one."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from adapters._framework.auth import create_token
from adapters._framework.fake_department import serve_app
from bus.console import create_app
from bus.demo import run_days
from bus.settings import REPO_ROOT, Settings
from bus.sim import Fortnight, SteppedClock, running_world

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(180)]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = REPO_ROOT / ".ci" / "artifacts"
POLICE = "ygh.police.bureau"
PROCURATORATE = "ygh.procuratorate"
CHINESE_BROWSER = ("--lang=zh-CN", "--accept-lang=zh-CN,zh")

Asgi = Callable[
    [MutableMapping[str, Any], Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]],
    Awaitable[None],
]

# Measures, in the page itself, how wide the browser drew the heading's Han characters, against
# the same number of a code point no font has (drawn as the .notdef box, "tofu"). A CJK font
# draws each ideograph one em wide; without one every ideograph is tofu too.
GLYPH_PROBE = rb"""<script>
(() => {
  const h1 = document.querySelector("h1");
  const style = getComputedStyle(h1);
  const range = document.createRange();
  range.selectNodeContents(h1);
  const han = [...h1.textContent].filter((c) => /\p{Script=Han}/u.test(c));
  const tofu = document.createElement("span");
  tofu.style.font = style.font;
  tofu.style.whiteSpace = "pre";
  tofu.textContent = "\u{10FFFD}".repeat(han.length);
  document.body.appendChild(tofu);
  const out = {
    text: h1.textContent,
    han: han.length,
    em: parseFloat(style.fontSize),
    width: range.getBoundingClientRect().width,
    tofu: tofu.getBoundingClientRect().width,
  };
  tofu.remove();
  const pre = document.createElement("pre");
  pre.id = "glyph-probe";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
</script>"""


def with_glyph_probe(app: Asgi) -> Asgi:
    """``app`` with :data:`GLYPH_PROBE` run at the end of every HTML page it serves."""

    async def probed(
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[Any]],
        send: Callable[[Any], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        start: dict[str, Any] = {}
        body = bytearray()

        async def capture(message: Any) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
                return
            body.extend(message.get("body", b""))
            if message.get("more_body"):
                return
            headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
            page = bytes(body)
            if any(k.lower() == b"content-type" and v.startswith(b"text/html") for k, v in headers):
                page = page.replace(b"</body>", GLYPH_PROBE + b"</body>")
            headers.append((b"content-length", str(len(page)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": page})

        await app(scope, receive, capture)

    return probed


async def chromium(profile: Path, *args: str, timeout_s: float = 60) -> str:
    """Run headless Chromium without blocking the loop (the console is served on it)."""
    proc = await asyncio.create_subprocess_exec(
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--window-size=1280,900",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
    return out.decode()


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def deadline_rows(dom: str) -> list[str]:
    body = dom.split('<table class="deadlines">', 1)[1].split("</table>", 1)[0]
    return re.findall(r"<tr>(.*?)</tr>", body.split("<tbody>", 1)[1], re.S)


@pytest.fixture
async def console_url(provisioned: Settings, tmp_path: Path) -> AsyncIterator[tuple[str, str]]:
    """The console over a scenario where the police never decide on a transfer."""
    # .ci/run installs Debian's chromium; a missing browser is a broken set-up, not a skip.
    assert Path(CHROMIUM).exists(), "headless Chromium is not installed (apt-get install chromium)"
    settings = provisioned.model_copy(
        update={"bus_key_file": tmp_path / "bus" / "casebus.key.pem", "checkpoint_interval_s": 1.0}
    )
    since = datetime.now(UTC)
    async with running_world(settings, key_dir=tmp_path / "k", clock=SteppedClock()) as world:
        sim = Fortnight(world, seed=11, days=6)
        flows = [sim.transfer_filed(0, evidence=True), sim.transfer_never_decided(0, report_on=5)]
        await run_days(sim, flows, console=Console(quiet=True), since=since)
        app = create_app(settings, pool=world.pool, clock=world.clock)
        token = await create_token(world.pool, PROCURATORATE)
        async with serve_app(with_glyph_probe(app), lifespan="off") as base:
            # The console asks a browser for HTTP Basic (the token as the password); Chromium
            # sends credentials written into the URL of a top-level navigation.
            signed_in = base.replace("http://", f"http://procuratorate:{token}@", 1)
            yield signed_in, sim.expected.flows["transfer: never decided"]


async def test_chromium_renders_the_console_with_the_breach_and_the_filter(
    console_url: tuple[str, str], tmp_path: Path
) -> None:
    base, silent = console_url
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "console.png"
    shot.unlink(missing_ok=True)
    await chromium(tmp_path / "profile-1", *CHINESE_BROWSER, f"--screenshot={shot}", f"{base}/")
    assert shot.is_file() and shot.stat().st_size > 20_000, "an empty-looking screenshot"
    assert png_size(shot) == (1280, 900)

    dom = await chromium(tmp_path / "profile-2", *CHINESE_BROWSER, "--dump-dom", f"{base}/")
    assert '<html lang="zh-CN">' in dom and "两法衔接运行监控台" in dom
    rows = deadline_rows(dom)
    breach = [r for r in rows if silent in r and '<span class="breached">超期</span>' in r]
    assert breach and "criminal.filing_decision" in breach[0] and "立案审查决定" in breach[0]
    assert re.search(r'id="breach-count"><b>[1-9]\d*</b>', dom)

    filtered = await chromium(
        tmp_path / "profile-3", *CHINESE_BROWSER, "--dump-dom", f"{base}/?agency={POLICE}"
    )
    narrowed = deadline_rows(filtered)
    assert 0 < len(narrowed) < len(rows)
    assert all(POLICE in r for r in narrowed)
    assert any(silent in r for r in narrowed)

    shot2 = ARTIFACTS / "console-police.png"
    shot2.unlink(missing_ok=True)
    await chromium(
        tmp_path / "profile-4",
        *CHINESE_BROWSER,
        f"--screenshot={shot2}",
        f"{base}/?agency={POLICE}",
    )
    assert shot2.is_file() and shot2.stat().st_size > 20_000


def glyphs(dom: str) -> dict[str, Any]:
    probe = re.search(r'<pre id="glyph-probe">(.*?)</pre>', dom, re.S)
    assert probe, "the glyph probe did not run"
    found: dict[str, Any] = json.loads(probe.group(1))
    return found


async def test_chromium_draws_the_chinese_console_in_real_glyphs_not_tofu(
    console_url: tuple[str, str], tmp_path: Path
) -> None:
    base, _ = console_url
    dom = await chromium(tmp_path / "profile-zh", *CHINESE_BROWSER, "--dump-dom", f"{base}/")
    g = glyphs(dom)
    assert g["text"] == "两法衔接运行监控台" and g["han"] == 9, g
    # Each ideograph one em wide, as a CJK font draws it; tofu boxes are narrower (or wider).
    assert abs(g["width"] - g["han"] * g["em"]) <= 0.05 * g["han"] * g["em"], (
        "the heading's Chinese is not drawn in a CJK font: is fonts-noto-cjk installed?",
        g,
    )
    assert abs(g["width"] - g["tofu"]) > 0.1 * g["width"], ("drawn as tofu", g)

    shot = ARTIFACTS / "console-zh-heading.png"
    shot.unlink(missing_ok=True)
    await chromium(
        tmp_path / "profile-shot",
        *CHINESE_BROWSER,
        "--window-size=1280,200",
        f"--screenshot={shot}",
        f"{base}/",
    )
    assert shot.is_file()

    # English on request: ?lang=en, or a browser that prefers English.
    en = await chromium(tmp_path / "profile-en", "--dump-dom", f"{base}/?lang=en")
    assert '<html lang="en">' in en and glyphs(en)["text"] == "casebus ops console"
    english_browser = await chromium(
        tmp_path / "profile-en-2",
        "--lang=en-US",
        "--accept-lang=en-US,en",
        "--dump-dom",
        f"{base}/",
    )
    assert glyphs(english_browser)["text"] == "casebus ops console"
