"""Every adapter's ``/openapi.json`` publishes the callbacks its departments receive (OpenAPI
3.1 ``webhooks``): the signature headers, the signed string, the clock skew, the body and what
each answer leads to, in agreement with the code that delivers them."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import httpx
import pytest
from keykit import ALGORITHM

from adapters._framework.config import AdapterConfig, AgencyEndpoint
from adapters._framework.outbound import SIGNATURE_HEADER, TIMESTAMP_HEADER
from adapters._framework.vocabulary import BUS_KINDS
from adapters._framework.webhook_docs import MESSAGE_ID_HEADER, RECOMMENDED_MAX_SKEW_S
from adapters._framework.webhooks import _RETRIED_4XX
from bus.settings import load_settings
from bus.signing import write_keypair

ADAPTERS = {
    "regulators": "ygh.regulator.planning",
    "enforcement": "ygh.enforcement.bureau",
    "police": "ygh.police.bureau",
    "procuratorate": "ygh.procuratorate",
    "court": "ygh.court",
}


async def _openapi(kind: str, tmp_path: Path) -> tuple[dict[str, Any], Any]:
    """The served /openapi.json of one adapter kind, and its service (never started: the
    document needs no database or broker)."""
    module = importlib.import_module(f"adapters.{kind}")
    agency = ADAPTERS[kind]
    files = write_keypair(agency, tmp_path / kind, algorithm=ALGORITHM)
    config = AdapterConfig(
        adapter_kind=kind,
        agencies=(AgencyEndpoint(agency_id=agency, key_file=files.private_key),),
    )
    service = module.build_service(load_settings(), config, run_relay=False, run_readers=False)
    app = module.create_app(service, manage_service=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://adapter") as client:
        response = await client.get("/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document, service


@pytest.mark.parametrize("kind", sorted(ADAPTERS))
async def test_openapi_publishes_a_webhook_for_every_kind_a_department_receives(
    kind: str, tmp_path: Path
) -> None:
    document, service = await _openapi(kind, tmp_path)
    assert document["openapi"].startswith("3.1")
    hooks = document["webhooks"]
    expected = [*service.receives, *(k.kind for k in BUS_KINDS)]
    assert list(hooks) == list(dict.fromkeys(expected))
    for name, item in hooks.items():
        post = item["post"]
        code = post["requestBody"]["content"]["application/json; charset=utf-8"]["schema"]
        assert code["properties"]["ywlx"]["const"] == service.vocabulary.code(name)
        headers = {p["name"]: p for p in post["parameters"] if p["in"] == "header"}
        assert set(headers) == {TIMESTAMP_HEADER, SIGNATURE_HEADER, MESSAGE_ID_HEADER}
        assert all(p["required"] for p in headers.values())
    # The paths are still there: the section is added, not swapped in.
    assert "/v1/submissions" in document["paths"]


async def test_the_webhook_description_states_the_signature_skew_and_answers(
    tmp_path: Path,
) -> None:
    document, _ = await _openapi("regulators", tmp_path)
    post = document["webhooks"]["opinion.request"]["post"]
    text = post["description"]
    assert 'HMAC-SHA256(secret, timestamp + "." + body)' in text
    assert f"{RECOMMENDED_MAX_SKEW_S} s" in text
    assert "webhook-secret" in text and "docs/webhooks.md" in text
    retried = ", ".join(str(s) for s in sorted(_RETRIED_4XX))
    assert f"except {retried} rejects" in text
    assert "401" in retried  # a bad signature is retried, never a rejection
    assert "rejected_by_department" in text
    assert set(post["responses"]) == {"2XX", "4XX", "401", "5XX"}
    assert "retried" in post["responses"]["401"]["description"]
    signature = {p["name"]: p for p in post["parameters"]}[SIGNATURE_HEADER]
    assert signature["schema"]["pattern"] == "^sha256=[0-9a-f]{64}$"
