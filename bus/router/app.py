"""Wiring a router from settings: the same for ``casebus router``, tests and the demo."""

from __future__ import annotations

import asyncio
import functools
import gc
import signal
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import asyncpg
import structlog

from bus.agencies import load_registry
from bus.agency_db import PgKeyStore
from bus.audit.checkpoint import CheckpointSigner
from bus.audit.checkpointer import Checkpointer
from bus.audit.log import StoredCheckpoint
from bus.audit.witnessing import WitnessPolicy
from bus.db import create_pool, migrate
from bus.errors import ConfigError
from bus.provision import OwnKey, ensure_registered
from bus.router.service import Router
from bus.router.tree_heads import TreeHeadPublisher
from bus.router.witnessed import WitnessWatch
from bus.routing import load_policy
from bus.settings import Settings
from bus.signing import load_signer

__all__ = ["run_router"]

log = structlog.get_logger("casebus.router")


def _witness_gate(
    policy: WitnessPolicy | None, pool: asyncpg.Pool
) -> Callable[[StoredCheckpoint], Awaitable[str | None]] | None:
    """What the tree-head publisher asks before it publishes: the cosigned note when the
    witness policy is met; None when there is no policy (CASEBUS_AUDIT_WITNESSES empty)."""
    return None if policy is None else functools.partial(policy.cosigned, pool)


def _witness_watch(
    settings: Settings, policy: WitnessPolicy | None, pool: asyncpg.Pool
) -> WitnessWatch | None:
    """How long the log has gone unwitnessed, under a witness policy; failing closed after
    CASEBUS_AUDIT_WITNESS_FAIL_CLOSED_AFTER_S, which means nothing without witnesses."""
    limit_s = settings.audit_witness_fail_closed_after_s
    if policy is None:
        if limit_s is not None:
            raise ConfigError(
                "CASEBUS_AUDIT_WITNESS_FAIL_CLOSED_AFTER_S is set but CASEBUS_AUDIT_WITNESSES "
                "is empty: there is no witness whose absence could close the bus"
            )
        return None
    return WitnessWatch(pool, policy, fail_closed_after_s=limit_s)


_GC_THRESHOLDS = (20_000, 20, 20)
"""The collector's thresholds in a process that is only a router. A batch's verdicts, envelopes
and leaves (hundreds of messages) live until the batch is done, so at Python's 700 the
collector walked them again and again and found almost nothing: 1.9 % of the router's CPU in
a bench run, 0.4 % with these (deploy/CAPACITY.md §8.10). Garbage in cycles waits a little
longer to be freed."""


async def run_router(
    settings: Settings,
    *,
    handle_signals: bool = True,
    stop_event: asyncio.Event | None = None,
    freeze_gc: bool = False,
) -> None:
    """Migrate (a no-op on a current schema), check the agencies and the bus key are
    registered (:func:`~bus.provision.ensure_registered`), then route and publish tree heads
    until SIGTERM/SIGINT (or until ``stop_event`` is set, for callers that run it as a task).

    ``freeze_gc`` (for a process that is only a router, as ``casebus router``): once set up,
    move every object made so far — modules, schemas, models, registry, policy — out of the
    garbage collector's reach. They live as long as the process, yet each full collection walked
    them and collected nothing (the before/after figures are in deploy/CAPACITY.md). Then
    collect the young generation every :data:`_GC_THRESHOLDS` allocations rather than 700."""
    policy_of_witnesses = WitnessPolicy.parse(
        settings.audit_witnesses, settings.audit_witness_quorum
    )
    await migrate(settings.database_url)
    registry = load_registry(settings.agencies_file)
    policy = load_policy(settings.routing_policy_file, registry)
    signer = load_signer(settings.bus_key_file, agency_id="casebus")
    # Ed25519 log key (+ an SM2 line when the bus key is SM2): bus/audit/checkpoint.py says why.
    checkpoint_signer = CheckpointSigner.load(signer, settings.audit_log_key_file)
    # A replica frozen (or cut off) inside its audit transaction holds the audit log's lock:
    # every other replica's audit waited for it (seen in bench/faults_loop.py, 80 s until the
    # frozen one was let go). PostgreSQL ends such a session after 10 s; the replica, if it
    # comes back, retries its idempotent audit on a new connection.
    pool = await create_pool(
        settings.database_url, min_size=2, max_size=8, idle_in_transaction_ms=10_000
    )
    try:
        # The bus key signs receipts and tree heads: the owner registers it, not the router.
        own = OwnKey.of(signer, settings.bus_key_file, valid_from=datetime.now(UTC))
        async with pool.acquire() as conn:
            await ensure_registered(conn, registry=registry, keys=[own])
        watch = _witness_watch(settings, policy_of_witnesses, pool)
        router = Router(
            settings,
            pool=pool,
            keystore=PgKeyStore(pool),
            registry=registry,
            policy=policy,
            signer=signer,
            router_id=settings.router_id,
            max_batch=settings.router_max_batch,
            log_gate=None if watch is None else watch.refusal,
        )
        heads = TreeHeadPublisher(
            settings,
            checkpointer=Checkpointer(
                pool,
                origin=settings.audit_origin,
                private_key=checkpoint_signer,
            ),
            signer=signer,
            procuratorates=[a.id for a in registry.of_kind("procuratorate")],
            witnessed=_witness_gate(policy_of_witnesses, pool),
            watch=watch,
        )

        def stop() -> None:
            router.stop()
            heads.stop()

        if handle_signals:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop)
        waiter = None
        if stop_event is not None:

            async def wait_for_stop() -> None:
                await stop_event.wait()
                stop()

            waiter = asyncio.create_task(wait_for_stop())
        if freeze_gc:
            gc.collect()
            gc.freeze()
            gc.set_threshold(*_GC_THRESHOLDS)
            log.info(
                "router.gc_frozen", objects=gc.get_freeze_count(), thresholds=gc.get_threshold()
            )
        try:
            await asyncio.gather(router.run(), heads.run())
        finally:
            if waiter is not None:
                waiter.cancel()
    finally:
        await pool.close()
