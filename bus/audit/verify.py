"""``casebus audit verify``: replay the whole log from the database and check everything.

It streams the entries in index order and checks that indexes have no gaps, that each stored
leaf hash is the hash of the stored leaf, that every stored subtree hash (leaves included)
equals the one recomputed from the leaves, and that every stored checkpoint is signed by the
log's key and names the root recomputed at its size. It stops at the first difference and
reports its index.

All of that is internal consistency: whoever controls the database (the role owning the
tables can switch the append-only triggers off) can rewrite a leaf, rebuild the nodes and
delete the checkpoints, and the replay still passes; only the log's key is out of their reach.
So ``verify`` also takes signed checkpoints held outside the database (the procuratorate's
copy, a file): the log must reach each one's size with the root it signed, and the database
must still hold a signed checkpoint at least that large. Without one, the report says it
checked internal consistency only.

With witnesses' keys (``--witness``) it also checks every stored cosignature by them and that
the log's checkpoints are cosigned by a quorum of them (:func:`judge_witnessing`): a history
the owner rewrote can still be signed with the log's key by the bus, but the witnesses, who
remember what they cosigned, refuse to cosign it.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from bus.audit.checkpoint import Checkpoint, VerifierKey, verify_signed_checkpoint
from bus.audit.log import AuditLog
from bus.audit.merkle import CompactRange, leaf_hash
from bus.audit.witnessing import WitnessingReport, judge_witnessing, load_cosignatures
from bus.errors import ProofError

__all__ = ["HeldCheckpoint", "VerifyReport", "verify_log"]


@dataclass(frozen=True, slots=True)
class HeldCheckpoint:
    """A signed checkpoint kept outside the database, its signature already checked;
    ``source`` (a file name, "the procuratorate's copy") is named in every finding."""

    source: str
    checkpoint: Checkpoint


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """The outcome of a replay: ``ok``, or the first bad index (when one is known) and what
    was wrong; ``held`` are the checkpoints from outside the database it was checked against."""

    ok: bool
    entries: int
    checkpoints: int
    first_bad_index: int | None = None
    problem: str | None = None
    held: tuple[HeldCheckpoint, ...] = ()
    witnessing: WitnessingReport | None = None

    def line(self) -> str:
        """One line for people."""
        if not self.ok:
            where = "" if self.first_bad_index is None else f" at index {self.first_bad_index}"
            return f"FAILED{where}: {self.problem}"
        done = f"OK: {self.entries} entries and {self.checkpoints} checkpoints verified"
        if self.witnessing is not None:
            w = self.witnessing
            done += (
                f"; witnessed up to size {w.witnessed_size} by {w.quorum} of "
                f"{w.witnesses} witnesses"
            )
        if not self.held:
            return (
                f"{done}; internal consistency only: no checkpoint held outside the database "
                "was given, so a history rewritten by whoever controls the database would "
                "pass too (give --checkpoint FILE)"
            )
        top = max(self.held, key=lambda h: h.checkpoint.size)
        more = f" and {len(self.held) - 1} smaller" if len(self.held) > 1 else ""
        return (
            f"{done}; consistent with the checkpoint of size {top.checkpoint.size}{more} held "
            f"outside the database ({top.source})"
        )


def _signed_history_problems(
    held: list[HeldCheckpoint], size: int, latest_signed: int | None
) -> list[str]:
    """What the largest held checkpoint says is missing from the database, before any replay."""
    if not held:
        return []
    top = held[-1]
    n, where = top.checkpoint.size, f"held outside the database ({top.source})"
    problems = []
    if size < n:
        problems.append(
            f"the log has {size} entries, fewer than the {n} of the checkpoint {where}: "
            f"entries in [{size}, {n}) were removed"
        )
    if latest_signed is None:
        problems.append(
            f"the database holds no signed checkpoint, but one of size {n} is {where}: "
            "the database's signed history was removed"
        )
    elif latest_signed < n:
        problems.append(
            f"the database's latest signed checkpoint has size {latest_signed}, but one of "
            f"size {n} is {where}: the database's signed history was cut back"
        )
    return problems


async def verify_log(
    pool: asyncpg.Pool,
    *,
    log_key: Ed25519PublicKey,
    origin: str,
    held: tuple[HeldCheckpoint, ...] = (),
    witnesses: tuple[VerifierKey, ...] = (),
    quorum: int | None = None,
    witness_grace_s: float = 60.0,
    chunk: int = 20_000,
) -> VerifyReport:
    """Replay the log, and hold it to the ``held`` checkpoints and, when ``witnesses`` are
    given, to their cosignatures (``quorum`` of them, default all); see the module docstring."""
    audit_log = AuditLog()
    async with pool.acquire() as conn:
        checkpoints = await audit_log.checkpoints(conn)
        size = await audit_log.size(conn)
        cosignatures = await load_cosignatures(conn) if witnesses else {}
    witnessing = None
    if witnesses:
        witnessing = judge_witnessing(
            checkpoints,
            cosignatures,
            witnesses,
            quorum=len(witnesses) if quorum is None else quorum,
            grace_s=witness_grace_s,
        )
    pending = list(checkpoints)
    given = tuple(sorted(held, key=lambda h: h.checkpoint.size))
    outside = list(given)
    problems = _signed_history_problems(
        outside, size, checkpoints[-1].tree_size if checkpoints else None
    )
    if witnessing is not None:
        problems.extend(witnessing.problems)
    frontier = CompactRange()
    checked = 0
    last_good_checkpoint = 0

    def fail(index: int | None, problem: str | None = None) -> VerifyReport:
        found = "; ".join([*problems, *([problem] if problem else [])])
        return VerifyReport(False, frontier.size, checked, index, found, given, witnessing)

    def check_checkpoints() -> VerifyReport | None:
        nonlocal checked, last_good_checkpoint
        while outside and outside[0].checkpoint.size == frontier.size:
            h = outside.pop(0)
            if frontier.root() != h.checkpoint.root_hash:
                return fail(
                    last_good_checkpoint,
                    f"the root of the log at size {h.checkpoint.size} is not the one signed in "
                    f"the checkpoint held outside the database ({h.source}): history in "
                    f"[{last_good_checkpoint}, {h.checkpoint.size}) was rewritten",
                )
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
    if problems:
        return fail(None)
    return VerifyReport(True, frontier.size, checked, held=given, witnessing=witnessing)
