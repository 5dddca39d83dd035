"""The audit log on the real PostgreSQL: appends, proofs, checkpoints, bundles, and tampering
by someone with the database superuser's powers."""

from __future__ import annotations

import asyncio
import base64
import json
import random
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
from buskit import signed_ack
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bus.audit.checkpoint import verify_signed_checkpoint
from bus.audit.checkpointer import Checkpointer
from bus.audit.events import message_leaf
from bus.audit.evidence import build_bundle, verify_bundle
from bus.audit.log import AuditLog, AuditRecord
from bus.audit.merkle import (
    CompactRange,
    leaf_hash,
    root_hash,
    verify_consistency,
    verify_inclusion,
)
from bus.audit.monitor import DatabaseProofSource, Monitor
from bus.audit.verify import verify_log
from bus.errors import BundleError
from bus.party import Party, make_party

ORIGIN = "test.casebus/audit"


def _records(n: int, *, case: str = "YGH-1") -> list[AuditRecord]:
    return [
        AuditRecord("accepted", uuid.uuid4(), case, f"leaf {uuid.uuid4()}".encode())
        for _ in range(n)
    ]


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(database_url, min_size=2, max_size=6)
    yield pool
    await pool.close()


@pytest.fixture
def log_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


async def _append(pool: asyncpg.Pool, records: list[AuditRecord]) -> list[int]:
    async with pool.acquire() as conn, conn.transaction():
        return [e.index for e in await AuditLog().append(conn, records)]


async def _leaves(pool: asyncpg.Pool) -> list[bytes]:
    rows = await pool.fetch("SELECT leaf FROM audit_entries ORDER BY idx")
    return [bytes(r["leaf"]) for r in rows]


async def test_appends_get_consecutive_indexes_and_repeat_appends_keep_theirs(
    pool: asyncpg.Pool,
) -> None:
    first = _records(5)
    assert await _append(pool, first) == [0, 1, 2, 3, 4]
    second = _records(3)
    # A batch mixing old and new records: the old keep their index, the new follow on.
    assert await _append(pool, [first[1], *second, first[4]]) == [1, 5, 6, 7, 4]
    assert await AuditLog().size(pool) == 8
    leaves = await _leaves(pool)
    assert leaves == [r.leaf for r in first + second]
    assert await AuditLog().root(pool, 8) == root_hash(leaves)


async def test_appends_going_on_from_a_tail_in_one_transaction_make_the_same_tree(
    pool: asyncpg.Pool,
) -> None:
    # The router appends a batch's submissions, then their receipts, in one transaction; the
    # second append goes on from where the first left the log, without reading it again.
    log = AuditLog()
    await _append(pool, _records(5))  # a log that already has a frontier of 4 + 1
    batches = [_records(n) for n in (3, 1, 6)]
    async with pool.acquire() as conn, conn.transaction():
        tail = None
        indexes = []
        for batch in batches:
            out, tail = await log.append_after(conn, batch, tail)
            indexes += [e.index for e in out]
        repeated, tail = await log.append_after(conn, batches[0][:2], tail)  # known already
    assert indexes == list(range(5, 15))
    assert [(e.index, e.new) for e in repeated] == [(5, False), (6, False)]
    assert tail is not None and tail.size == 15
    leaves = await _leaves(pool)
    assert leaves[5:] == [r.leaf for b in batches for r in b]
    assert await log.root(pool, 15) == root_hash(leaves) == tail.frontier.root()
    # Every subtree the appends stored is the one the leaves make: proofs at each size hold.
    for size in range(1, 16):
        root = root_hash(leaves[:size])
        for index in (0, size // 2, size - 1):
            proof = await log.inclusion_proof(pool, index, size)
            verify_inclusion(leaf_hash(leaves[index]), index, size, proof, root)


async def test_append_outside_a_transaction_is_refused(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        with pytest.raises(Exception, match="inside a transaction"):
            await AuditLog().append(conn, _records(1))


async def test_concurrent_appenders_get_one_sequence_without_gaps(pool: asyncpg.Pool) -> None:
    batches = [_records(random.randint(1, 20)) for _ in range(30)]
    await asyncio.gather(*(_append(pool, b) for b in batches))
    total = sum(len(b) for b in batches)
    indexes = [r["idx"] for r in await pool.fetch("SELECT idx FROM audit_entries ORDER BY idx")]
    assert indexes == list(range(total))
    leaves = await _leaves(pool)
    assert await AuditLog().root(pool, total) == root_hash(leaves)


async def test_proofs_from_stored_nodes_verify_at_every_size(pool: asyncpg.Pool) -> None:
    for n in (1, 2, 3, 7, 16, 5, 33):
        await _append(pool, _records(n))
    log = AuditLog()
    size = await log.size(pool)
    leaves = await _leaves(pool)
    rng = random.Random(7)
    for _ in range(40):
        tree = rng.randint(1, size)
        index = rng.randrange(tree)
        root = root_hash(leaves[:tree])
        verify_inclusion(
            leaf_hash(leaves[index]),
            index,
            tree,
            await log.inclusion_proof(pool, index, tree),
            root,
        )
        old = rng.randint(1, tree)
        verify_consistency(
            old, tree, root_hash(leaves[:old]), root, await log.consistency_proof(pool, old, tree)
        )


async def test_application_role_may_read_and_append_but_never_update_or_delete(
    pool: asyncpg.Pool,
) -> None:
    await _append(pool, _records(2))
    async with pool.acquire() as conn:
        await conn.execute("GRANT casebus_app TO CURRENT_USER")
        try:
            async with conn.transaction():
                await conn.execute("SET LOCAL ROLE casebus_app")
                assert await conn.fetchval("SELECT count(*) FROM audit_entries") == 2
                for sql in (
                    "UPDATE audit_entries SET case_id = 'x' WHERE idx = 0",
                    "DELETE FROM audit_entries WHERE idx = 0",
                    "UPDATE audit_nodes SET hash = hash",
                    "DELETE FROM audit_checkpoints",
                ):
                    with pytest.raises(asyncpg.InsufficientPrivilegeError):
                        async with conn.transaction():
                            await conn.execute(sql)
        finally:
            await conn.execute("REVOKE casebus_app FROM CURRENT_USER")
        # Even the owner cannot: the trigger refuses any change of history.
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await conn.execute("UPDATE audit_entries SET case_id = 'x' WHERE idx = 0")


async def test_checkpoints_are_signed_only_when_the_log_grew(
    pool: asyncpg.Pool, log_key: Ed25519PrivateKey
) -> None:
    checkpointer = Checkpointer(pool, origin=ORIGIN, private_key=log_key)
    assert await checkpointer.checkpoint() is None  # empty log
    await _append(pool, _records(4))
    cp = await checkpointer.checkpoint()
    assert cp is not None and cp.tree_size == 4
    assert await checkpointer.checkpoint() is None  # nothing new
    signed = verify_signed_checkpoint(cp.note, ORIGIN, log_key.public_key())
    assert signed.root_hash == root_hash(await _leaves(pool))


# -- evidence bundles ----------------------------------------------------------------------------


async def _accept(pool: asyncpg.Pool, party: Party, case: str = "YGH-2026-0007") -> uuid.UUID:
    """Audit an accepted message as the router does: the leaf carries the signed value."""
    env = signed_ack(party, recipients=["ygh.police.bureau"], case_id=case)
    value = party.value(env)
    leaf = message_leaf(
        "accepted",
        message_id=env.message_id,
        case_id=case,
        at=datetime.now(UTC),
        value=value,
        key=party.key_record(),
        details={"deliver_to": ["ygh.police.bureau"]},
    )
    await _append(pool, [AuditRecord("accepted", env.message_id, case, leaf)])
    return env.message_id


async def test_a_bundle_verifies_offline_and_any_changed_byte_fails(
    pool: asyncpg.Pool, log_key: Ed25519PrivateKey, tmp_path: Path
) -> None:
    party = make_party("ygh.enforcement.bureau", tmp_path)
    await _append(pool, _records(5))
    message_id = await _accept(pool, party)
    await _append(pool, _records(6))
    await Checkpointer(pool, origin=ORIGIN, private_key=log_key).checkpoint()

    bundle = await build_bundle(pool, message_id)
    verdict = await verify_bundle(bundle, log_key=log_key.public_key())
    assert (verdict.leaf_index, verdict.tree_size, verdict.sender) == (
        5,
        12,
        "ygh.enforcement.bureau",
    )

    text = json.dumps(bundle)
    rng = random.Random(3)
    positions = rng.sample(range(len(text)), 150)
    for pos in positions:
        tampered = text[:pos] + chr(ord(text[pos]) ^ 1) + text[pos + 1 :]
        try:
            changed = json.loads(tampered)
        except json.JSONDecodeError:
            continue  # not even JSON: no verifier would take it
        if changed == bundle:
            continue
        with pytest.raises(BundleError):
            await verify_bundle(changed, log_key=log_key.public_key())
    # Every byte of the binary parts matters too.
    for field in ("envelope", "leaf"):
        raw = bytearray(base64.b64decode(bundle[field]))
        for i in rng.sample(range(len(raw)), 20):
            copy = bytearray(raw)
            copy[i] ^= 0x40
            with pytest.raises(BundleError):
                await verify_bundle(
                    {**bundle, field: base64.b64encode(bytes(copy)).decode()},
                    log_key=log_key.public_key(),
                )
    # Another log's key proves nothing.
    with pytest.raises(BundleError, match="checkpoint_signature"):
        await verify_bundle(bundle, log_key=Ed25519PrivateKey.generate().public_key())


# -- tampering as the superuser --------------------------------------------------------------


async def _as_attacker(superuser_url: str, *sql: str) -> None:
    conn = await asyncpg.connect(superuser_url)
    try:
        async with conn.transaction():
            # Triggers off: the attacker owns the database server.
            await conn.execute("SET LOCAL session_replication_role = replica")
            for statement in sql:
                await conn.execute(statement)
    finally:
        await conn.close()


async def _rebuild_hashes(superuser_url: str) -> None:
    """What a careful attacker does next: recompute every stored hash so the database agrees
    with itself again. Only the signed checkpoints still remember the truth."""
    conn = await asyncpg.connect(superuser_url)
    try:
        async with conn.transaction():
            await conn.execute("SET LOCAL session_replication_role = replica")
            rows = await conn.fetch("SELECT idx, leaf FROM audit_entries ORDER BY idx")
            await conn.execute("DELETE FROM audit_nodes")
            frontier = CompactRange()
            for row in rows:
                h = leaf_hash(bytes(row["leaf"]))
                await conn.execute(
                    "UPDATE audit_entries SET leaf_hash = $2 WHERE idx = $1", row["idx"], h
                )
                frontier, nodes = frontier.extend_with_nodes([h])
                await conn.executemany(
                    "INSERT INTO audit_nodes VALUES ($1, $2, $3)",
                    [(n.start, n.end, n.hash) for n in nodes],
                )
    finally:
        await conn.close()


TAMPERS = {
    "change_one_byte": (
        "UPDATE audit_entries SET leaf = overlay(leaf placing '\\x58'::bytea from 3 for 1) "
        "WHERE idx = {k}",
    ),
    "delete_entry": ("DELETE FROM audit_entries WHERE idx = {k}",),
    "reorder_two": (
        "UPDATE audit_entries SET idx = 999999 WHERE idx = {k}",
        "UPDATE audit_entries SET idx = {k} WHERE idx = {k} + 1",
        "UPDATE audit_entries SET idx = {k} + 1 WHERE idx = 999999",
    ),
}


@pytest.mark.parametrize("tamper", sorted(TAMPERS))
async def test_audit_verify_reports_the_first_tampered_index(
    pool: asyncpg.Pool, log_key: Ed25519PrivateKey, superuser_url: str, tamper: str
) -> None:
    checkpointer = Checkpointer(pool, origin=ORIGIN, private_key=log_key)
    for _ in range(4):
        await _append(pool, _records(9))
        await checkpointer.checkpoint()
    report = await verify_log(pool, log_key=log_key.public_key(), origin=ORIGIN)
    assert report.ok and report.entries == 36 and report.checkpoints == 4

    k = 13
    await _as_attacker(superuser_url, *(s.format(k=k) for s in TAMPERS[tamper]))
    report = await verify_log(pool, log_key=log_key.public_key(), origin=ORIGIN)
    assert not report.ok
    assert report.first_bad_index == k, report.line()


@pytest.mark.parametrize("tamper", sorted(TAMPERS))
async def test_a_covered_up_rewrite_is_caught_by_verify_and_by_the_monitor(
    pool: asyncpg.Pool, log_key: Ed25519PrivateKey, superuser_url: str, tamper: str
) -> None:
    checkpointer = Checkpointer(pool, origin=ORIGIN, private_key=log_key)
    monitor = Monitor(
        pool, origin=ORIGIN, log_key=log_key.public_key(), proofs=DatabaseProofSource(pool)
    )
    for _ in range(3):
        await _append(pool, _records(10))
        cp = await checkpointer.checkpoint()
        assert cp is not None
        assert (await monitor.observe(cp.note)).ok

    k = 21
    statements = [s.format(k=k) for s in TAMPERS[tamper]]
    if tamper == "delete_entry":  # close the gap so the indexes look intact
        statements.append(f"UPDATE audit_entries SET idx = idx - 1 WHERE idx > {k}")
    await _as_attacker(superuser_url, *statements)
    await _rebuild_hashes(superuser_url)

    report = await verify_log(pool, log_key=log_key.public_key(), origin=ORIGIN)
    assert not report.ok
    assert report.first_bad_index == 20  # the last checkpoint that still holds
    assert "rewritten" in (report.problem or "")

    # The bus goes on and signs a head over the rewritten history: the monitor refuses it.
    await _append(pool, _records(5))
    cp = await checkpointer.checkpoint()
    assert cp is not None
    seen = await monitor.observe(cp.note)
    assert not seen.ok and seen.alarm == "inconsistent"
    alarms = await pool.fetchval("SELECT count(*) FROM monitor_alarms WHERE kind='inconsistent'")
    assert alarms == 1


async def test_monitor_refuses_a_forged_head_and_a_split_view(
    pool: asyncpg.Pool, log_key: Ed25519PrivateKey
) -> None:
    from bus.audit.checkpoint import Checkpoint, sign_checkpoint

    monitor = Monitor(
        pool, origin=ORIGIN, log_key=log_key.public_key(), proofs=DatabaseProofSource(pool)
    )
    await _append(pool, _records(3))
    cp = await Checkpointer(pool, origin=ORIGIN, private_key=log_key).checkpoint()
    assert cp is not None and (await monitor.observe(cp.note)).ok

    forged = sign_checkpoint(
        Checkpoint(ORIGIN, 3, bytes(32), cp.timestamp_ms), ORIGIN, Ed25519PrivateKey.generate()
    )
    assert (await monitor.observe(forged)).alarm == "bad_signature"
    # The real key signing a second root for the same size: a split view.
    split = sign_checkpoint(Checkpoint(ORIGIN, 3, bytes(32), cp.timestamp_ms), ORIGIN, log_key)
    assert (await monitor.observe(split)).alarm == "split_view"


@pytest.mark.parametrize("query", ["_EXISTING", "_NODES"])
async def test_every_cached_plan_of_the_key_lookups_is_an_index_lookup(
    pool: asyncpg.Pool, query: str
) -> None:
    # A pool may reuse generic plans (the adapters' does): the plan PostgreSQL makes without
    # the arrays' values, on tables as empty as at start-up, must still look each key up
    # rather than scan the table (a hash join over audit_nodes made proofs 6x slower).
    from bus.audit import log as audit_log

    types = {"_EXISTING": "uuid[], text[]", "_NODES": "bigint[], bigint[]"}[query]
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        await conn.execute(f"PREPARE lookup({types}) AS {getattr(audit_log, query)}")
        args = "'{}', '{}'"
        plan = "\n".join(
            r[0] for r in await conn.fetch(f"EXPLAIN (COSTS OFF) EXECUTE lookup({args})")
        )
        await conn.execute("DEALLOCATE lookup")
    assert "Index Scan" in plan and "Seq Scan" not in plan and "Hash" not in plan, plan
