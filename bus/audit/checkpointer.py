"""Signing checkpoints of the audit log: a C2SP signed note over (size, root, time).

Safe with several router replicas: a transaction-scoped advisory lock lets one of them sign
at a time, and a size is stored once.
"""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bus.audit.checkpoint import Checkpoint, CheckpointSigner, sign_checkpoint
from bus.audit.log import AuditLog, StoredCheckpoint
from bus.sla.clock import Clock

__all__ = ["Checkpointer"]

_CHECKPOINT_LOCK = 0x636B7074  # "ckpt"

log = structlog.get_logger("casebus.audit")


class Checkpointer:
    """Signs a new checkpoint whenever the log has grown since the last one."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        origin: str,
        private_key: Ed25519PrivateKey | CheckpointSigner,
        audit_log: AuditLog | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._pool = pool
        self._origin = origin
        self._key = private_key
        self._log = audit_log or AuditLog()
        self._clock = clock

    def _now_ms(self) -> int:
        now = self._clock.now() if self._clock is not None else datetime.now(UTC)
        return int(now.timestamp() * 1000)

    async def checkpoint(self) -> StoredCheckpoint | None:
        """Sign and store a checkpoint of the current log; None when nothing grew (or another
        replica is signing right now)."""
        async with self._pool.acquire() as conn, conn.transaction():
            if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", _CHECKPOINT_LOCK):
                return None
            size = await self._log.size(conn)
            latest = await self._log.checkpoint(conn)
            if size == 0 or (latest is not None and latest.tree_size >= size):
                return None
            root = await self._log.root(conn, size)
            timestamp_ms = self._now_ms()
            if latest is not None:
                # A checkpoint's time never goes backwards, whatever the clocks of replicas say.
                timestamp_ms = max(timestamp_ms, latest.timestamp_ms)
            note = sign_checkpoint(
                Checkpoint(self._origin, size, root, timestamp_ms), self._origin, self._key
            )
            stored = StoredCheckpoint(size, root, timestamp_ms, note)
            await self._log.store_checkpoint(conn, stored)
        log.info("audit.checkpoint_signed", tree_size=size, root_hash=root.hex())
        return stored
