"""Schemathesis against each adapter's OpenAPI document: no input makes the API answer 5xx.

The adapter runs in this process, served by uvicorn on 127.0.0.1 from a thread with its own
event loop (the service's database pool belongs to that loop); schemathesis reads the live
``/openapi.json`` and sends positive and negative examples of every operation, with a valid
token and without one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis.errors import Unsatisfiable
from keykit import ALGORITHM
from schemathesis import GenerationMode

from adapters import court, enforcement, fuzzing, police, procuratorate, regulators
from adapters._framework.auth import create_token
from adapters._framework.config import AdapterConfig, AgencyEndpoint
from adapters._framework.fake_department import free_socket, running_adapter
from bus.agencies import load_registry
from bus.agency_db import sync_agencies
from bus.settings import Settings
from bus.signing import write_keypair

pytestmark = [pytest.mark.integration, pytest.mark.slow]

AGENCIES = {kind: spec.agency for kind, spec in fuzzing.ADAPTERS.items()}
MODULES: dict[str, Any] = {
    "court": court,
    "enforcement": enforcement,
    "police": police,
    "procuratorate": procuratorate,
    "regulators": regulators,
}
EXAMPLES = 25
MUTATIONS = 400


@contextlib.contextmanager
def adapter_in_thread(kind: str, settings: Settings, key_dir: Path) -> Iterator[tuple[str, str]]:
    """``(base URL, token)`` of an adapter served from a thread until the block ends."""
    agency = AGENCIES[kind]
    files = write_keypair(agency, key_dir, algorithm=ALGORITHM)
    config = AdapterConfig(
        adapter_kind=kind,
        agencies=(AgencyEndpoint(agency_id=agency, key_file=files.private_key),),
    )
    ready = threading.Event()
    stop = threading.Event()
    out: dict[str, Any] = {}

    async def main() -> None:
        conn = await asyncpg.connect(settings.database_url)
        try:
            await sync_agencies(conn, load_registry(settings.agencies_file))
        finally:
            await conn.close()
        service = MODULES[kind].build_service(settings, config, run_relay=False, run_readers=False)
        app = MODULES[kind].create_app(service)
        sock = free_socket()
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        task = asyncio.create_task(server.serve(sockets=[sock]))
        try:
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.02)
            out["base"] = f"http://127.0.0.1:{sock.getsockname()[1]}"
            out["token"] = await create_token(service.pool, agency)
            ready.set()
            await asyncio.to_thread(stop.wait)
        finally:
            server.should_exit = True
            await task
            sock.close()

    def run() -> None:
        try:
            asyncio.run(main())
        except BaseException as e:  # surfaced to the test below
            out["error"] = e
            ready.set()

    thread = threading.Thread(target=run, name=f"adapter-{kind}", daemon=True)
    thread.start()
    try:
        assert ready.wait(30), "the adapter did not start"
        if "error" in out:
            raise out["error"]
        yield out["base"], out["token"]
    finally:
        stop.set()
        thread.join(30)


def _fuzz(
    operation: Any, mode: GenerationMode, auth: dict[str, str], base: str, seen: dict[str, set[int]]
) -> None:
    @hsettings(
        max_examples=EXAMPLES if auth else 5,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(mode))
    def call(case: Any) -> None:
        headers = dict(case.headers or {})
        headers.pop("Authorization", None)
        headers.update(auth)
        case.headers = headers
        response = case.call(base_url=base, timeout=10)
        key = f"{case.method} {case.path}"
        seen.setdefault(key, set()).add(response.status_code)
        assert response.status_code < 500, (
            f"{key} answered {response.status_code}: {response.text[:500]}"
        )

    try:
        call()
    except Unsatisfiable:
        # No negative example exists for an operation without inputs (GET /healthz).
        assert mode is GenerationMode.NEGATIVE


@pytest.mark.parametrize("kind", sorted(MODULES))
def test_no_generated_request_makes_the_adapter_answer_5xx(
    kind: str, settings: Settings, tmp_path: Path
) -> None:
    with adapter_in_thread(kind, settings, tmp_path / "keys") as (base, token):
        schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
        seen: dict[str, set[int]] = {}
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 7
        for operation in operations:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                for auth in ({"Authorization": f"Bearer {token}"}, {}):
                    _fuzz(operation, mode, auth, base, seen)
        # The token reached past authentication: some submissions were judged on content.
        statuses = seen["POST /v1/submissions"]
        assert statuses & {202, 400, 422}, statuses


NASTY: list[Any] = [
    None,
    "",
    " ",
    "\x00",
    "\ud800",
    "𠮷" * 300,
    "2026-13-45T25:61:00Z",
    "2026-03-02T09:00:00",
    -1,
    0,
    2**63,
    2**70,
    1.5,
    float("1e308"),
    True,
    [],
    [None],
    [{}],
    {},
    {"x": 1},
]


def _mutate(doc: Any, rng: random.Random) -> Any:
    doc = json.loads(json.dumps(doc))
    for _ in range(rng.randint(1, 3)):
        paths = fuzzing._paths(doc)  # every path into the document, as the corpus mutates
        path = rng.choice(paths)
        parent = doc
        for part in path[:-1]:
            parent = parent[part]
        action = rng.random()
        if action < 0.2 and isinstance(parent, dict):
            del parent[path[-1]]
        elif action < 0.3 and isinstance(parent, dict):
            parent[f"x{rng.randint(0, 9)}"] = rng.choice(NASTY)
        else:
            parent[path[-1]] = rng.choice(NASTY)
    return doc


@pytest.mark.parametrize("kind", ["regulators", "enforcement"])
async def test_mutated_department_documents_never_make_the_adapter_answer_5xx(
    kind: str, provisioned: Settings, tmp_path: Path
) -> None:
    from adapters.enforcement import testing as bureau
    from adapters.regulators import testing as regulator

    agency = AGENCIES[kind]
    peer = AGENCIES["enforcement" if kind == "regulators" else "regulators"]
    ajbh = "阳城执〔2026〕0001号"
    valid = (
        [
            regulator.clue_handover(ajbh=ajbh, xsbh="X", jsdw=[peer]),
            regulator.opinion_response(
                ajbh=ajbh, qqbh="q", dfbh="d", jsdw=[peer], glbh=fuzzing.ORIGINAL
            ),
            regulator.opinion_delegated(ajbh=ajbh, qqbh="q", jsdw=[peer], glbh=fuzzing.ORIGINAL),
        ]
        if kind == "regulators"
        else [
            bureau.opinion_request(ajbh=ajbh, qqbh="q", jsdw=[peer]),
            bureau.penalty_feedback(
                ajbh=ajbh, bgbh="b", jsdw=[peer], decisions=[bureau.penalty_decision(ajbh, 1)]
            ),
            bureau.clue_receipt(
                ajbh=ajbh, xsbh="X", jsdw=[peer], accept=False, glbh=fuzzing.ORIGINAL
            ),
        ]
    )
    conn = await asyncpg.connect(provisioned.database_url)
    try:
        await sync_agencies(conn, load_registry(provisioned.agencies_file))
    finally:
        await conn.close()
    rng = random.Random(20260302)
    statuses: dict[int, int] = {}
    async with running_adapter(
        MODULES[kind].build_service,
        provisioned,
        key_dir=tmp_path / "keys",
        webhooks={agency: None},
    ) as adapter:
        dept = adapter.department(agency)
        for doc in valid:
            r = await dept.submit(doc)
            assert r.status_code == 202, r.text
        for i in range(MUTATIONS):
            doc = _mutate(rng.choice(valid), rng)
            body = json.dumps(doc, ensure_ascii=False, allow_nan=True).encode(
                "utf-8", "surrogatepass"
            )
            r = await adapter.client.post(
                "/v1/submissions",
                content=body,
                headers={**dept.headers, "Content-Type": "application/json"},
            )
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
            assert r.status_code < 500, f"example {i}: {body[:300]!r} -> {r.text[:300]}"
            if r.status_code >= 400:
                assert r.json()["problems"], r.text
    assert statuses.get(202, 0) > 0 and statuses.get(422, 0) > 0, statuses


# -- the hostile corpus on every adapter ------------------------------------------------------

CORPUS_CASES = 600


@pytest.mark.parametrize("kind", sorted(fuzzing.ADAPTERS))
async def test_the_hostile_corpus_never_makes_an_adapter_answer_5xx(
    kind: str, settings: Settings, tmp_path: Path
) -> None:
    conn = await asyncpg.connect(settings.database_url)
    try:
        await sync_agencies(conn, load_registry(settings.agencies_file))
    finally:
        await conn.close()
    result = await fuzzing.run_corpus(
        kind, settings, key_dir=tmp_path / "keys", cases=CORPUS_CASES, seed=15
    )
    assert result.cases == CORPUS_CASES
    assert result.five_xx == 0, result.server_errors
    assert result.unnamed == [], result.unnamed[:3]
    # Every class of hostile input was sent, each more than once.
    assert min(result.classes[c] for c in fuzzing.CLASSES) >= 2, result.classes
    assert set(result.statuses) >= {400, 422}, result.statuses
