"""What the fault tests share: a stream of ordered messages, a steady load that survives a
broker going away, waiting on a router process's log and exit, and the proofs every fault test
ends with (each message delivered once, in per-case order, audited once, handled once)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections import defaultdict
from pathlib import Path

import asyncpg
from buskit import Bus, receipt_payload

from bus.inbox import InboxReader
from bus.models import Envelope
from bus.party import Party

POLICE = "ygh.police.bureau"
BUREAU = "ygh.enforcement.bureau"


def stream(police: Party, *, cases: int, per_case: int, start: int = 0) -> list[Envelope]:
    """Messages round-robin over cases; the transfer-letter number carries (case, sequence)."""
    out = []
    for seq in range(start, start + per_case):
        for c in range(cases):
            case = f"YGH-2026-{c:04d}"
            payload = receipt_payload().model_copy(update={"transfer_letter_no": f"{case}#{seq}"})
            out.append(police.envelope(payload, recipients=[BUREAU], case_id=case))
    return out


async def wait_exit(proc: subprocess.Popen[bytes], timeout_s: float) -> int:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while proc.poll() is None:
        if loop.time() > deadline:
            proc.kill()
            raise AssertionError("router process did not end in time")
        await asyncio.sleep(0.1)
    return proc.returncode


async def logged(path: Path, text: str, timeout_s: float = 60) -> None:
    """Wait until a router's log says ``text`` (it has started, it has delivered...)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        if path.exists() and text in path.read_text():
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"{path.name} never logged {text!r}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def check_exactly_once_in_order(bus: Bus, sent: list[Envelope]) -> None:
    """The proofs every fault test ends with."""
    raw = await bus.inbox(BUREAU, want=len(sent), timeout_s=120, settle_s=2)
    delivered = bus.envelopes(raw)
    ids = [e.message_id for e in delivered]
    twice, lost = len(ids) - len(set(ids)), {e.message_id for e in sent} - set(ids)
    assert not twice and not lost, f"{twice} deliveries seen twice, {len(lost)} messages lost"
    seqs: dict[str, list[int]] = defaultdict(list)
    for e in delivered:
        seqs[e.case_id].append(int(bus.payload(e).transfer_letter_no.split("#")[1]))  # type: ignore[attr-defined]
    for case, order in seqs.items():
        assert order == sorted(order), f"case {case} out of order"

    pool = await asyncpg.create_pool(bus.settings.database_url, min_size=1, max_size=4)
    try:
        counts = await pool.fetch(
            "SELECT message_id, count(*) AS n FROM audit_entries WHERE event_kind = 'accepted' "
            "GROUP BY message_id"
        )
        assert len(counts) == len(sent) and all(r["n"] == 1 for r in counts)

        # A recipient using the inbox helper handles each message once, in per-case order.
        await pool.execute(
            "CREATE TABLE t_handled (n serial, message_id uuid, case_id text, seq int)"
        )

        async def handle(conn: asyncpg.Connection, env: Envelope, _: object) -> None:
            seq = int(bus.payload(env).transfer_letter_no.split("#")[1])  # type: ignore[attr-defined]
            await conn.execute(
                "INSERT INTO t_handled (message_id, case_id, seq) VALUES ($1, $2, $3)",
                env.message_id,
                env.case_id,
                seq,
            )

        reader = InboxReader(
            bus.settings,
            agency_id=BUREAU,
            consumer_name="bureau-system",
            handler=handle,
            pool=pool,
        )
        task = asyncio.create_task(reader.run())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while loop.time() < deadline:
            if await pool.fetchval("SELECT count(*) FROM t_handled") >= len(sent):
                break
            await asyncio.sleep(0.3)
        await asyncio.sleep(1)
        await reader.stop()
        await asyncio.wait_for(task, 30)
        rows = await pool.fetch("SELECT message_id, case_id, seq FROM t_handled ORDER BY n")
    finally:
        await pool.close()
    assert len(rows) == len(sent) == len({r["message_id"] for r in rows})
    handled: dict[str, list[int]] = defaultdict(list)
    for r in rows:
        handled[r["case_id"]].append(r["seq"])
    assert all(v == sorted(v) for v in handled.values())


async def load_at(bus: Bus, envelopes: list[Envelope], rate_per_s: float) -> None:
    """Submit at a steady rate; on a broker error, wait and send the same message again."""
    from aiokafka.errors import KafkaError

    for env in envelopes:
        while True:
            try:
                await asyncio.wait_for(bus.submit(env), 20)
                break
            except (KafkaError, TimeoutError):
                await bus.close()
                await asyncio.sleep(0.5)
                try:
                    await bus.setup()
                except KafkaError:
                    continue
        await asyncio.sleep(1 / rate_per_s)


def tail(log_file: Path, chars: int = 4000) -> str:
    return log_file.read_text(errors="replace")[-chars:]


async def router_killed_at(bus: Bus, tmp_path: Path, sent: list[Envelope], failpoint: str) -> None:
    """A router SIGKILLed by ``failpoint`` in its third batch over the backlog ``sent``, then a
    second one started: every message arrives once, in order."""
    await bus.submit(*sent)
    first = bus.router_process(failpoints=f"{failpoint}:3", log_file=tmp_path / "r1.log")
    assert await wait_exit(first, 120) == -signal.SIGKILL
    second = bus.router_process(log_file=tmp_path / "r2.log")
    try:
        await check_exactly_once_in_order(bus, sent)
    finally:
        stop(second)


async def two_routers_one_killed(bus: Bus, tmp_path: Path, sent: list[Envelope]) -> None:
    """Two router replicas share the partitions under load; one is SIGKILLed once both have
    delivered. The survivor takes its partitions over: every message arrives once, in order;
    then a graceful stop finishes the batch in flight and leaves the group."""
    logs = {name: tmp_path / f"{name}.log" for name in ("a", "b")}
    a = bus.router_process(router_id="router-a", log_file=logs["a"])
    b = bus.router_process(router_id="router-b", log_file=logs["b"])
    try:
        await logged(logs["a"], "router.started")
        await logged(logs["b"], "router.started")
        load = asyncio.create_task(load_at(bus, sent, rate_per_s=60))
        # Both replicas take part before the kill: each was given some of the partitions.
        await logged(logs["a"], "router.delivered")
        await logged(logs["b"], "router.delivered")
        a.kill()
        assert await wait_exit(a, 10) == -signal.SIGKILL
        await asyncio.wait_for(load, 120)
        await check_exactly_once_in_order(bus, sent)
        b.send_signal(signal.SIGTERM)
        assert await wait_exit(b, 30) == 0
        assert "router.stopped" in logs["b"].read_text()
    finally:
        stop(a)
        stop(b)
