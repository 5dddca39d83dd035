"""A department proves its own refusal by the message id it knows.

The router refuses a message the enforcement bureau's adapter queued (its outbox is where any
of its messages starts; here one that went out before the adapter checked routes), audits it
under an id derived from its bytes, and the bureau reads every entry of it — the whole reason,
the leaf, an inclusion proof that verifies against the signed checkpoint with the bus's public
key — at ``GET /v1/messages/{id}/audit`` of its own adapter, connected as casebus_adapter. The
police, named as recipient of the refused message, are no party to it: 404, as for an unknown
id. ``casebus trace`` shows the whole reason and the bureau's own message id.
"""

from __future__ import annotations

import asyncio
import base64
import random
import uuid
from typing import Any

import asyncpg
import pytest
from buskit import Bus

from adapters import enforcement, police
from adapters._framework.fake_department import RunningAdapter, running_adapter
from bus.audit.checkpoint import verify_signed_checkpoint
from bus.audit.merkle import leaf_hash, verify_inclusion
from bus.outbox import OutboxWriter
from bus.samples import sample_envelope
from bus.trace import case_trace, render_trace

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BUREAU = "ygh.enforcement.bureau"
POLICE = "ygh.police.bureau"


async def audit_of(adapter: RunningAdapter, agency: str, message_id: uuid.UUID) -> Any:
    dept = adapter.department(agency)
    return await dept.client.get(f"/v1/messages/{message_id}/audit", headers=dept.headers)


async def proven_refusal(adapter: RunningAdapter, message_id: uuid.UUID) -> dict[str, Any]:
    """The bureau's answer once the refusal is audited and a checkpoint covers it."""
    for _ in range(150):
        r = await audit_of(adapter, BUREAU, message_id)
        if r.status_code == 200:
            body: dict[str, Any] = r.json()
            if body["entries"] and all(e["proof"] for e in body["entries"]):
                return body
        else:
            assert r.status_code == 404, r.text  # not audited yet
        await asyncio.sleep(0.2)
    raise AssertionError(f"no proven refusal of {message_id}: {r.status_code} {r.text[:300]}")


async def test_a_department_fetches_the_proof_of_its_own_refusal_by_its_own_id(
    bus: Bus, tmp_path: Any
) -> None:
    case = f"阳城执〔2026〕{uuid.uuid4().hex[:8]}号"
    async with (
        bus.router(),
        running_adapter(
            enforcement.build_service,
            bus.settings,
            key_dir=tmp_path / "adapter-keys",
            webhooks={BUREAU: None},
            own_role=True,
        ) as enf,
        running_adapter(
            police.build_service,
            bus.settings,
            key_dir=tmp_path / "adapter-keys",
            webhooks={POLICE: None},
            own_role=True,
        ) as pol,
    ):
        # As deployed: the adapter's own login, which may not read the audit log itself.
        assert await enf.service.pool.fetchval(
            "SELECT pg_has_role(current_user, 'casebus_adapter', 'member')"
            " AND NOT has_table_privilege('audit_entries', 'SELECT')"
        )
        bureau = await bus.party(BUREAU)
        refused = sample_envelope(
            bureau, "opinion.request", random.Random(21), recipients=[POLICE], case_id=case
        )
        conn = await asyncpg.connect(bus.settings.database_url)
        try:
            async with conn.transaction():
                await OutboxWriter(bus.settings).add(conn, refused, owner=BUREAU)
        finally:
            await conn.close()

        body = await proven_refusal(enf, refused.message_id)
        assert body["message_id"] == str(refused.message_id)
        [entry] = body["entries"]
        assert entry["event"] == "rejected"
        assert entry["audited_as"] != str(refused.message_id)  # the id derived from the bytes
        details = entry["details"]
        assert details["code"] == "unauthorized_route"
        assert details["original_message_id"] == str(refused.message_id)
        [problem] = details["problems"]
        assert problem["rule"] == "unauthorized_route" and problem["value"] == POLICE
        assert "recipients allowed: regulator" in problem["message"]  # the whole reason

        # The proof holds with the bus's public key alone.
        proof = entry["proof"]
        checkpoint = verify_signed_checkpoint(
            proof["checkpoint"], bus.settings.audit_origin, bus.log_key
        )
        assert checkpoint.size == proof["tree_size"]
        verify_inclusion(
            leaf_hash(base64.b64decode(entry["leaf"])),
            entry["audit_index"],
            proof["tree_size"],
            [base64.b64decode(h) for h in proof["inclusion_proof"]],
            checkpoint.root_hash,
        )

        # The police, named in the refused message, never were a party to it; nor is anyone to
        # an unknown id: the same 404.
        for adapter, agency, message_id in (
            (pol, POLICE, refused.message_id),
            (enf, BUREAU, uuid.uuid4()),
        ):
            r = await audit_of(adapter, agency, message_id)
            assert r.status_code == 404, r.text
            assert [p["rule"] for p in r.json()["problems"]] == ["not_found"]

        # casebus trace: the whole reason, and the id the department knows.
        pool = await asyncpg.create_pool(bus.settings.database_url, min_size=1, max_size=2)
        try:
            trace = await case_trace(pool, case)
        finally:
            await pool.close()
        [step] = [m for m in trace.messages if m.event == "rejected"]
        assert problem["message"] in step.detail and "unauthorized_route" in step.detail
        assert str(refused.message_id) in render_trace(trace)
