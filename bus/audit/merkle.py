"""RFC 6962 / RFC 9162 Merkle tree hashing, proofs and proof verification.

Pure: it needs the standard library and :class:`~bus.errors.ProofError` from ``bus/errors.py``,
which needs nothing else either, so a procuratorate verifier can read the two in one sitting and
run them with no third-party package.

Terms used throughout:

* A *leaf* is the raw bytes of one audited event; its *leaf hash* is SHA-256(0x00 || leaf).
* ``MTH(D[a:b])`` is the RFC 6962 Merkle Tree Hash of leaves ``[a, b)``.
* A *perfect subtree* is a range ``[start, end)`` whose width ``end - start`` is a power of two
  and whose ``start`` is a multiple of that width. Every complete node of the tree is one, and
  a log never has to recompute them: once written, their hashes never change.
* A :data:`SubtreeHash` callable returns ``MTH`` of a perfect subtree. The ``*_from`` functions
  only ever ask it for perfect subtrees, so a database-backed log can answer from a table of
  stored nodes with O(log n) lookups per proof instead of loading every leaf.
* The *frontier* of a tree of size n (:class:`CompactRange`) is the list of perfect-subtree
  roots covering ``[0, n)``, largest first, one per set bit of n (a Merkle mountain range). It
  is enough to append leaves and to compute the root hash.

The two ``verify_*`` functions implement RFC 9162 §2.1.3.2 and §2.1.4.2. They return ``None``
on success and raise :class:`~bus.errors.ProofError` saying why on any failure.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple, TypeAlias

from bus.errors import ProofError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "CompactRange",
    "SubtreeHash",
    "SubtreeNode",
    "consistency_proof",
    "consistency_proof_from",
    "frontier_ranges",
    "inclusion_proof",
    "inclusion_proof_from",
    "leaf_hash",
    "node_hash",
    "root_from",
    "root_hash",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
"""Length in bytes of every hash in the tree (SHA-256)."""

EMPTY_ROOT = hashlib.sha256(b"").digest()
"""Root hash of the empty tree: SHA-256 of the empty string (e3b0c442…b855)."""

SubtreeHash: TypeAlias = Callable[[int, int], bytes]
"""``subtree(start, end)`` returns MTH of the leaves ``[start, end)`` of a perfect subtree."""

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"


def leaf_hash(data: bytes) -> bytes:
    """Hash of one leaf: SHA-256(0x00 || data)."""
    return hashlib.sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Hash of an interior node: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


# --- tree shape -------------------------------------------------------------------------------


def _split(n: int) -> int:
    """The largest power of two strictly below ``n`` (n >= 2): where RFC 6962 splits D[n]."""
    return 1 << ((n - 1).bit_length() - 1)


def _is_power_of_two(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def frontier_ranges(size: int) -> list[tuple[int, int]]:
    """The perfect subtrees ``[start, end)`` covering ``[0, size)``, largest first."""
    _check_count(size, "size")
    ranges: list[tuple[int, int]] = []
    start = 0
    for bit in reversed(range(size.bit_length())):
        width = 1 << bit
        if size & width:
            ranges.append((start, start + width))
            start += width
    return ranges


def _fold(hashes: Sequence[bytes]) -> bytes:
    """MTH of a range from the roots of its perfect subtrees, largest (leftmost) first."""
    if not hashes:
        return EMPTY_ROOT
    result = hashes[-1]
    for left in reversed(hashes[:-1]):
        result = node_hash(left, result)
    return result


def _perfect(subtree: SubtreeHash, start: int, end: int) -> bytes:
    """Ask the callable for one perfect subtree and check that the answer is a hash."""
    result = subtree(start, end)
    if not isinstance(result, bytes) or len(result) != HASH_SIZE:
        raise ProofError(f"subtree({start}, {end}) did not return a {HASH_SIZE}-byte hash")
    return result


def _node(subtree: SubtreeHash, start: int, end: int) -> bytes:
    """MTH of a node ``[start, end)`` of the RFC 6962 tree, perfect or not.

    A node of the tree starts at a multiple of the power of two at or above its width, so
    its leftmost pieces are perfect subtrees; at most O(log n) of them are asked for.
    """
    pieces: list[bytes] = []
    while start < end:
        width = end - start
        step = width if _is_power_of_two(width) else _split(width)
        pieces.append(_perfect(subtree, start, start + step))
        start += step
    return _fold(pieces)


# --- proofs over a subtree oracle -------------------------------------------------------------


def root_from(subtree: SubtreeHash, size: int) -> bytes:
    """MTH of the first ``size`` leaves, asking ``subtree`` for O(log size) perfect subtrees."""
    _check_count(size, "size")
    if size == 0:
        return EMPTY_ROOT
    return _node(subtree, 0, size)


def inclusion_proof_from(subtree: SubtreeHash, index: int, size: int) -> list[bytes]:
    """RFC 6962 §2.1.1 audit path of leaf ``index`` in a tree of ``size`` leaves.

    The path lists sibling hashes from the leaf up to the root. ``subtree`` is called at most
    about 2·log2(size) times.
    """
    _check_count(index, "index")
    _check_count(size, "size")
    if index >= size:
        raise ProofError(f"index {index} is not below tree size {size}")
    siblings: list[bytes] = []
    start, end = 0, size
    while end - start > 1:
        mid = start + _split(end - start)
        if index < mid:
            siblings.append(_node(subtree, mid, end))
            end = mid
        else:
            siblings.append(_perfect(subtree, start, mid))
            start = mid
    siblings.reverse()
    return siblings


def consistency_proof_from(subtree: SubtreeHash, old_size: int, new_size: int) -> list[bytes]:
    """RFC 6962 §2.1.2 consistency proof that a tree of ``old_size`` leaves is a prefix of one
    of ``new_size`` leaves; empty when ``old_size`` is 0 or equal to ``new_size``.

    ``subtree`` is called at most about 2·log2(new_size) times.
    """
    _check_count(old_size, "old_size")
    _check_count(new_size, "new_size")
    if old_size > new_size:
        raise ProofError(f"old_size {old_size} is larger than new_size {new_size}")
    if old_size in (0, new_size):
        return []
    # SUBPROOF(m, D[start:end], b) unrolled: walk down, collecting the hashes the recursion
    # appends on its way back up, then reverse them.
    out: list[bytes] = []
    start, end, m, whole = 0, new_size, old_size, True
    while m != end - start:
        mid = start + _split(end - start)
        if m <= mid - start:
            out.append(_node(subtree, mid, end))
            end = mid
        else:
            out.append(_perfect(subtree, start, mid))
            m -= mid - start
            start = mid
            whole = False
    if not whole:
        # The old tree is not a single node of the new one, so the verifier needs that node.
        out.append(_node(subtree, start, end))
    out.reverse()
    return out


def _inclusion_proof_len(index: int, size: int) -> int:
    count, start, end = 0, 0, size
    while end - start > 1:
        mid = start + _split(end - start)
        start, end = (start, mid) if index < mid else (mid, end)
        count += 1
    return count


def _consistency_proof_len(old_size: int, new_size: int) -> int:
    count, start, end, m, whole = 0, 0, new_size, old_size, True
    while m != end - start:
        mid = start + _split(end - start)
        if m <= mid - start:
            end = mid
        else:
            m -= mid - start
            start, whole = mid, False
        count += 1
    return count if whole else count + 1


# --- proofs over the full list of leaves ------------------------------------------------------


class _Levels:
    """Every perfect subtree hash of a list of leaf hashes, level by level: O(n) to build."""

    def __init__(self, hashes: Sequence[bytes]) -> None:
        self._levels: list[list[bytes]] = [list(hashes)]
        while len(self._levels[-1]) > 1:
            below = self._levels[-1]
            self._levels.append(
                [node_hash(below[i], below[i + 1]) for i in range(0, len(below) - 1, 2)]
            )

    def __call__(self, start: int, end: int) -> bytes:
        height = (end - start).bit_length() - 1
        return self._levels[height][start >> height]


def _levels(leaves: Sequence[bytes]) -> _Levels:
    return _Levels([leaf_hash(leaf) for leaf in leaves])


def root_hash(leaves: Sequence[bytes]) -> bytes:
    """RFC 6962 Merkle Tree Hash of raw leaf data; SHA-256 of b"" for no leaves."""
    return root_from(_levels(leaves), len(leaves))


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """Audit path of leaf ``index`` in the tree of raw ``leaves``."""
    return inclusion_proof_from(_levels(leaves), index, len(leaves))


def consistency_proof(leaves: Sequence[bytes], old_size: int) -> list[bytes]:
    """Consistency proof from the first ``old_size`` of raw ``leaves`` to all of them."""
    return consistency_proof_from(_levels(leaves), old_size, len(leaves))


# --- verification (RFC 9162) ------------------------------------------------------------------


def _check_count(value: int, name: str) -> None:
    # bool is an int; a True index is a bug in the caller, not leaf 1.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProofError(f"{name} must be an int, got {type(value).__name__}")
    if value < 0:
        raise ProofError(f"{name} must not be negative, got {value}")


def _check_hash(value: bytes, name: str) -> None:
    if not isinstance(value, bytes):
        raise ProofError(f"{name} must be bytes, got {type(value).__name__}")
    if len(value) != HASH_SIZE:
        raise ProofError(f"{name} has {len(value)} bytes, want {HASH_SIZE}")


def _check_proof(proof: Sequence[bytes], want: int) -> None:
    if len(proof) != want:
        raise ProofError(f"proof has {len(proof)} hashes, want {want}")
    for i, item in enumerate(proof):
        _check_hash(item, f"proof[{i}]")


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``leaf_hash`` is leaf ``index`` of the tree of ``size`` leaves with ``root``.

    Returns ``None`` if the proof holds; raises :class:`ProofError` saying why otherwise.
    """
    _check_count(index, "index")
    _check_count(size, "size")
    if index >= size:
        raise ProofError(f"index {index} is not below tree size {size}")
    _check_hash(leaf_hash, "leaf hash")
    _check_hash(root, "root")
    _check_proof(proof, _inclusion_proof_len(index, size))

    # RFC 9162 §2.1.3.2, step by step.
    fn, sn = index, size - 1
    r = leaf_hash
    for p in proof:
        if sn == 0:
            raise ProofError("proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("proof is shorter than the path to the root")
    if r != root:
        raise ProofError(f"calculated root {r.hex()} does not match the given root {root.hex()}")


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Check that the tree of ``old_size`` leaves with ``old_root`` is a prefix of the tree of
    ``new_size`` leaves with ``new_root``.

    Returns ``None`` if the proof holds; raises :class:`ProofError` saying why otherwise. A
    proof from the empty tree is rejected: it would prove nothing, and a caller must not take
    it for evidence. Equal sizes need an empty proof and byte-identical roots; nothing is
    hashed then, so (as in the public conformance vectors) root lengths are not checked.
    """
    _check_count(old_size, "old_size")
    _check_count(new_size, "new_size")
    if old_size > new_size:
        raise ProofError(f"old_size {old_size} is larger than new_size {new_size}")
    if old_size == 0:
        raise ProofError("a consistency proof from the empty tree is meaningless")
    if old_size == new_size:
        if proof:
            raise ProofError(f"sizes are equal but the proof has {len(proof)} hashes, want 0")
        if not isinstance(old_root, bytes) or not isinstance(new_root, bytes):
            raise ProofError("roots must be bytes")
        if old_root != new_root:
            raise ProofError("sizes are equal but the roots differ")
        return
    _check_hash(old_root, "old root")
    _check_hash(new_root, "new root")
    _check_proof(proof, _consistency_proof_len(old_size, new_size))

    # RFC 9162 §2.1.4.2, step by step.
    path = list(proof)
    if _is_power_of_two(old_size):
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("proof is longer than needed")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("proof is shorter than needed")
    if fr != old_root:
        raise ProofError(f"calculated old root {fr.hex()} does not match {old_root.hex()}")
    if sr != new_root:
        raise ProofError(f"calculated new root {sr.hex()} does not match {new_root.hex()}")


# --- incremental frontier ---------------------------------------------------------------------


class SubtreeNode(NamedTuple):
    """A perfect subtree ``[start, end)`` and its hash, as a log stores it for later proofs."""

    start: int
    end: int
    hash: bytes


@dataclass(frozen=True, slots=True)
class CompactRange:
    """The frontier of a tree: enough state to append leaves and compute the root.

    ``hashes`` are the roots of the perfect subtrees :func:`frontier_ranges` lists for
    ``size``, largest first, so there are ``size.bit_count()`` of them (at most 64 for any
    realistic log). Values are immutable: ``append`` and ``extend`` return a new range. A log
    persists ``size`` and ``hashes`` and, for a batch of new leaves, calls
    :meth:`extend_with_nodes` to get the new frontier and every newly completed perfect
    subtree to store for proofs.
    """

    size: int = 0
    hashes: tuple[bytes, ...] = ()

    def __post_init__(self) -> None:
        _check_count(self.size, "size")
        if len(self.hashes) != self.size.bit_count():
            raise ProofError(
                f"a frontier of size {self.size} has {self.size.bit_count()} hashes,"
                f" got {len(self.hashes)}"
            )
        for i, item in enumerate(self.hashes):
            _check_hash(item, f"hashes[{i}]")

    @classmethod
    def from_subtree(cls, subtree: SubtreeHash, size: int) -> CompactRange:
        """The frontier of the first ``size`` leaves, read from a subtree oracle."""
        hashes = tuple(_perfect(subtree, start, end) for start, end in frontier_ranges(size))
        return cls(size=size, hashes=hashes)

    def ranges(self) -> list[tuple[int, int]]:
        """The ``[start, end)`` of each hash in ``hashes``."""
        return frontier_ranges(self.size)

    def root(self) -> bytes:
        """MTH of all ``size`` leaves, in O(log size) hashes."""
        return _fold(self.hashes)

    def append(self, leaf_hash: bytes) -> CompactRange:
        """The frontier after appending one leaf hash (hash it with :func:`leaf_hash` first)."""
        return self.extend_with_nodes((leaf_hash,))[0]

    def extend(self, leaf_hashes: Iterable[bytes]) -> CompactRange:
        """The frontier after appending leaf hashes in order."""
        return self.extend_with_nodes(leaf_hashes)[0]

    def extend_with_nodes(
        self, leaf_hashes: Iterable[bytes]
    ) -> tuple[CompactRange, list[SubtreeNode]]:
        """The frontier after appending ``leaf_hashes``, and every perfect subtree the new
        leaves complete (each leaf itself included), in the order they were completed."""
        stack = list(self.hashes)
        size = self.size
        nodes: list[SubtreeNode] = []
        for item in leaf_hashes:
            _check_hash(item, f"leaf hash #{size}")
            stack.append(item)
            nodes.append(SubtreeNode(size, size + 1, item))
            # Each trailing one bit of the old size is a perfect subtree of the same width
            # as the one just finished, on its left: merge them.
            width, bits = 1, size
            while bits & 1:
                right = stack.pop()
                merged = node_hash(stack.pop(), right)
                stack.append(merged)
                width <<= 1
                nodes.append(SubtreeNode(size + 1 - width, size + 1, merged))
                bits >>= 1
            size += 1
        return CompactRange(size=size, hashes=tuple(stack)), nodes
