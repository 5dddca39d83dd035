"""The log's side of witnessing: ask witnesses to cosign checkpoints, keep what they return,
and judge whether a log's checkpoints are witnessed.

After the bus signs a checkpoint it submits it to each witness (c2sp.org/tlog-witness) with a
consistency proof from the size that witness last cosigned, as far as this database knows;
a witness that knows better answers 409 with its size, and the request is made once more from
there. Each cosignature returned is checked with the witness's key before it is stored in
``audit_cosignatures``.

:func:`judge_witnessing` is what ``casebus audit verify`` and evidence bundles rely on: only a
cosignature checked with a key given by the verifier counts, never the database's word.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import asyncpg
import httpx
import structlog

from bus.audit.checkpoint import VerifierKey
from bus.audit.cosignature import add_signature_lines, parse_cosigner_key, verify_cosignature
from bus.audit.log import AuditLog, StoredCheckpoint
from bus.db import Executor
from bus.errors import CheckpointError, ConfigError

__all__ = [
    "WitnessEndpoint",
    "WitnessOutcome",
    "WitnessPolicy",
    "WitnessingReport",
    "cosigned_note",
    "judge_witnessing",
    "latest_cosigned_covering",
    "load_cosignatures",
    "request_cosignatures",
]

log = structlog.get_logger("casebus.audit")

_SIZE_CONTENT_TYPE = "text/x.tlog.size"


@dataclass(frozen=True, slots=True)
class WitnessEndpoint:
    """A witness to ask: its submission prefix and its cosigner key."""

    url: str
    key: VerifierKey

    @classmethod
    def parse(cls, spec: str) -> WitnessEndpoint:
        """``<submission prefix URL>=<cosigner vkey>``; a bad one is a :class:`ConfigError`."""
        url, sep, vkey = spec.partition("=")
        if not sep or not url.startswith(("http://", "https://")):
            raise ConfigError(f"witness {spec!r} is not '<URL>=<vkey>'")
        try:
            return cls(url.rstrip("/"), parse_cosigner_key(vkey))
        except CheckpointError as e:
            raise ConfigError(f"witness {spec!r}: {e}") from e


@dataclass(frozen=True, slots=True)
class WitnessOutcome:
    """What one witness said about one checkpoint: 200 and cosigned, or its refusal."""

    witness: str
    tree_size: int
    status: int
    detail: str = ""

    @property
    def cosigned(self) -> bool:
        """Whether a valid cosignature was stored."""
        return self.status == 200


async def load_cosignatures(db: Executor) -> dict[int, list[str]]:
    """Every stored cosignature line, by checkpoint size."""
    out: dict[int, list[str]] = {}
    for r in await db.fetch("SELECT tree_size, line FROM audit_cosignatures ORDER BY tree_size"):
        out.setdefault(int(r["tree_size"]), []).append(str(r["line"]))
    return out


async def cosigned_note(db: Executor, checkpoint: StoredCheckpoint) -> str:
    """The checkpoint's signed note with every stored cosignature line appended."""
    rows = await db.fetch(
        "SELECT line FROM audit_cosignatures WHERE tree_size = $1 ORDER BY witness",
        checkpoint.tree_size,
    )
    return add_signature_lines(checkpoint.note, [str(r["line"]) for r in rows])


async def latest_cosigned_covering(db: Executor, index: int) -> int | None:
    """The size of the latest checkpoint that includes entry ``index`` and carries at least
    one stored cosignature, or None. (Which witnesses, and whether enough, is for the verifier
    to judge with their keys.)"""
    size = await db.fetchval(
        "SELECT max(tree_size) FROM audit_cosignatures WHERE tree_size > $1", index
    )
    return None if size is None else int(size)


async def _last_cosigned(db: Executor, witness: str) -> int:
    size = await db.fetchval(
        "SELECT max(tree_size) FROM audit_cosignatures WHERE witness = $1", witness
    )
    return int(size or 0)


async def _ask(
    pool: asyncpg.Pool,
    http: httpx.AsyncClient,
    witness: WitnessEndpoint,
    cp: StoredCheckpoint,
    audit_log: AuditLog,
) -> WitnessOutcome:
    name = witness.key.name
    old = await _last_cosigned(pool, name)
    for _ in range(2):
        if old > cp.tree_size:
            return WitnessOutcome(name, cp.tree_size, 409, f"witness is at size {old}, ahead")
        proof = []
        if old not in (0, cp.tree_size):
            proof = await audit_log.consistency_proof(pool, old, cp.tree_size)
        lines = "".join(base64.b64encode(p).decode("ascii") + "\n" for p in proof)
        body = f"old {old}\n{lines}\n{cp.note}".encode()
        try:
            r = await http.post(f"{witness.url}/add-checkpoint", content=body)
        except httpx.HTTPError as e:
            return WitnessOutcome(name, cp.tree_size, 0, f"unreachable: {e}")
        if r.status_code == 409 and r.headers.get("content-type", "").startswith(
            _SIZE_CONTENT_TYPE
        ):
            text = r.text.strip()
            if not text.isdigit() or int(text) == old:
                return WitnessOutcome(name, cp.tree_size, 409, f"conflict at size {text[:40]}")
            old = int(text)
            continue
        break
    if r.status_code != 200:
        return WitnessOutcome(name, cp.tree_size, r.status_code, r.text.strip()[:500])
    returned = [line for line in r.text.split("\n") if line]
    try:
        verify_cosignature(add_signature_lines(cp.note, returned), witness.key)
    except CheckpointError as e:
        return WitnessOutcome(name, cp.tree_size, 502, f"returned no valid cosignature: {e}")
    for line in returned:
        # Keep the line by this key only (a witness may return several, e.g. while rotating).
        try:
            cosignature = verify_cosignature(add_signature_lines(cp.note, [line]), witness.key)
        except CheckpointError:
            continue
        await pool.execute(
            "INSERT INTO audit_cosignatures (tree_size, witness, line, timestamp_s) "
            "VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            cp.tree_size,
            name,
            line,
            cosignature.timestamp_s,
        )
    return WitnessOutcome(name, cp.tree_size, 200)


async def request_cosignatures(
    pool: asyncpg.Pool,
    witnesses: Sequence[WitnessEndpoint],
    *,
    http: httpx.AsyncClient | None = None,
    checkpoint: StoredCheckpoint | None = None,
    audit_log: AuditLog | None = None,
) -> list[WitnessOutcome]:
    """Ask every witness, concurrently, to cosign ``checkpoint`` (default: the latest); one
    outcome each, in the order of ``witnesses``."""
    audit_log = audit_log or AuditLog()
    cp = checkpoint or await audit_log.checkpoint(pool)
    if cp is None:
        return []
    own = http is None
    client = http or httpx.AsyncClient(timeout=10.0)
    try:
        # All at once: a checkpoint waits for its slowest witness, not for the sum of them
        # (bench/audit.py: asked one after another, two took 1.8 times as long as one).
        outcomes = list(
            await asyncio.gather(*(_ask(pool, client, w, cp, audit_log) for w in witnesses))
        )
    finally:
        if own:
            await client.aclose()
    for o in outcomes:
        event = "audit.cosigned" if o.cosigned else "audit.witness_refused"
        log.info(event, witness=o.witness, tree_size=o.tree_size, status=o.status, detail=o.detail)
    return outcomes


@dataclass(frozen=True, slots=True)
class WitnessPolicy:
    """Publish a checkpoint only once ``quorum`` of ``witnesses`` cosigned it (k of n)."""

    witnesses: tuple[WitnessEndpoint, ...]
    quorum: int

    def __post_init__(self) -> None:
        if not 1 <= self.quorum <= len(self.witnesses):
            raise ConfigError(
                f"CASEBUS_AUDIT_WITNESS_QUORUM {self.quorum} is not between 1 and the "
                f"{len(self.witnesses)} witnesses of CASEBUS_AUDIT_WITNESSES"
            )

    @classmethod
    def parse(cls, witnesses: str, quorum: int | None) -> WitnessPolicy | None:
        """From the settings' space-separated ``<URL>=<vkey>`` list; None when it is empty."""
        endpoints = tuple(WitnessEndpoint.parse(w) for w in witnesses.split())
        if not endpoints:
            return None
        return cls(endpoints, len(endpoints) if quorum is None else quorum)

    async def latest_quorum_size(self, db: Executor) -> int | None:
        """The size of the newest checkpoint a quorum of these witnesses cosigned (as stored:
        each line was checked with its witness's key before it was), or None."""
        # Newest first, stopping at the first with a quorum: the primary key read backwards
        # a few rows deep. max() over every group read the whole table on every request, which
        # grows with every checkpoint (deploy/CAPACITY.md §8.5 has the figures).
        size = await db.fetchval(
            "SELECT tree_size FROM audit_cosignatures WHERE witness = ANY($1::text[]) "
            "GROUP BY tree_size HAVING count(*) >= $2 ORDER BY tree_size DESC LIMIT 1",
            [w.key.name for w in self.witnesses],
            self.quorum,
        )
        return None if size is None else int(size)

    async def cosigned(
        self,
        pool: asyncpg.Pool,
        checkpoint: StoredCheckpoint,
        *,
        http: httpx.AsyncClient | None = None,
    ) -> str | None:
        """The checkpoint's note with its cosignatures if a quorum cosigned it, else None."""
        outcomes = await request_cosignatures(
            pool, self.witnesses, http=http, checkpoint=checkpoint
        )
        have = sum(o.cosigned for o in outcomes)
        if have < self.quorum:
            log.warning(
                "audit.quorum_not_reached",
                tree_size=checkpoint.tree_size,
                cosigned=have,
                quorum=self.quorum,
            )
            return None
        return await cosigned_note(pool, checkpoint)


@dataclass(frozen=True, slots=True)
class WitnessingReport:
    """How far the log is witnessed: the largest checkpoint cosigned by ``quorum`` of the
    given witnesses (0 if none), and what is wrong, if anything."""

    witnessed_size: int
    quorum: int
    witnesses: int
    problems: tuple[str, ...] = ()


def judge_witnessing(
    checkpoints: Iterable[StoredCheckpoint],
    cosignatures: Mapping[int, Sequence[str]],
    witnesses: Sequence[VerifierKey],
    *,
    quorum: int,
    grace_s: float = 60.0,
    now_ms: int | None = None,
) -> WitnessingReport:
    """Check every stored cosignature by a given witness, and that the log's latest checkpoint
    older than ``grace_s`` is covered by a checkpoint that ``quorum`` witnesses cosigned.

    A cosignature line claiming a given witness that does not verify is a forgery; lines by
    other keys are ignored. A checkpoint left uncosigned past the grace period means the
    witnesses refused it (it is not consistent with what they cosigned before) or were never
    asked: either way nobody vouches that history was not rewritten.
    """
    if not 1 <= quorum <= len(witnesses):
        raise ConfigError(f"quorum {quorum} is not between 1 and {len(witnesses)} witnesses")
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    problems: list[str] = []
    witnessed = 0
    stale: StoredCheckpoint | None = None
    for cp in checkpoints:
        note = add_signature_lines(cp.note, list(cosignatures.get(cp.tree_size, ())))
        valid = 0
        for key in witnesses:
            try:
                verify_cosignature(note, key)
            except CheckpointError as e:
                if e.reason != "unknown_key":
                    problems.append(f"checkpoint {cp.tree_size}: forged cosignature: {e}")
                continue
            valid += 1
        if valid >= quorum:
            witnessed = max(witnessed, cp.tree_size)
        if cp.timestamp_ms <= now_ms - grace_s * 1000:
            stale = cp if stale is None or cp.tree_size > stale.tree_size else stale
    if stale is not None and stale.tree_size > witnessed:
        problems.append(
            f"the checkpoint of size {stale.tree_size} is not covered by one that {quorum} of "
            f"the {len(witnesses)} witnesses cosigned (witnessed up to size {witnessed}): "
            "the witnesses refused it as inconsistent with what they cosigned before, or "
            "were never asked"
        )
    return WitnessingReport(witnessed, quorum, len(witnesses), tuple(problems))
