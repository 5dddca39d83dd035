"""The procuratorate's monitor on the real bus: it follows the tree heads the router publishes
and raises an alarm when the bus signs a head over rewritten history; given witnesses' keys,
it keeps only heads a quorum of them cosigned."""

from __future__ import annotations

import asyncio

import asyncpg
from buskit import Bus, receipt_payload
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from test_audit_log import _as_attacker, _rebuild_hashes

from bus.audit.checkpoint import Checkpoint, sign_checkpoint
from bus.audit.cosignature import add_signature_lines, cosign, cosigner_vkey, parse_cosigner_key
from bus.audit.merkle import root_hash
from bus.audit.monitor import FAILED, DatabaseProofSource, Monitor, run_monitor
from bus.settings import Settings

POLICE = "ygh.police.bureau"
BUREAU = "ygh.enforcement.bureau"


async def _until(pool: asyncpg.Pool, sql: str, want: int, timeout_s: float = 30) -> int:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    value = 0
    while loop.time() < deadline:
        value = int(await pool.fetchval(sql))
        if value >= want:
            break
        await asyncio.sleep(0.2)
    return value


async def test_monitor_follows_tree_heads_and_alarms_on_a_rewrite(
    bus: Bus, superuser_url: str
) -> None:
    police = await bus.party(POLICE)
    log_key = bus.log_key
    pool = await asyncpg.create_pool(bus.settings.database_url, min_size=1, max_size=6)
    stop = asyncio.Event()
    FAILED.set(0)
    try:
        async with bus.router():
            monitor = asyncio.create_task(
                run_monitor(
                    bus.settings,
                    pool=pool,
                    log_key=log_key,
                    proofs=DatabaseProofSource(pool),
                    stop_event=stop,
                )
            )
            await bus.submit(
                *(
                    police.envelope(receipt_payload(i), recipients=[BUREAU], case_id=f"YGH-{i}")
                    for i in range(5)
                )
            )
            seen = await _until(
                pool, "SELECT coalesce(max(tree_size), 0) FROM monitor_checkpoints", 10
            )
            assert seen >= 10  # 5 accepted + 5 delivered entries, verified by the monitor
            assert await pool.fetchval("SELECT count(*) FROM monitor_alarms") == 0
            assert FAILED._value.get() == 0

            # The attacker rewrites one accepted entry and recomputes every stored hash.
            await _as_attacker(
                superuser_url,
                "UPDATE audit_entries SET leaf = overlay(leaf placing '\\x58'::bytea from 3 for 1)"
                " WHERE idx = 2",
            )
            await _rebuild_hashes(superuser_url)
            await bus.submit(
                police.envelope(receipt_payload(9), recipients=[BUREAU], case_id="YGH-9")
            )
            alarms = await _until(
                pool, "SELECT count(*) FROM monitor_alarms WHERE kind = 'inconsistent'", 1
            )
            stop.set()
            await asyncio.wait_for(monitor, 30)
    finally:
        await pool.close()
    assert alarms == 1
    assert FAILED._value.get() == 1  # the alert metric is raised


async def test_with_witness_keys_the_monitor_keeps_only_cosigned_heads(settings: Settings) -> None:
    origin = settings.audit_origin
    log_key, witness_key = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    root = root_hash([b"a", b"b", b"c"])
    note = sign_checkpoint(Checkpoint(origin, 3, root, 1_780_000_000_000), origin, log_key)
    body = note.split("\n\n")[0].encode() + b"\n"
    line = cosign(body, "ygh.court/witness", witness_key, timestamp_s=1_780_000_000).line()
    key = parse_cosigner_key(cosigner_vkey("ygh.court/witness", witness_key.public_key()))
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
    try:
        monitor = Monitor(
            pool,
            origin=origin,
            log_key=log_key.public_key(),
            proofs=DatabaseProofSource(pool),
            witnesses=(key,),
        )
        bare = await monitor.observe(note)
        assert (bare.ok, bare.alarm) == (False, "unwitnessed")
        assert await pool.fetchval("SELECT count(*) FROM monitor_checkpoints") == 0
        forged = note + line[:-4] + ("AAAA" if not line.endswith("AAAA") else "BBBB") + "\n"
        bad = await monitor.observe(forged)
        assert bad.alarm == "unwitnessed" and "forged cosignature" in bad.detail
        good = await monitor.observe(add_signature_lines(note, [line]))
        assert good.ok and good.tree_size == 3
        assert await pool.fetchval("SELECT count(*) FROM monitor_checkpoints") == 1
    finally:
        await pool.close()
