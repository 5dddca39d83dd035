"""Tests for bus.audit.merkle: conformance vectors, reference values and proof properties."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bus.audit.merkle import (
    EMPTY_ROOT,
    CompactRange,
    consistency_proof,
    consistency_proof_from,
    frontier_ranges,
    inclusion_proof,
    inclusion_proof_from,
    leaf_hash,
    node_hash,
    root_from,
    root_hash,
    verify_consistency,
    verify_inclusion,
)
from bus.errors import ProofError

# --- an independent reference: the recursive definitions of RFC 6962 §2.1, written naively ---


def _ref_split(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def _ref_mth(leaves: Sequence[bytes]) -> bytes:
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = _ref_split(len(leaves))
    return hashlib.sha256(b"\x01" + _ref_mth(leaves[:k]) + _ref_mth(leaves[k:])).digest()


def _ref_path(m: int, leaves: Sequence[bytes]) -> list[bytes]:
    if len(leaves) == 1:
        return []
    k = _ref_split(len(leaves))
    if m < k:
        return [*_ref_path(m, leaves[:k]), _ref_mth(leaves[k:])]
    return [*_ref_path(m - k, leaves[k:]), _ref_mth(leaves[:k])]


def _ref_subproof(m: int, leaves: Sequence[bytes], whole: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if whole else [_ref_mth(leaves)]
    k = _ref_split(n)
    if m <= k:
        return [*_ref_subproof(m, leaves[:k], whole), _ref_mth(leaves[k:])]
    return [*_ref_subproof(m - k, leaves[k:], False), _ref_mth(leaves[:k])]


def _ref_proof(m: int, leaves: Sequence[bytes]) -> list[bytes]:
    return _ref_subproof(m, leaves, True) if 0 < m < len(leaves) else []


def _turns(index: int, size: int) -> tuple[bool, ...]:
    """The left/right turns from the root down to leaf ``index``: the shape of its proof."""
    out: list[bool] = []
    start, end = 0, size
    while end - start > 1:
        mid = start + _ref_split(end - start)
        out.append(index >= mid)
        start, end = (mid, end) if index >= mid else (start, mid)
    return tuple(out)


def _flip(value: bytes, bit: int) -> bytes:
    out = bytearray(value)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def _flip_one_element(proof: list[bytes], data: st.DataObject) -> list[bytes]:
    """``proof`` with one bit of one of its hashes flipped, both drawn from ``data``."""
    at = data.draw(st.integers(0, len(proof) - 1), label="proof element")
    bit = data.draw(st.integers(0, 255), label="proof bit")
    return [*proof[:at], _flip(proof[at], bit), *proof[at + 1 :]]


def _fails(check: Callable[[], None]) -> bool:
    try:
        check()
    except ProofError:
        return True
    return False


# --- public conformance vectors (transparency-dev/merkle testdata) ----------------------------


REPO_VECTORS = Path(__file__).resolve().parent / "vectors" / "merkle"
"""The in-repository copy (tests/vectors/README.md says where it comes from)."""
SHARED_VECTORS = Path(__file__).resolve().parents[2] / "shared" / "conformance" / "merkle"
"""The sibling checkout the copy was taken from; only the drift check below reads it."""


def _conformance_dir() -> Path:
    """``CASEBUS_CONFORMANCE_DIR`` may name the conformance folder or its ``merkle`` child."""
    override = os.environ.get("CASEBUS_CONFORMANCE_DIR")
    if override:
        base = Path(override)
        return base / "merkle" if (base / "merkle").is_dir() else base
    return REPO_VECTORS


CONFORMANCE_DIR = _conformance_dir()
VECTOR_FILES = sorted(CONFORMANCE_DIR.rglob("*.json")) if CONFORMANCE_DIR.is_dir() else []


def _vector_id(path: Path) -> str:
    return path.relative_to(CONFORMANCE_DIR).as_posix() if path != CONFORMANCE_DIR else "missing"


def _go_bytes(value: str | None) -> bytes:
    """Go's JSON encoding of []byte: standard base64, or null for a nil slice."""
    return b"" if value is None else base64.b64decode(value, validate=True)


def _go_proof(value: list[str] | None) -> list[bytes]:
    return [] if value is None else [_go_bytes(item) for item in value]


def test_conformance_folder_is_present_and_every_file_is_collected() -> None:
    assert CONFORMANCE_DIR.is_dir(), (
        f"Merkle conformance vectors not found at {CONFORMANCE_DIR};"
        " they belong in tests/vectors/merkle (or set CASEBUS_CONFORMANCE_DIR)"
    )
    on_disk = sorted(CONFORMANCE_DIR.rglob("*.json"))
    assert len(on_disk) > 0
    assert on_disk == VECTOR_FILES
    kinds = {path.relative_to(CONFORMANCE_DIR).parts[0] for path in on_disk}
    assert kinds == {"inclusion", "consistency"}
    outcomes = {json.loads(path.read_text(encoding="utf-8"))["wantErr"] for path in on_disk}
    assert outcomes == {True, False}


def test_the_default_vectors_are_the_copy_inside_the_repository(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CASEBUS_CONFORMANCE_DIR", raising=False)
    repo_root = Path(__file__).resolve().parents[1]
    default = _conformance_dir()
    assert default.is_relative_to(repo_root), f"{default} is outside the clone {repo_root}"
    assert len(list(default.rglob("*.json"))) > 0
    # Redistributing Apache-2.0 files means keeping their licence next to them.
    assert "Apache License" in (default / "LICENSE").read_text(encoding="utf-8")
    assert "transparency-dev/merkle" in (default.parent / "README.md").read_text(encoding="utf-8")


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_the_copy_is_byte_for_byte_what_its_manifest_recorded() -> None:
    """Never skipped: ``merkle.sha256`` was written when the files were copied, so an edited,
    added or lost vector fails here even where the source checkout is not beside the clone."""
    manifest = dict(
        reversed(line.split("  ", 1))
        for line in (REPO_VECTORS.parent / "merkle.sha256").read_text("utf-8").splitlines()
    )
    ours = {name: hashlib.sha256(data).hexdigest() for name, data in _files(REPO_VECTORS).items()}
    assert ours == manifest
    if SHARED_VECTORS.is_dir():  # and, where the source is beside the clone, equal to it
        theirs = _files(SHARED_VECTORS)
        assert {n: hashlib.sha256(d).hexdigest() for n, d in theirs.items()} == manifest


@pytest.mark.parametrize("path", VECTOR_FILES or [CONFORMANCE_DIR], ids=_vector_id)
def test_conformance_vector(path: Path) -> None:
    if not path.is_file():
        pytest.fail(f"Merkle conformance vectors not found at {CONFORMANCE_DIR}")
    case: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    kind = path.relative_to(CONFORMANCE_DIR).parts[0]
    assert isinstance(case["wantErr"], bool)

    def check() -> None:
        if kind == "inclusion":
            verify_inclusion(
                _go_bytes(case["leafHash"]),
                case["leafIdx"],
                case["treeSize"],
                _go_proof(case["proof"]),
                _go_bytes(case["root"]),
            )
        elif kind == "consistency":
            verify_consistency(
                case["size1"],
                case["size2"],
                _go_bytes(case["root1"]),
                _go_bytes(case["root2"]),
                _go_proof(case["proof"]),
            )
        else:
            pytest.fail(f"unknown vector kind {kind!r}")

    if case["wantErr"]:
        with pytest.raises(ProofError):
            check()
    else:
        check()


# --- known root hashes -----------------------------------------------------------------------

CT_LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
]

# Published with the Certificate Transparency reference tests (and transparency-dev/merkle).
CT_ROOTS = {
    0: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    1: "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    2: "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    3: "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    4: "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    5: "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    6: "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    7: "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    8: "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
}


def test_empty_tree_root_is_sha256_of_nothing() -> None:
    expected = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert root_hash([]).hex() == expected
    assert EMPTY_ROOT.hex() == expected
    assert CompactRange().root().hex() == expected


@pytest.mark.parametrize("size", range(9))
def test_root_of_the_ct_reference_tree(size: int) -> None:
    leaves = CT_LEAVES[:size]
    assert root_hash(leaves) == _ref_mth(leaves)
    assert root_hash(leaves).hex() == CT_ROOTS[size]


def test_leaf_and_node_hashes_are_domain_separated() -> None:
    assert leaf_hash(b"abc") == hashlib.sha256(b"\x00abc").digest()
    left, right = bytes(32), bytes(range(32))
    assert node_hash(left, right) == hashlib.sha256(b"\x01" + left + right).digest()


def test_every_proof_of_small_trees_matches_the_recursive_definition() -> None:
    for size in range(41):
        leaves = [b"leaf %d" % i for i in range(size)]
        root = root_hash(leaves)
        assert root == _ref_mth(leaves)
        for index in range(size):
            proof = inclusion_proof(leaves, index)
            assert proof == _ref_path(index, leaves)
            verify_inclusion(leaf_hash(leaves[index]), index, size, proof, root)
        for old_size in range(size + 1):
            proof = consistency_proof(leaves, old_size)
            assert proof == _ref_proof(old_size, leaves)
            if old_size > 0:
                verify_consistency(old_size, size, _ref_mth(leaves[:old_size]), root, proof)


# --- properties ------------------------------------------------------------------------------


@st.composite
def _numbered_leaves(draw: st.DrawFn, min_size: int) -> list[bytes]:
    """Trees of every size up to 300: a drawn size, leaves told apart by their number."""
    size = draw(st.integers(min_size, 300), label="tree size")
    salt = draw(st.binary(max_size=8), label="salt")
    return [salt + i.to_bytes(2, "big") for i in range(size)]


# Distinct leaves: with duplicates a flipped index can land on an identical leaf and sibling.
distinct_leaves = st.one_of(
    st.lists(st.binary(max_size=6), min_size=1, max_size=300, unique=True), _numbered_leaves(1)
)
any_leaves = st.one_of(st.lists(st.binary(max_size=4), max_size=300), _numbered_leaves(0))


@settings(max_examples=100, deadline=None)
@given(leaves=distinct_leaves, data=st.data())
def test_inclusion_proof_verifies_and_any_flipped_bit_breaks_it(
    leaves: list[bytes], data: st.DataObject
) -> None:
    size = len(leaves)
    index = data.draw(st.integers(0, size - 1), label="index")
    root, proof, leaf = root_hash(leaves), inclusion_proof(leaves, index), leaf_hash(leaves[index])
    verify_inclusion(leaf, index, size, proof, root)

    if proof:
        bad = _flip_one_element(proof, data)
        assert _fails(lambda: verify_inclusion(leaf, index, size, bad, root))
    bit = data.draw(st.integers(0, 255), label="root bit")
    assert _fails(lambda: verify_inclusion(leaf, index, size, proof, _flip(root, bit)))
    assert _fails(lambda: verify_inclusion(_flip(leaf, bit), index, size, proof, root))
    bit = data.draw(st.integers(0, 62), label="index bit")
    assert _fails(lambda: verify_inclusion(leaf, index ^ (1 << bit), size, proof, root))

    # An inclusion proof binds the size only through the shape of the leaf's path: another
    # size that gives the leaf the same path verifies too. The signed checkpoint binds the
    # size to the root; the proof cannot.
    bit = data.draw(st.integers(0, 62), label="size bit")
    other = size ^ (1 << bit)
    same_shape = index < other and _turns(index, other) == _turns(index, size)
    assert _fails(lambda: verify_inclusion(leaf, index, other, proof, root)) != same_shape


@settings(max_examples=100, deadline=None)
@given(leaves=distinct_leaves, data=st.data())
def test_consistency_proof_verifies_and_any_flipped_bit_breaks_it(
    leaves: list[bytes], data: st.DataObject
) -> None:
    size = len(leaves)
    old = data.draw(st.integers(1, size), label="old size")
    old_root, new_root = root_hash(leaves[:old]), root_hash(leaves)
    proof = consistency_proof(leaves, old)
    verify_consistency(old, size, old_root, new_root, proof)

    if proof:
        bad = _flip_one_element(proof, data)
        assert _fails(lambda: verify_consistency(old, size, old_root, new_root, bad))
    bit = data.draw(st.integers(0, 255), label="root bit")
    assert _fails(lambda: verify_consistency(old, size, _flip(old_root, bit), new_root, proof))
    assert _fails(lambda: verify_consistency(old, size, old_root, _flip(new_root, bit), proof))
    bit = data.draw(st.integers(0, 62), label="old size bit")
    assert _fails(lambda: verify_consistency(old ^ (1 << bit), size, old_root, new_root, proof))

    # As for inclusion, the new size is bound only through the path of the last old leaf.
    bit = data.draw(st.integers(0, 62), label="new size bit")
    other = size ^ (1 << bit)
    same_shape = old < min(size, other) and _turns(old - 1, other) == _turns(old - 1, size)
    assert _fails(lambda: verify_consistency(old, other, old_root, new_root, proof)) != same_shape


def test_inclusion_proof_of_the_first_leaf_does_not_pin_the_size() -> None:
    leaves = [b"a", b"b", b"c", b"d", b"e"]
    proof = inclusion_proof(leaves, 0)
    verify_inclusion(leaf_hash(b"a"), 0, 6, proof, root_hash(leaves))


class _NodeTable:
    """A subtree oracle shaped like the database: stored perfect subtrees, looked up by range."""

    def __init__(self, leaves: Sequence[bytes]) -> None:
        _, nodes = CompactRange().extend_with_nodes(leaf_hash(leaf) for leaf in leaves)
        self.nodes = {(node.start, node.end): node.hash for node in nodes}
        self.calls = 0

    def __call__(self, start: int, end: int) -> bytes:
        width = end - start
        assert width > 0 and width & (width - 1) == 0 and start % width == 0, (start, end)
        self.calls += 1
        return self.nodes[(start, end)]


def test_frontier_and_subtree_oracle_agree_with_root_hash_for_every_prefix_of_300() -> None:
    leaves = [b"event %d" % i for i in range(300)]
    table = _NodeTable(leaves)
    running = CompactRange()
    for size in range(len(leaves) + 1):
        expected = root_hash(leaves[:size])
        assert running.root() == expected
        assert root_from(table, size) == expected
        assert CompactRange.from_subtree(table, size) == running
        assert running.ranges() == frontier_ranges(size)
        if size < len(leaves):
            running = running.append(leaf_hash(leaves[size]))


@settings(max_examples=25, deadline=None)
@given(leaves=any_leaves)
def test_frontier_and_subtree_oracle_agree_with_root_hash(leaves: list[bytes]) -> None:
    table = _NodeTable(leaves)
    running = CompactRange()
    for size in range(len(leaves) + 1):
        expected = root_hash(leaves[:size])
        assert running.root() == expected
        assert root_from(table, size) == expected
        if size < len(leaves):
            running = running.append(leaf_hash(leaves[size]))


@settings(max_examples=100, deadline=None)
@given(leaves=distinct_leaves, data=st.data())
def test_proofs_from_the_subtree_oracle_match_and_need_few_lookups(
    leaves: list[bytes], data: st.DataObject
) -> None:
    table = _NodeTable(leaves)
    size = data.draw(st.integers(1, len(leaves)), label="size")
    index = data.draw(st.integers(0, size - 1), label="index")
    old = data.draw(st.integers(0, size), label="old size")
    budget = 2 * size.bit_length() + 1

    table.calls = 0
    assert inclusion_proof_from(table, index, size) == inclusion_proof(leaves[:size], index)
    assert table.calls <= budget
    table.calls = 0
    assert consistency_proof_from(table, old, size) == consistency_proof(leaves[:size], old)
    assert table.calls <= budget
    table.calls = 0
    assert root_from(table, size) == root_hash(leaves[:size])
    assert table.calls <= size.bit_length()


@settings(max_examples=50, deadline=None)
@given(first=any_leaves, second=any_leaves)
def test_extending_in_batches_matches_one_batch_and_reports_every_node(
    first: list[bytes], second: list[bytes]
) -> None:
    hashes = [leaf_hash(leaf) for leaf in first + second]
    whole, all_nodes = CompactRange().extend_with_nodes(hashes)
    part, nodes_a = CompactRange().extend_with_nodes(hashes[: len(first)])
    part, nodes_b = part.extend_with_nodes(hashes[len(first) :])
    assert part == whole
    assert nodes_a + nodes_b == all_nodes
    assert whole.root() == root_hash(first + second)
    leaves = first + second
    for node in all_nodes:
        assert node.hash == _ref_mth(leaves[node.start : node.end])


# --- malformed input -------------------------------------------------------------------------

_H = bytes(32)


@pytest.mark.parametrize(
    ("leaf", "index", "size", "proof", "root"),
    [
        pytest.param(_H, -1, 1, [], _H, id="negative-index"),
        pytest.param(_H, 0, -1, [], _H, id="negative-size"),
        pytest.param(_H, 1, 1, [], _H, id="index-equals-size"),
        pytest.param(_H, 0, 0, [], _H, id="empty-tree"),
        pytest.param(_H, True, 2, [_H], _H, id="bool-index"),
        pytest.param(_H[:31], 0, 1, [], _H, id="short-leaf-hash"),
        pytest.param(_H, 0, 1, [], _H + b"\x00", id="long-root"),
        pytest.param(_H, 0, 2, [_H[:16]], _H, id="short-proof-element"),
        pytest.param(_H, 0, 2, [], _H, id="proof-too-short"),
        pytest.param(_H, 0, 2, [_H, _H], _H, id="proof-too-long"),
        pytest.param("00" * 32, 0, 1, [], _H, id="str-leaf-hash"),
    ],
)
def test_verify_inclusion_rejects_malformed_input(
    leaf: Any, index: Any, size: int, proof: list[bytes], root: bytes
) -> None:
    with pytest.raises(ProofError):
        verify_inclusion(leaf, index, size, proof, root)


@pytest.mark.parametrize(
    ("old", "new", "old_root", "new_root", "proof"),
    [
        pytest.param(-1, 1, _H, _H, [], id="negative-old-size"),
        pytest.param(1, -1, _H, _H, [], id="negative-new-size"),
        pytest.param(2, 1, _H, _H, [], id="old-larger-than-new"),
        pytest.param(0, 3, EMPTY_ROOT, _H, [], id="from-empty-tree"),
        pytest.param(0, 0, EMPTY_ROOT, EMPTY_ROOT, [], id="both-empty"),
        pytest.param(2, 2, _H, _H, [_H], id="equal-sizes-with-proof"),
        pytest.param(2, 2, _H, b"\x01" * 32, [], id="equal-sizes-other-root"),
        pytest.param(1, 2, _H[:31], _H, [_H], id="short-old-root"),
        pytest.param(1, 2, _H, _H + b"\x00", [_H], id="long-new-root"),
        pytest.param(1, 2, _H, _H, [], id="empty-proof"),
        pytest.param(1, 2, _H, _H, [_H, _H], id="proof-too-long"),
        pytest.param(3, 4, _H, _H, [_H], id="proof-too-short"),
        pytest.param(1, 2, _H, _H, [b"x"], id="short-proof-element"),
    ],
)
def test_verify_consistency_rejects_malformed_input(
    old: int, new: int, old_root: bytes, new_root: bytes, proof: list[bytes]
) -> None:
    with pytest.raises(ProofError):
        verify_consistency(old, new, old_root, new_root, proof)


def test_proof_generation_rejects_sizes_outside_the_tree() -> None:
    leaves = [b"a", b"b", b"c"]
    with pytest.raises(ProofError):
        inclusion_proof(leaves, 3)
    with pytest.raises(ProofError):
        inclusion_proof(leaves, -1)
    with pytest.raises(ProofError):
        consistency_proof(leaves, 4)
    assert consistency_proof(leaves, 0) == []
    assert consistency_proof(leaves, 3) == []


def test_compact_range_rejects_a_frontier_of_the_wrong_shape() -> None:
    with pytest.raises(ProofError):
        CompactRange(size=3, hashes=(_H,))
    with pytest.raises(ProofError):
        CompactRange(size=1, hashes=(b"short",))
    with pytest.raises(ProofError):
        CompactRange().append(b"short")
    assert CompactRange(size=3, hashes=(_H, _H)).ranges() == [(0, 2), (2, 3)]


def test_proof_error_is_final_and_a_value_error() -> None:
    with pytest.raises(ValueError) as caught:
        verify_inclusion(_H, 5, 1, [], _H)
    assert isinstance(caught.value, ProofError)
    assert caught.value.retriable is False
    assert "index 5" in str(caught.value)
