"""The adapter framework's webhook delivery to departments: the HMAC signature, the circuit
breaker, each webhook's secret as the CLI reads it, and delivery through an outage, to a slow
department, to one refusing our signature, and across an adapter restart: every message once,
in case order.

Integration tests run the regulators and enforcement adapters in-process against the real broker
and database, with fake departments as real HTTP servers on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import asyncpg
import pytest
import typer
from adapterkit import BUREAU, LAND, PLANNING, case_no, regulators_and_bureau, wait_kind
from buskit import Bus

from adapters import enforcement, regulators
from adapters._framework.fake_department import running_adapter
from adapters._framework.outbound import answer_id, sign_webhook
from adapters._framework.webhooks import CircuitBreaker
from adapters.enforcement.testing import opinion_request
from adapters.regulators.testing import FakeRegulator
from bus.errors import ConfigError

# -- pure logic ----------------------------------------------------------------------------------


def test_the_webhook_signature_covers_timestamp_and_body() -> None:
    a = sign_webhook(b"k", "1700000000", b"{}")
    assert a.startswith("sha256=") and len(a) == 7 + 64
    assert a != sign_webhook(b"k", "1700000001", b"{}")
    assert a != sign_webhook(b"k", "1700000000", b"{ }")
    assert a != sign_webhook(b"other", "1700000000", b"{}")


def test_the_circuit_breaker_opens_after_consecutive_failures_and_retries_after_a_pause() -> None:
    breaker = CircuitBreaker(failures=3, open_s=10)
    for t in range(2):
        breaker.failure(t)
    assert breaker.allows(2)
    breaker.failure(2)
    assert breaker.is_open and not breaker.allows(5) and breaker.allows(12.5)
    breaker.success()
    assert not breaker.is_open and breaker.allows(12.6)


def test_the_cli_reads_each_webhook_secret_next_to_the_agency_key(tmp_path: Path) -> None:
    from bus.cli.adapter import _config

    secret = tmp_path / f"{PLANNING}.webhook-secret"
    secret.write_bytes(b"s3cret\n")
    secret.chmod(0o600)
    config = _config(
        "regulators",
        [PLANNING, LAND],
        tmp_path,
        [f"{PLANNING}=https://gh.example.gov.cn/casebus"],
        1024 * 1024,
        60.0,
    )
    planning, land = config.agencies
    assert planning.mode == "webhook" and planning.webhook_secret == b"s3cret"
    assert planning.key_file == tmp_path / f"{PLANNING}.key.pem"
    assert land.mode == "pull" and land.webhook_url is None
    with pytest.raises(ConfigError, match=f"cannot open webhook HMAC secret .*{LAND}"):
        _config("regulators", [LAND], tmp_path, [f"{LAND}=https://x.example"], 1024 * 1024, 60.0)
    with pytest.raises(typer.BadParameter):
        _config("regulators", [LAND], tmp_path, ["not-a-pair"], 1024 * 1024, 60.0)


# -- integration --------------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.slow
async def test_webhook_outage_every_message_arrives_once_in_case_order_and_acks_are_audited(
    bus: Bus, tmp_path: Path
) -> None:
    cases = {case_no(): 3, case_no(): 2}
    async with (
        FakeRegulator(secret=b"planning-secret") as planning,
        regulators_and_bureau(
            bus, tmp_path, {PLANNING: planning}, bureau=None, breaker_failures=3, max_wait_s=0.5
        ) as (regs, enf),
    ):
        planning.failing = True
        sent: dict[str, list[str]] = {}
        for ajbh, n in cases.items():
            for i in range(n):
                r = await enf.department(BUREAU).submit(
                    opinion_request(ajbh=ajbh, qqbh=f"{ajbh}-{i}", jsdw=[PLANNING])
                )
                assert r.status_code == 202, r.text
                sent.setdefault(ajbh, []).append(r.json()["message_id"])
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        for _ in range(300):
            if planning.attempts >= 3:
                break
            await asyncio.sleep(0.1)
        assert planning.attempts >= 3 and planning.received == []
        await asyncio.sleep(1.5)  # down a while: backoff, the open circuit, the late alert
        metrics = (await regs.client.get("/metrics")).text
        late = [
            line
            for line in metrics.splitlines()
            if line.startswith("casebus_adapter_deliveries_late{") and PLANNING in line
        ]
        assert late and float(late[0].rsplit(" ", 1)[1]) >= 1, late
        planning.failing = False

        docs = await wait_kind(planning, "意见征询", count=5)
        await asyncio.sleep(0.5)
        docs = [d for d in planning.received if d["ywlx"] == "意见征询"]
        assert len(docs) == 5 and len({d["xxbh"] for d in docs}) == 5
        for ajbh, ids in sent.items():
            assert [d["xxbh"] for d in docs if d["ajbh"] == ajbh] == ids
        assert planning.bad_signatures == 0

        acks = [answer_id(PLANNING, "bus.ack", uuid.UUID(m)) for ids in sent.values() for m in ids]
        conn = await asyncpg.connect(bus.settings.database_url)
        try:
            audited: set[uuid.UUID] = set()
            while len(audited) < len(acks) and loop.time() < deadline + 30:
                rows = await conn.fetch(
                    "SELECT message_id FROM audit_entries"
                    " WHERE event_kind = 'accepted' AND message_id = ANY($1::uuid[])",
                    acks,
                )
                audited = {r["message_id"] for r in rows}
                await asyncio.sleep(0.2)
        finally:
            await conn.close()
        assert audited == set(acks)
        assert regs.service.started


@pytest.mark.integration
@pytest.mark.slow
async def test_a_slow_department_is_retried_until_it_answers_in_time(
    bus: Bus, tmp_path: Path
) -> None:
    ajbh = case_no()
    async with (
        FakeRegulator(secret=b"planning-secret") as planning,
        regulators_and_bureau(
            bus, tmp_path, {PLANNING: planning}, bureau=None, webhook_timeout_s=0.3
        ) as (_, enf),
    ):
        planning.delay_s = 1.0
        ids = []
        for i in range(2):
            r = await enf.department(BUREAU).submit(
                opinion_request(ajbh=ajbh, qqbh=f"q-{i}", jsdw=[PLANNING])
            )
            ids.append(r.json()["message_id"])
        for _ in range(300):
            if planning.attempts >= 2:
                break
            await asyncio.sleep(0.1)
        assert planning.attempts >= 2
        planning.delay_s = 0.0
        for _ in range(400):
            arrived = [d["xxbh"] for d in planning.received if d["ywlx"] == "意见征询"]
            if set(ids) <= set(arrived):
                break
            await asyncio.sleep(0.1)
        # Timed-out attempts may have reached the department as well (at least once: the
        # department deduplicates by xxbh), but first arrivals keep the case's order.
        first = list(dict.fromkeys(arrived))
        assert first == ids


@pytest.mark.integration
@pytest.mark.slow
async def test_a_department_refusing_our_signature_is_retried_not_taken_as_a_rejection(
    bus: Bus, tmp_path: Path
) -> None:
    async with (
        FakeRegulator(secret=b"right") as planning,
        regulators_and_bureau(bus, tmp_path, {PLANNING: planning}, bureau=None) as (_, enf),
    ):
        planning.secret = b"rotated"  # the department rotated its secret, we did not yet
        r = await enf.department(BUREAU).submit(
            opinion_request(ajbh=case_no(), qqbh="q-1", jsdw=[PLANNING])
        )
        for _ in range(300):
            if planning.bad_signatures >= 2:
                break
            await asyncio.sleep(0.1)
        assert planning.bad_signatures >= 2 and planning.received == []
        planning.secret = b"right"
        [doc] = await wait_kind(planning, "意见征询")
        assert doc["xxbh"] == r.json()["message_id"]
        assert planning.rejected == []


@pytest.mark.integration
@pytest.mark.slow
async def test_pending_deliveries_survive_an_adapter_restart_and_arrive_once(
    bus: Bus, tmp_path: Path
) -> None:
    ajbh = case_no()
    async with (
        FakeRegulator(secret=b"planning-secret") as planning,
        bus.router(),
        running_adapter(
            enforcement.build_service,
            bus.settings,
            key_dir=tmp_path / "keys",
            webhooks={BUREAU: None},
        ) as enf,
    ):
        planning.failing = True
        async with running_adapter(
            regulators.build_service,
            bus.settings,
            key_dir=tmp_path / "keys",
            webhooks={PLANNING: planning},
        ) as regs:
            ids = []
            for i in range(3):
                r = await enf.department(BUREAU).submit(
                    opinion_request(ajbh=ajbh, qqbh=f"q-{i}", jsdw=[PLANNING])
                )
                ids.append(r.json()["message_id"])
            for _ in range(300):
                stored = await regs.service.pool.fetchval(
                    "SELECT count(*) FROM adapter_deliveries WHERE kind = 'opinion.request'"
                )
                if stored == 3:
                    break
                await asyncio.sleep(0.1)
            assert stored == 3 and planning.received == []
        planning.failing = False
        async with running_adapter(
            regulators.build_service,
            bus.settings,
            key_dir=tmp_path / "keys",
            webhooks={PLANNING: planning},
        ):
            docs = await wait_kind(planning, "意见征询", count=3)
            await asyncio.sleep(1.0)
            docs = [d for d in planning.received if d["ywlx"] == "意见征询"]
            assert [d["xxbh"] for d in docs] == ids


@pytest.mark.integration
async def test_a_stored_delivery_is_posted_at_once_not_at_the_next_poll(
    bus: Bus, tmp_path: Path
) -> None:
    # The inbox reader wakes the deliverer once the transaction that stored the delivery has
    # committed. Woken from inside it, as it was, the deliverer looked before the row was
    # visible and slept out its poll interval: here a minute, so each message below would wait
    # for it (or for the next message).
    loop = asyncio.get_running_loop()
    async with (
        FakeRegulator(secret=b"planning-secret") as planning,
        regulators_and_bureau(
            bus, tmp_path, {PLANNING: planning}, bureau=None, poll_interval_s=60.0
        ) as (_, enf),
    ):
        for i in range(3):
            r = await enf.department(BUREAU).submit(
                opinion_request(ajbh=case_no(), qqbh=f"q-{i}", jsdw=[PLANNING])
            )
            assert r.status_code == 202, r.text
            message_id, sent = r.json()["message_id"], loop.time()
            while message_id not in [d["xxbh"] for d in planning.received]:
                assert loop.time() - sent < 15, f"message {i} not POSTed within 15 s"
                await asyncio.sleep(0.02)
