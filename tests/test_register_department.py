"""docs/register-a-department.md, followed to the letter: its registry entry appended to a copy
of the registry, each of its ``sh`` blocks run in order with the ``casebus`` CLI against the real
broker and database, its adapter started as the page says; then the new department submits a
clue through that adapter and is delivered an opinion request by webhook, signed with the
secret the page made."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from buskit import Bus

from adapters._framework.fake_department import FakeDepartment, free_socket
from adapters.regulators.mapping import VOCABULARY
from adapters.regulators.testing import clue_handover
from bus.codec import default_codec
from bus.models import OpinionRequest
from bus.models.regulators import OpinionType
from bus.settings import REPO_ROOT, Settings

PAGE = REPO_ROOT / "docs" / "register-a-department.md"
BUREAU = "ygh.enforcement.bureau"
_BLOCK = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _blocks() -> list[tuple[str, str, str]]:
    """Every fenced block of the page as (language, tag, text), in page order."""
    text = PAGE.read_text(encoding="utf-8")
    return [(m[1], m[2].strip(), m[3]) for m in _BLOCK.finditer(text)]


def test_the_page_lists_the_steps_in_order() -> None:
    blocks = _blocks()
    assert [lang for lang, _, _ in blocks].count("yaml") == 1
    commands = " ".join(text for lang, _, text in blocks if lang == "sh")
    order = [
        "agency sync",
        "topics ensure",
        "acl plan",
        "acl apply",
        "keys generate",
        "agency key add",
        "webhook-secret",
        "adapter token",
        "adapter regulators",
    ]
    positions = [commands.index(step) for step in order]
    assert positions == sorted(positions)


@contextlib.contextmanager
def _background(script: str, env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        process = subprocess.Popen(
            ["bash", "-euo", "pipefail", "-c", script],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: stopped below with everything it started
        )
    try:
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


async def _ready(base: str, process: subprocess.Popen[bytes], log: Path) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=2.0) as client:
        for _ in range(300):
            assert process.poll() is None, log.read_text(errors="replace")
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get("/readyz")).status_code == 200:
                    return
            await asyncio.sleep(0.2)
    raise AssertionError(f"the adapter never got ready: {log.read_text(errors='replace')}")


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_a_department_registered_as_the_page_says_submits_and_receives(
    provisioned: Settings, cli_env: dict[str, str], casebus_exe: Path, tmp_path: Path
) -> None:
    blocks = _blocks()
    (entry,) = [text for lang, _, text in blocks if lang == "yaml"]
    agency = re.search(r"- id: (\S+)", entry)
    assert agency is not None
    agency_id = agency[1]
    registry = tmp_path / "agencies.yaml"
    shipped = (REPO_ROOT / "deploy" / "agencies.yaml").read_text(encoding="utf-8")
    assert f"id: {agency_id}\n" not in shipped
    registry.write_text(shipped.rstrip("\n") + "\n" + entry, encoding="utf-8")
    keys = tmp_path / "keys"
    keys.mkdir(mode=0o700)
    port = free_socket()  # reserved until the adapter is told to use it
    port_no = port.getsockname()[1]
    port.close()

    department = FakeDepartment(secret=b"", name=agency_id)
    async with department:
        env = {
            **cli_env,
            "CASEBUS_AGENCIES_FILE": str(registry),
            "PATH": f"{casebus_exe.parent}{os.pathsep}{os.environ['PATH']}",
            "AGENCY": agency_id,
            "KEYS": str(keys),
            "WEBHOOK_URL": department.url,
            "PORT": str(port_no),
        }
        outputs: list[str] = []
        service: str | None = None
        for lang, tag, text in blocks:
            if lang != "sh" or tag == "secured":  # secured: needs SASL and an authorizer
                continue
            if tag == "service":
                service = text
                continue
            run = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", text],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert run.returncode == 0, f"{text}\n{run.stdout}\n{run.stderr}"
            outputs.append(run.stdout)
        assert service is not None
        sync, _topics, acl, key_id, _add, _secret, token_out = outputs
        assert f"added   {agency_id}" in sync
        assert f"User:{agency_id}" in acl and f"inbox.{agency_id}" in acl
        assert key_id.strip().startswith(f"{agency_id}:")
        token = token_out.strip().splitlines()[-1]
        secret = (keys / f"{agency_id}.webhook-secret").read_bytes().strip()
        assert (
            len(secret) == 64 and (keys / f"{agency_id}.webhook-secret").stat().st_mode & 0o77 == 0
        )
        department.secret = secret

        # The router starts after the page's steps, as its last section says.
        bus = Bus(provisioned.model_copy(update={"agencies_file": registry}), tmp_path / "bus")
        await bus.setup()
        log = tmp_path / "adapter.log"
        try:
            with _background(service, env, log) as adapter:
                base = f"http://127.0.0.1:{port_no}"
                await _ready(base, adapter, log)
                async with bus.router():
                    await _submits(base, token, agency_id, bus)
                    await _receives(agency_id, bus, department)
        finally:
            await bus.close()


async def _submits(base: str, token: str, agency_id: str, bus: Bus) -> None:
    """The department submits a clue with its token; the bureau's inbox gets it, signed."""
    case = f"阳林〔2026〕{uuid.uuid4().hex[:6]}号"
    document = clue_handover(ajbh=case, xsbh="LY-1", jsdw=[BUREAU])
    async with httpx.AsyncClient(base_url=base, timeout=10.0) as client:
        response = await client.post(
            "/v1/submissions", json=document, headers={"Authorization": f"Bearer {token}"}
        )
    assert response.status_code == 202, response.text
    message_id = response.json()["message_id"]
    records = await bus.inbox(BUREAU, want=1, timeout_s=60)
    envelopes = [e for e in bus.envelopes(records) if str(e.message_id) == message_id]
    assert len(envelopes) == 1
    (envelope,) = envelopes
    assert envelope.sender == agency_id and envelope.kind == "clue.handover"
    assert envelope.signature.key_id.startswith(f"{agency_id}:")


async def _receives(agency_id: str, bus: Bus, department: FakeDepartment) -> None:
    """The bureau asks the new department for an opinion; its webhook gets it, signed."""
    bureau = await bus.party(BUREAU)
    request = bureau.envelope(
        OpinionRequest(
            request_no="阳执意〔2026〕7号",
            opinion_type=OpinionType.PROFESSIONAL_OPINION,
            subject="林地占用认定",
            questions=["涉案地块是否属于林地？"],
            due_at=datetime.now(UTC) + timedelta(days=10),
        ),
        recipients=[agency_id],
        case_id=f"阳执罚〔2026〕{uuid.uuid4().hex[:6]}号",
    )
    assert default_codec().decode_envelope(bureau.value(request)) == request
    await bus.submit(request)
    wanted = str(request.message_id)
    for count in range(1, 4):  # the receipt (bus.delivered) of its own clue may come first
        received = await department.wait_for(count, timeout_s=60)
        if any(d["xxbh"] == wanted for d in received):
            break
    (document,) = [d for d in received if d["xxbh"] == wanted]
    assert document["ywlx"] == VOCABULARY.code("opinion.request")
    assert department.bad_signatures == 0
