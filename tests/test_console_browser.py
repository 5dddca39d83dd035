"""The ops console in a real browser: headless Chromium renders it (screenshots kept under
``.ci/artifacts/``) and its DOM shows the breach this test caused; the agency filter narrows
the deadline list."""

from __future__ import annotations

import asyncio
import re
import shutil
import struct
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from rich.console import Console

from adapters._framework.auth import create_token
from adapters._framework.testing import serve_app
from bus.console import create_app
from bus.demo import run_days
from bus.settings import REPO_ROOT, Settings
from bus.sim import Fortnight, SteppedClock, running_world

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(180)]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = REPO_ROOT / ".ci" / "artifacts"
POLICE = "ygh.police.bureau"
PROCURATORATE = "ygh.procuratorate"


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
        async with serve_app(app, lifespan="off") as base:
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
    await chromium(tmp_path / "profile-1", f"--screenshot={shot}", f"{base}/")
    assert shot.is_file() and shot.stat().st_size > 20_000, "an empty-looking screenshot"
    assert png_size(shot) == (1280, 900)

    dom = await chromium(tmp_path / "profile-2", "--dump-dom", f"{base}/")
    assert "casebus ops console" in dom
    rows = deadline_rows(dom)
    breach = [r for r in rows if silent in r and 'class="breached">breached' in r]
    assert breach and "criminal.filing_decision" in breach[0]
    assert re.search(r'id="breach-count"><b>[1-9]\d*</b>', dom)

    filtered = await chromium(tmp_path / "profile-3", "--dump-dom", f"{base}/?agency={POLICE}")
    narrowed = deadline_rows(filtered)
    assert 0 < len(narrowed) < len(rows)
    assert all(POLICE in r for r in narrowed)
    assert any(silent in r for r in narrowed)

    shot2 = ARTIFACTS / "console-police.png"
    shot2.unlink(missing_ok=True)
    await chromium(tmp_path / "profile-4", f"--screenshot={shot2}", f"{base}/?agency={POLICE}")
    assert shot2.is_file() and shot2.stat().st_size > 20_000
