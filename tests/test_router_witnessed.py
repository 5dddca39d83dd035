"""How long the audit log has gone unwitnessed (bus.router.witnessed): the pure refusal
decision, and a real router on the real broker and database whose only witness is down, then
back — the gauges move, and with CASEBUS_AUDIT_WITNESS_FAIL_CLOSED_AFTER_S the router refuses
new submissions (nacked, audited, dead-lettered) until a checkpoint is cosigned again."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import asyncpg
import pytest
import uvicorn
from buskit import Bus, receipt_payload
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prometheus_client import REGISTRY

from bus.audit.checkpoint import parse_verifier_key, verifier_key_string
from bus.errors import ConfigError
from bus.router.app import run_router
from bus.router.witnessed import WitnessState, unwitnessed_refusal
from bus.witness import MemoryWitnessStore, Witness, create_app, logs_by_origin

POLICE = "ygh.police.bureau"
BUREAU = "ygh.enforcement.bureau"
NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def _state(unwitnessed_for_s: float | None) -> WitnessState:
    now_ms = int(NOW.timestamp() * 1000)
    since = None if unwitnessed_for_s is None else now_ms - int(unwitnessed_for_s * 1000)
    return WitnessState(now_ms, now_ms - 600_000, since)


def test_refusal_only_with_a_limit_and_only_past_it() -> None:
    assert unwitnessed_refusal(_state(3600), now=NOW, limit_s=None) is None, "fail open"
    assert unwitnessed_refusal(None, now=NOW, limit_s=1) is None, "unknown state: no refusal"
    assert unwitnessed_refusal(_state(None), now=NOW, limit_s=1) is None, "nothing waits"
    assert unwitnessed_refusal(_state(60), now=NOW, limit_s=60) is None
    problem = unwitnessed_refusal(_state(61), now=NOW, limit_s=60)
    assert problem is not None and problem.rule == "log_unwitnessed"
    assert "CASEBUS_AUDIT_WITNESS_FAIL_CLOSED_AFTER_S=60" in problem.message
    assert "61 s" in problem.message and problem.value == 61.0


async def test_fail_closed_without_witnesses_is_a_config_error(bus: Bus) -> None:
    with pytest.raises(ConfigError, match="CASEBUS_AUDIT_WITNESSES is empty"):
        await run_router(
            bus.settings.model_copy(update={"audit_witness_fail_closed_after_s": 2.0}),
            handle_signals=False,
        )


def _gauge(name: str) -> float | None:
    return REGISTRY.get_sample_value(name)


async def _until(ok: Callable[[], bool], what: str, timeout_s: float = 20) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not ok():
        assert loop.time() < deadline, f"not within {timeout_s} s: {what}"
        await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def _serving(witness: Witness, port: int) -> AsyncIterator[None]:
    server = uvicorn.Server(
        uvicorn.Config(create_app(witness), host="127.0.0.1", port=port, log_level="warning")
    )
    task = asyncio.create_task(server.serve())
    try:
        await _until(lambda: server.started, "the witness started", 10)
        yield
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


async def test_a_router_whose_witness_is_down_refuses_after_the_limit_and_resumes(
    bus: Bus,
) -> None:
    origin = bus.settings.audit_origin
    trusted = parse_verifier_key(verifier_key_string(origin, bus.log_key))
    witness = Witness(
        name="ygh.procuratorate/witness",
        private_key=Ed25519PrivateKey.generate(),
        logs=logs_by_origin([trusted]),
        store=MemoryWitnessStore(),
    )
    with socket.socket() as s:  # a port nothing listens on yet: the witness is down
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    police = await bus.party(POLICE)
    first, refused, later = (
        police.envelope(receipt_payload(n), recipients=[BUREAU], case_id=f"YGH-W-{n}")
        for n in range(3)
    )
    witnessed_before = _gauge("casebus_audit_witnessed_checkpoint_timestamp_seconds")
    async with bus.router(
        audit_witnesses=f"http://127.0.0.1:{port}={witness.vkey}",
        audit_witness_fail_closed_after_s=2.0,
    ):
        await bus.submit(first)  # the log grows; its checkpoint is held, unwitnessed
        assert len(await bus.inbox(BUREAU, want=1)) == 1
        await _until(
            lambda: (_gauge("casebus_audit_unwitnessed_seconds") or 0) > 2.5,
            "the unwitnessed gauge passed the limit",
        )
        assert _gauge("casebus_audit_witness_fail_closed_after_seconds") == 2.0
        signed = _gauge("casebus_audit_signed_checkpoint_timestamp_seconds")
        assert signed is not None and signed > datetime.now(UTC).timestamp() - 60
        assert _gauge("casebus_audit_witnessed_checkpoint_timestamp_seconds") == witnessed_before

        # A new message is refused; one the log accepted before is still a duplicate.
        await bus.submit(first, refused)
        dead = [
            r
            for r in await bus.read(bus.settings.topic_dead(), want=1)
            if dict(r.headers).get("casebus_dead_code") == b"log_unwitnessed"
        ]
        assert [r.value for r in dead] == [police.value(refused)]
        to_police = bus.envelopes(await bus.inbox(POLICE, want=2, settle_s=1))
        nacks = [bus.payload(e) for e in to_police if e.kind == "bus.nack"]
        assert [(n.original_message_id, n.code) for n in nacks] == [  # type: ignore[attr-defined]
            (refused.message_id, "log_unwitnessed")
        ]
        [reason] = nacks[0].reasons  # type: ignore[attr-defined]
        assert "CASEBUS_AUDIT_WITNESS_FAIL_CLOSED_AFTER_S=2" in reason.message

        async with _serving(witness, port):
            await _until(
                lambda: _gauge("casebus_audit_unwitnessed_seconds") == 0,
                "a checkpoint was cosigned and the gauge went back to 0",
            )
            witnessed = _gauge("casebus_audit_witnessed_checkpoint_timestamp_seconds")
            assert witnessed is not None and witnessed >= signed
            # Accepting again: a new message, and the refused one sent once more.
            await bus.submit(later, refused)
            delivered = await bus.inbox(BUREAU, want=3)
    assert sorted(r.value for r in delivered) == sorted(
        police.value(e) for e in (first, refused, later)
    )
    pool = await asyncpg.create_pool(bus.settings.database_url, min_size=1, max_size=1)
    try:
        rows = await pool.fetch(
            "SELECT leaf FROM audit_entries WHERE event_kind = 'rejected' ORDER BY idx"
        )
    finally:
        await pool.close()
    assert [json.loads(r["leaf"])["details"]["code"] for r in rows] == ["log_unwitnessed"]
