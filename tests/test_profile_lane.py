"""What the router verified is what the run's crypto profile signs with: the proof that a lane run
with ``CASEBUS_CRYPTO_PROFILE=sm2`` (``make test-sm2``) did sign with SM2, and not quietly with
the Ed25519 keys of before.

It runs in both lanes. Messages go the three ways agencies sign: a party of the test kit, a
department's submission through its adapter, and the acknowledgement the recipient's adapter
signs when its department took the message. Every signature the router accepted must have
verified with a registry key of the profile's algorithm. The algorithms seen are recorded as the
junit suite property ``audited_signature_algorithms``; ``.ci/run`` refuses an sm2 lane whose
report does not say exactly ``sm2-sm3``.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest
from adapterkit import BUREAU, case_no, regulators_and_bureau, wait_kind
from buskit import Bus, receipt_payload
from keykit import ALGORITHM

from adapters.enforcement.testing import opinion_request
from adapters.regulators.testing import FakeRegulator
from bus.codec import decode_envelope

pytestmark = [pytest.mark.integration, pytest.mark.slow]

POLICE = "ygh.police.bureau"
PLANNING = "ygh.regulator.planning"


async def _accepted(dsn: str) -> list[dict[str, str]]:
    """Every submission the router accepted: its kind, sender and the algorithm of the registry
    key its signature verified with, from the audit log."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT leaf FROM audit_entries WHERE event_kind = 'accepted'")
    finally:
        await conn.close()
    out = []
    for row in rows:
        leaf = json.loads(bytes(row["leaf"]))
        envelope = decode_envelope(base64.b64decode(leaf["envelope"]))
        out.append(
            {
                "kind": envelope.kind,
                "sender": envelope.sender,
                "algorithm": leaf["signing_key"]["algorithm"],
                "claimed": envelope.signature.algorithm,
            }
        )
    return out


async def test_every_signature_the_router_verified_is_of_the_profiles_algorithm(
    bus: Bus, tmp_path: Path, record_testsuite_property: Callable[[str, object], None]
) -> None:
    police = await bus.party(POLICE)
    ajbh = case_no()
    async with (
        FakeRegulator(secret=b"planning-secret") as planning,
        regulators_and_bureau(bus, tmp_path, {PLANNING: planning}, bureau=None) as (_, enf),
    ):
        await bus.submit(police.envelope(receipt_payload(), recipients=[BUREAU], case_id=ajbh))
        asked = await enf.department(BUREAU).submit(
            opinion_request(ajbh=ajbh, qqbh="意见征询〔2026〕S号", jsdw=[PLANNING])
        )
        assert asked.status_code == 202, asked.text
        await wait_kind(planning, "意见征询")  # its adapter acknowledges it: a bus.ack
        for _ in range(400):
            accepted = await _accepted(bus.settings.database_url)
            if any(a["kind"] == "bus.ack" and a["sender"] == PLANNING for a in accepted):
                break
            await asyncio.sleep(0.1)
    signers = {(a["sender"], a["kind"]) for a in accepted}
    assert {
        (POLICE, "criminal.receipt"),  # the test kit's party
        (BUREAU, "opinion.request"),  # a department's submission, signed by its adapter
        (PLANNING, "bus.ack"),  # the recipient adapter's acknowledgement
    } <= signers, signers
    algorithms = sorted({a["algorithm"] for a in accepted} | {a["claimed"] for a in accepted})
    record_testsuite_property("audited_signature_algorithms", ",".join(algorithms))
    assert algorithms == [ALGORITHM], accepted
