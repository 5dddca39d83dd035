"""``casebus audit verify``: replay the whole log from the database and check everything.

It streams the entries in index order and checks that indexes have no gaps, that each stored
leaf hash is the hash of the stored leaf, that every stored subtree hash (leaves included)
equals the one recomputed from the leaves, and that every stored checkpoint is signed by the
log's key and names the root recomputed at its size. It stops at the first difference and
reports its index.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from bus.audit.checkpoint import verify_signed_checkpoint
from bus.audit.log import AuditLog
from bus.audit.merkle import CompactRange, leaf_hash
from bus.errors import ProofError

__all__ = ["VerifyReport", "verify_log"]


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """The outcome of a replay: ``ok``, or the first bad index and what was wrong there."""

    ok: bool
    entries: int
    checkpoints: int
    first_bad_index: int | None = None
    problem: str | None = None

    def line(self) -> str:
        """One line for people."""
        if self.ok:
            return f"OK: {self.entries} entries and {self.checkpoints} checkpoints verified"
        return f"FAILED at index {self.first_bad_index}: {self.problem}"


async def verify_log(
    pool: asyncpg.Pool,
    *,
    log_key: Ed25519PublicKey,
    origin: str,
    chunk: int = 20_000,
) -> VerifyReport:
    """Replay the log; see the module docstring for what is checked."""
    audit_log = AuditLog()
    async with pool.acquire() as conn:
        checkpoints = await audit_log.checkpoints(conn)
        size = await audit_log.size(conn)
    pending = list(checkpoints)
    frontier = CompactRange()
    checked = 0
    last_good_checkpoint = 0

    def fail(index: int, problem: str) -> VerifyReport:
        return VerifyReport(False, frontier.size, checked, index, problem)

    def check_checkpoints() -> VerifyReport | None:
        nonlocal checked, last_good_checkpoint
        while pending and pending[0].tree_size == frontier.size:
            cp = pending.pop(0)
            try:
                signed = verify_signed_checkpoint(cp.note, origin, log_key)
            except ProofError as e:
                return fail(cp.tree_size - 1, f"checkpoint {cp.tree_size}: {e}")
            if (signed.size, signed.root_hash) != (cp.tree_size, cp.root_hash):
                return fail(
                    cp.tree_size - 1,
                    f"checkpoint {cp.tree_size}: stored columns differ from its signed note",
                )
            if frontier.root() != cp.root_hash:
                return fail(
                    last_good_checkpoint,
                    f"the signed checkpoint of size {cp.tree_size} does not match the log: "
                    f"history in [{last_good_checkpoint}, {cp.tree_size}) was rewritten",
                )
            last_good_checkpoint = cp.tree_size
            checked += 1
        return None

    if (bad := check_checkpoints()) is not None:
        return bad
    async with pool.acquire() as conn:
        start = 0
        while start < size:
            end = min(start + chunk, size)
            rows = await conn.fetch(
                "SELECT idx, leaf, leaf_hash FROM audit_entries WHERE idx >= $1 AND idx < $2 "
                "ORDER BY idx",
                start,
                end,
            )
            stored_nodes = {
                (r["start_idx"], r["end_idx"]): bytes(r["hash"])
                for r in await conn.fetch(
                    "SELECT start_idx, end_idx, hash FROM audit_nodes "
                    "WHERE end_idx > $1 AND end_idx <= $2",
                    start,
                    end,
                )
            }
            for row in rows:
                index = frontier.size
                if row["idx"] != index:
                    return fail(index, f"entry {index} is missing (next stored is {row['idx']})")
                computed = leaf_hash(bytes(row["leaf"]))
                if computed != bytes(row["leaf_hash"]):
                    return fail(index, "the stored leaf hash is not the hash of the stored leaf")
                frontier, nodes = frontier.extend_with_nodes([computed])
                for node in nodes:
                    stored = stored_nodes.get((node.start, node.end))
                    if stored != node.hash:
                        what = "missing" if stored is None else "different"
                        return fail(
                            index if node.end - node.start == 1 else node.start,
                            f"stored hash of subtree [{node.start}, {node.end}) is {what}",
                        )
                if (bad := check_checkpoints()) is not None:
                    return bad
            if len(rows) < end - start:
                return fail(frontier.size, f"entry {frontier.size} is missing")
            start = end
    if pending:
        cp = pending[0]
        return fail(
            last_good_checkpoint,
            f"checkpoint {cp.tree_size} was signed but the log has {size} entries: entries in "
            f"[{last_good_checkpoint}, {cp.tree_size}) were removed or rewritten",
        )
    return VerifyReport(True, frontier.size, checked)
