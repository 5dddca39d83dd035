"""The procuratorate's audit monitor: it remembers every checkpoint it has seen and checks each
new one against them with a consistency proof, so a split view or a rewritten history raises
an alarm the moment the bus publishes a head that does not extend the last one.

Given witnesses' keys, it also requires a quorum of their cosignatures on every head
(alarm ``unwitnessed`` otherwise): a head the witnesses did not vouch for is not kept, so
the procuratorate never holds as evidence what the witnesses refused.

Under the 国密 profile (the registry holds an ``sm2-sm3`` key for ``casebus``, or the caller
names the bus's SM2 key) every head must also carry the bus's SM2 line beside the log's
Ed25519 one (:mod:`bus.audit.checkpoint` says why there are two); a head without it, or with a
forged one, raises ``bad_signature`` and is not kept.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import asyncpg
import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from prometheus_client import Counter, Gauge

from bus.agency_db import agency_keys
from bus.audit.checkpoint import Checkpoint, VerifierKey, verify_signed_checkpoint
from bus.audit.cosignature import verify_cosignature
from bus.audit.log import AuditLog
from bus.audit.merkle import verify_consistency
from bus.codec import default_codec
from bus.db import Conn
from bus.errors import CasebusError, CheckpointError, ProofError
from bus.inbox import InboxReader
from bus.models import Envelope
from bus.settings import Settings
from bus.signing import SM2_SM3

__all__ = [
    "DatabaseProofSource",
    "Monitor",
    "Observation",
    "ProofSource",
    "registry_sm2_keys",
    "registry_sm2_since_ms",
    "run_monitor",
]

log = structlog.get_logger("casebus.audit.monitor")

ALARMS = Counter(
    "casebus_audit_monitor_alarms_total",
    "Checkpoints the monitor refused (bad signature, inconsistent history, split view).",
    ["kind"],
)
FAILED = Gauge(
    "casebus_audit_monitor_failed",
    "1 once the monitor has seen a checkpoint that does not extend what it saw before.",
)
SEEN_SIZE = Gauge("casebus_audit_monitor_tree_size", "Size of the latest verified checkpoint.")

AlarmKind = Literal[
    "bad_signature", "inconsistent", "split_view", "proof_unavailable", "unwitnessed"
]


async def registry_sm2_keys(db: Conn | asyncpg.Pool) -> tuple[bytes, ...]:
    """The 65-byte points of every ``sm2-sm3`` key the registry holds for ``casebus``: the keys
    whose SM2 line a checkpoint must carry (one of them) under the 国密 profile; empty under
    the default profile. Revoked and expired keys count too: a checkpoint signed before a
    rotation still carries the old key's line, and the history itself is held by the log's
    Ed25519 signature and the witnesses, not by this line."""
    return tuple(k.public_key for k in await agency_keys(db, "casebus") if k.algorithm == SM2_SM3)


async def registry_sm2_since_ms(db: Conn | asyncpg.Pool) -> int | None:
    """When the registry's first ``sm2-sm3`` key of ``casebus`` became valid (Unix ms), or None:
    checkpoints made before a deployment moved to the 国密 profile carry no SM2 line and are not
    expected to (a mixed registry during the migration)."""
    starts = [k.valid_from for k in await agency_keys(db, "casebus") if k.algorithm == SM2_SM3]
    return int(min(starts).timestamp() * 1000) if starts else None


class ProofSource(Protocol):
    """Where the monitor asks for consistency proofs (the bus's proof service)."""

    async def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        """The proof that the tree of ``old_size`` is a prefix of the tree of ``new_size``."""
        ...


class DatabaseProofSource:
    """Proofs straight from the bus's database (tests, and a monitor run beside the bus)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._log = AuditLog()

    async def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        """See :class:`ProofSource`."""
        return await self._log.consistency_proof(self._pool, old_size, new_size)


@dataclass(frozen=True, slots=True)
class Observation:
    """What the monitor concluded about one checkpoint."""

    ok: bool
    tree_size: int | None
    alarm: AlarmKind | None = None
    detail: str = ""


class Monitor:
    """Checks checkpoints of one log, keeping what it saw in its own tables."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        origin: str,
        log_key: Ed25519PublicKey,
        proofs: ProofSource,
        witnesses: tuple[VerifierKey, ...] = (),
        quorum: int | None = None,
        sm2_keys: Sequence[bytes] | None = None,
    ) -> None:
        """``sm2_keys``: the bus's SM2 points whose line every head must carry; None (the
        default) reads them from the registry (:func:`registry_sm2_keys`) at each head, so
        an sm2-sm3 bus key registered later is required from then on."""
        self._pool = pool
        self._origin = origin
        self._key = log_key
        self._proofs = proofs
        self._witnesses = witnesses
        self._quorum = len(witnesses) if quorum is None else quorum
        self._sm2_keys = None if sm2_keys is None else tuple(sm2_keys)

    def _unwitnessed(self, note: str) -> str | None:
        """Why ``note`` lacks its quorum of cosignatures, or None."""
        good = 0
        for key in self._witnesses:
            try:
                verify_cosignature(note, key)
            except CheckpointError as e:
                if e.reason != "unknown_key":
                    return f"forged cosignature: {e}"
                continue
            good += 1
        if good < self._quorum:
            return f"cosigned by {good} of the {len(self._witnesses)} witnesses, not {self._quorum}"
        return None

    async def _alarm(
        self, kind: AlarmKind, detail: str, note: str, size: int | None
    ) -> Observation:
        ALARMS.labels(kind=kind).inc()
        if kind != "proof_unavailable":
            FAILED.set(1)
        log.error("audit.monitor_alarm", alarm=kind, detail=detail, tree_size=size)
        await self._pool.execute(
            "INSERT INTO monitor_alarms (origin, kind, tree_size, detail, note) "
            "VALUES ($1, $2, $3, $4, $5)",
            self._origin,
            kind,
            size,
            detail,
            note,
        )
        return Observation(False, size, kind, detail)

    async def observe(self, note: str) -> Observation:
        """Verify a signed checkpoint against everything seen before; keep it when it holds."""
        sm2_keys = self._sm2_keys
        if sm2_keys is None:
            sm2_keys = await registry_sm2_keys(self._pool)
        try:
            cp = verify_signed_checkpoint(note, self._origin, self._key, sm2_keys=sm2_keys)
        except ProofError as e:
            return await self._alarm("bad_signature", str(e), note, None)
        if self._witnesses and (why := self._unwitnessed(note)) is not None:
            return await self._alarm("unwitnessed", why, note, cp.size)
        async with self._pool.acquire() as conn:
            same = await conn.fetchrow(
                "SELECT root_hash FROM monitor_checkpoints WHERE origin = $1 AND tree_size = $2",
                self._origin,
                cp.size,
            )
            if same is not None:
                if bytes(same["root_hash"]) != cp.root_hash:
                    return await self._alarm(
                        "split_view",
                        f"two different roots signed for size {cp.size}",
                        note,
                        cp.size,
                    )
                return Observation(True, cp.size)
            # Check against the nearest seen checkpoints on both sides: heads may arrive late.
            below = await conn.fetchrow(
                "SELECT tree_size, root_hash FROM monitor_checkpoints WHERE origin = $1 "
                "AND tree_size < $2 ORDER BY tree_size DESC LIMIT 1",
                self._origin,
                cp.size,
            )
            above = await conn.fetchrow(
                "SELECT tree_size, root_hash FROM monitor_checkpoints WHERE origin = $1 "
                "AND tree_size > $2 ORDER BY tree_size LIMIT 1",
                self._origin,
                cp.size,
            )
        pairs = []
        if below is not None and below["tree_size"] > 0:
            pairs.append((below["tree_size"], bytes(below["root_hash"]), cp.size, cp.root_hash))
        if above is not None and cp.size > 0:
            pairs.append((cp.size, cp.root_hash, above["tree_size"], bytes(above["root_hash"])))
        for old_size, old_root, new_size, new_root in pairs:
            try:
                proof = await self._proofs.consistency_proof(old_size, new_size)
            except (CasebusError, OSError) as e:
                return await self._alarm(
                    "proof_unavailable", f"no proof {old_size}->{new_size}: {e}", note, cp.size
                )
            try:
                verify_consistency(old_size, new_size, old_root, new_root, proof)
            except ProofError as e:
                return await self._alarm(
                    "inconsistent",
                    f"checkpoint {new_size} does not extend checkpoint {old_size}: {e}",
                    note,
                    cp.size,
                )
        await self._keep(cp, note)
        return Observation(True, cp.size)

    async def _keep(self, cp: Checkpoint, note: str) -> None:
        await self._pool.execute(
            "INSERT INTO monitor_checkpoints (origin, tree_size, root_hash, timestamp_ms, note) "
            "VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            self._origin,
            cp.size,
            cp.root_hash,
            cp.timestamp_ms,
            note,
        )
        latest = await self._pool.fetchval(
            "SELECT max(tree_size) FROM monitor_checkpoints WHERE origin = $1", self._origin
        )
        SEEN_SIZE.set(latest or 0)
        log.info("audit.monitor_verified", tree_size=cp.size, root_hash=cp.root_hash.hex())


async def run_monitor(
    settings: Settings,
    *,
    pool: asyncpg.Pool,
    log_key: Ed25519PublicKey,
    proofs: ProofSource,
    agency_id: str = "ygh.procuratorate",
    stop_event: asyncio.Event | None = None,
    witnesses: tuple[VerifierKey, ...] = (),
    quorum: int | None = None,
    sm2_keys: Sequence[bytes] | None = None,
) -> None:
    """Follow ``audit.tree_head`` messages in the procuratorate's inbox and check each one.

    Runs in its own consumer group, so it sees every head whatever else reads the inbox.
    ``sm2_keys`` as for :class:`Monitor` (None: the registry's).
    """
    monitor = Monitor(
        pool,
        origin=settings.audit_origin,
        log_key=log_key,
        proofs=proofs,
        witnesses=witnesses,
        quorum=quorum,
        sm2_keys=sm2_keys,
    )
    codec = default_codec()

    async def handle(conn: Conn, envelope: Envelope, record: object) -> None:
        if envelope.kind != "audit.tree_head":
            return
        _, _, head = codec.decode_payload_model(envelope.payload, kind="audit.tree_head")
        await monitor.observe(head.checkpoint)  # type: ignore[attr-defined]

    reader = InboxReader(
        settings, agency_id=agency_id, consumer_name="audit-monitor", handler=handle, pool=pool
    )
    task = asyncio.create_task(reader.run())
    try:
        if stop_event is None:
            await task
        else:
            await stop_event.wait()
    finally:
        await reader.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await task
