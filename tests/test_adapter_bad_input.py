"""Bad input to a real adapter is a 4xx naming the field and the rule, never a 500.

Each document goes through ``POST /v1/submissions`` of the enforcement adapter on the real
database; the answer must be a 4xx whose problem list renders as JSON and names the department's
field and the rule broken, and nothing may reach the outbox.
"""

from __future__ import annotations

import json
import unicodedata
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from buskit import Bus, receipt_payload

from adapters import enforcement
from adapters._framework.fake_department import RunningAdapter, running_adapter
from adapters.enforcement.testing import opinion_request
from bus.agencies import load_registry
from bus.agency_db import sync_agencies
from bus.models import MAX_IDENTIFIER_LENGTH
from bus.settings import Settings
from bus.signing import sign_envelope

pytestmark = [pytest.mark.integration]

BUREAU = "ygh.enforcement.bureau"
PLANNING = "ygh.regulator.planning"
_MARK = "@@RAW@@"


@pytest.fixture
async def adapter(provisioned: Settings, tmp_path: Path) -> AsyncIterator[RunningAdapter]:
    import asyncpg

    conn = await asyncpg.connect(provisioned.database_url)
    try:
        await sync_agencies(conn, load_registry(provisioned.agencies_file))
    finally:
        await conn.close()
    async with running_adapter(
        enforcement.build_service,
        provisioned,
        key_dir=tmp_path / "keys",
        webhooks={BUREAU: None},
    ) as running:
        yield running


def _document() -> dict[str, Any]:
    ajbh = f"阳城执〔2026〕{uuid.uuid4().hex[:6]}号"
    return opinion_request(ajbh=ajbh, qqbh="q", jsdw=[PLANNING])


def _body(field: str, raw: str) -> bytes:
    """The document with ``field`` set to the raw JSON text ``raw`` (NaN, a 5,000-digit number)."""
    doc = _document()
    doc[field] = _MARK
    return json.dumps(doc, ensure_ascii=False).replace(f'"{_MARK}"', raw).encode()


async def _post(adapter: RunningAdapter, body: bytes) -> tuple[int, list[dict[str, Any]]]:
    r = await adapter.client.post(
        "/v1/submissions",
        content=body,
        headers={**adapter.department(BUREAU).headers, "Content-Type": "application/json"},
    )
    problems = r.json().get("problems", []) if r.status_code >= 400 else []
    return r.status_code, problems


async def _outbox_rows(adapter: RunningAdapter) -> int:
    count = await adapter.service.pool.fetchval("SELECT count(*) FROM outbox")
    assert isinstance(count, int)
    return count


def _named(problems: list[dict[str, Any]], field: str, rule: str) -> dict[str, Any]:
    found = [p for p in problems if p["field"] == field and p["rule"] == rule]
    assert found, f"no {rule} problem on {field}: {problems}"
    assert found[0]["message_zh"], found[0]
    return found[0]


# -- point 2: the four inputs that answered 500 ----------------------------------------------


@pytest.mark.parametrize(
    ("field", "raw"),
    [
        ("sx", "NaN"),
        ("ajbh", "NaN"),
        ("lxdh", "Infinity"),
        ("sx", "-Infinity"),
        ("sx", "1e999"),  # Python's JSON reads it as infinity
    ],
)
async def test_a_json_non_finite_number_is_a_422_naming_the_field(
    adapter: RunningAdapter, field: str, raw: str
) -> None:
    status, problems = await _post(adapter, _body(field, raw))
    assert status == 422, problems
    _named(problems, field, "non_finite_number")
    assert await _outbox_rows(adapter) == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("dfqx", "0001-01-01T00:00:00+14:00"),
        ("dfqx", "9999-12-31T23:59:59-12:00"),
        ("qx", "0001-01-01T00:00:00+00:01"),
        ("qx", "9999-12-31T23:59:59.999-00:01"),
    ],
)
async def test_a_datetime_outside_the_utc_years_1_to_9999_is_a_422(
    adapter: RunningAdapter, field: str, value: str
) -> None:
    status, problems = await _post(adapter, _body(field, json.dumps(value)))
    assert status == 422, problems
    _named(problems, field, "datetime_out_of_range")
    assert await _outbox_rows(adapter) == 0


async def test_the_utc_range_ends_themselves_are_accepted(adapter: RunningAdapter) -> None:
    for value in ("0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999+00:00"):
        status, problems = await _post(adapter, _body("qx", json.dumps(value)))
        assert status == 202, problems
    assert await _outbox_rows(adapter) == 2


@pytest.mark.parametrize("field", ["ajbh", "sx", "dfqx"])
async def test_an_integer_of_5000_digits_is_a_422_naming_the_field(
    adapter: RunningAdapter, field: str
) -> None:
    status, problems = await _post(adapter, _body(field, "9" * 5000))
    assert status == 422, problems
    problem = _named(problems, field, "integer_too_long")
    assert len(json.dumps(problem)) < 1000  # the value is not echoed whole
    assert await _outbox_rows(adapter) == 0


async def test_a_case_number_of_3000_characters_is_a_422_not_an_index_failure(
    adapter: RunningAdapter,
) -> None:
    varied = "".join(chr(0x4E00 + i * 7919 % 20000) for i in range(3000))  # incompressible
    status, problems = await _post(adapter, _body("ajbh", json.dumps(varied)))
    assert status == 422, problems
    problem = _named(problems, "ajbh", "string_too_long")
    assert str(MAX_IDENTIFIER_LENGTH) in problem["message_zh"]
    assert len(problem["value"]) < 300  # shown truncated
    assert await _outbox_rows(adapter) == 0


async def test_the_longest_case_number_of_four_byte_characters_fits_every_index(
    adapter: RunningAdapter,
) -> None:
    # Distinct CJK Extension B characters (4 bytes in UTF-8) so nothing compresses.
    longest = "".join(chr(0x20000 + i * 7) for i in range(MAX_IDENTIFIER_LENGTH))
    assert len(longest.encode()) == 4 * MAX_IDENTIFIER_LENGTH
    doc = _document() | {"ajbh": longest, "glbh": longest[::-1]}
    r = await adapter.department(BUREAU).submit(doc, idempotency_key="k" * 200)
    assert r.status_code == 202, r.text
    stored = await adapter.service.pool.fetchval("SELECT case_id FROM outbox")
    assert stored == longest


# -- point 3: case numbers that lie -----------------------------------------------------------


@pytest.mark.parametrize(
    ("ajbh", "rule"),
    [
        ("", "identifier_blank"),
        ("   ", "identifier_blank"),
        ("\u3000\t", "identifier_blank"),
        (" 阳城执〔2026〕1号", "identifier_untrimmed"),
        ("阳城执〔2026〕1号 ", "identifier_untrimmed"),
        ("阳城执\x1b[2J\r\n〔2026〕1号", "identifier_character"),
        ("阳城执〔2026〕\u202e号1", "identifier_character"),
        ("阳城执〔2026〕1\u200b号", "identifier_character"),
        ("阳城执〔2026〕1号\u2028", "identifier_character"),
        ("阳城执〔2026〕1号\ue000", "identifier_character"),  # private use
        ("阳城执〔2026〕1号\U000e0001", "identifier_character"),  # language tag (Cf)
        ("阳城执〔2026〕1号\u0378", "identifier_character"),  # unassigned
        ("阳城执\u00a0〔2026〕1号", "identifier_character"),  # looks like a space
        ("Cafe\u0301-1", "identifier_not_nfc"),
    ],
)
async def test_a_case_number_that_lies_is_a_422_naming_the_rule(
    adapter: RunningAdapter, ajbh: str, rule: str
) -> None:
    status, problems = await _post(adapter, _body("ajbh", json.dumps(ajbh)))
    assert status == 422, problems
    _named(problems, "ajbh", rule)
    assert await _outbox_rows(adapter) == 0


@pytest.mark.parametrize("field", ["glbh", "yyxx"])
async def test_thread_ids_follow_the_same_identifier_rules(
    adapter: RunningAdapter, field: str
) -> None:
    status, problems = await _post(adapter, _body(field, json.dumps("q\u202e1")))
    assert status == 422, problems
    _named(problems, field, "identifier_character")


async def test_a_plain_case_number_with_inner_spaces_and_nfc_text_is_accepted(
    adapter: RunningAdapter,
) -> None:
    ajbh = unicodedata.normalize("NFC", "Café 阳城执〔2026〕第 1 号")
    r = await adapter.department(BUREAU).submit(_document() | {"ajbh": ajbh})
    assert r.status_code == 202, r.text
    assert await adapter.service.pool.fetchval("SELECT case_id FROM outbox") == ajbh


async def test_the_openapi_document_states_the_identifier_rules(adapter: RunningAdapter) -> None:
    spec = (await adapter.client.get("/openapi.json")).json()
    body = spec["paths"]["/v1/submissions"]["post"]["requestBody"]["content"]["application/json"]
    for field in ("ajbh", "glbh", "yyxx"):
        schema = body["schema"]["properties"][field]
        assert schema["maxLength"] == MAX_IDENTIFIER_LENGTH and schema["minLength"] == 1
        assert "NFC" in schema["description"] and "U+0020" in schema["description"]


# -- the router decodes with the same models ---------------------------------------------------


async def test_the_router_dead_letters_a_signed_envelope_whose_case_number_lies(bus: Bus) -> None:
    police = await bus.party("ygh.police.bureau")
    good = police.envelope(receipt_payload(1), recipients=[BUREAU], case_id="YGH-2026-15")
    # Signed by its sender, but written past the adapter's check (model_copy does not validate).
    lying = sign_envelope(
        police.envelope(receipt_payload(2), recipients=[BUREAU], case_id="x").model_copy(
            update={"case_id": "YGH-2026-\u202e51"}
        ),
        police.signer,
    )
    async with bus.router():
        await bus.submit(lying, good)
        delivered = await bus.inbox(BUREAU, want=1, settle_s=1.0)
        dead = await bus.read(bus.settings.topic_dead(), want=1, settle_s=1.0)
    assert [bus.codec.decode_envelope(r.value).message_id for r in delivered] == [good.message_id]
    [record] = dead
    reasons = json.loads(dict(record.headers)["casebus_dead_reason"])
    assert [(p["path"], p["rule"]) for p in reasons] == [("case_id", "identifier_character")]
