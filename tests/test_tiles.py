"""Tile paths and proofs from tiles (c2sp.org/tlog-tiles), without a database: tiles built
straight from the leaves by the definition in the spec, proofs computed from them and
checked against the RFC 6962 root."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bus.audit.merkle import leaf_hash, root_hash
from bus.audit.tiles import (
    TILE_WIDTH,
    TileRef,
    encode_entry_bundle,
    entry_bundle_path,
    parse_tile_path,
    tile_path,
    tiles_for_inclusion,
    verify_inclusion_from_tiles,
)
from bus.errors import ProofError


def test_tile_paths_are_encoded_as_the_spec_shows() -> None:
    assert tile_path(TileRef(0, 1234067)) == "tile/0/x001/x234/067"
    assert tile_path(TileRef(2, 0, 1)) == "tile/2/000.p/1"
    assert entry_bundle_path(5, 112) == "tile/entries/005.p/112"
    assert parse_tile_path("0/x001/x234/067") == (0, 1234067, 256)
    assert parse_tile_path("entries/005.p/112") == (None, 5, 112)
    for bad in ("00/000", "64/000", "0/1", "0/x001", "0/001/002", "0/000.p/0", "0/000.p/256",
                "0/000.p/07", "entries/000.p/", "x/000"):  # fmt: skip
        with pytest.raises(ValueError):
            parse_tile_path(bad)


def test_an_entry_bundle_is_length_prefixed_and_refuses_what_does_not_fit() -> None:
    assert encode_entry_bundle([b"ab", b""]) == b"\x00\x02ab\x00\x00"
    with pytest.raises(ProofError):
        encode_entry_bundle([b"x" * 65536])


def _mth(leaves: list[bytes], start: int, end: int) -> bytes:
    return root_hash(leaves[start:end])


def tiles_of(leaves: list[bytes], wanted: list[TileRef]) -> dict[TileRef, bytes]:
    """Each tile by the spec's definition: MTH(D[(n*256+i)*256**l : (n*256+i+1)*256**l])."""
    out = {}
    for t in wanted:
        unit = TILE_WIDTH**t.level
        out[t] = b"".join(
            _mth(leaves, (t.start + i) * unit, (t.start + i + 1) * unit) for i in range(t.width)
        )
    return out


def test_the_spec_example_tree_of_70000_needs_its_partial_tiles() -> None:
    leaves = [b"%d" % i for i in range(70_000)]
    wanted = tiles_for_inclusion(69_999, 70_000)
    # The spec's widths: 112 at level 0, 17 at level 1, and 1 at level 2, whose one hash is
    # MTH(D[0:65536]), the root's left child.
    assert wanted == [TileRef(0, 273, 112), TileRef(1, 1, 17), TileRef(2, 0, 1)]
    tiles = tiles_of(leaves, wanted)
    verify_inclusion_from_tiles(tiles, leaves[69_999], 69_999, 70_000, root_hash(leaves))
    first = tiles_for_inclusion(0, 70_000)
    assert TileRef(1, 0) in first and TileRef(0, 0) in first


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 1200), st.data())
def test_a_proof_from_tiles_holds_for_every_size_and_index(size: int, data: st.DataObject) -> None:
    leaves = [b"leaf %d" % i for i in range(size)]
    index = data.draw(st.integers(0, size - 1))
    tiles = tiles_of(leaves, tiles_for_inclusion(index, size))
    verify_inclusion_from_tiles(tiles, leaves[index], index, size, root_hash(leaves))
    with pytest.raises(ProofError):
        verify_inclusion_from_tiles(tiles, b"another leaf", index, size, root_hash(leaves))


def test_a_tile_that_lies_is_caught() -> None:
    leaves = [b"%d" % i for i in range(600)]
    wanted = tiles_for_inclusion(300, 600)
    tiles = tiles_of(leaves, wanted)
    # The level-0 tile holding leaf 300 swapped for one where a sibling was rewritten.
    t = TileRef(0, 1)
    forged = bytearray(tiles[t])
    forged[0:32] = leaf_hash(b"rewritten")
    with pytest.raises(ProofError, match="calculated root"):
        verify_inclusion_from_tiles(
            {**tiles, t: bytes(forged)}, leaves[300], 300, 600, root_hash(leaves)
        )
    with pytest.raises(ProofError, match="bytes, want"):
        verify_inclusion_from_tiles(
            {**tiles, t: b"short"}, leaves[300], 300, 600, root_hash(leaves)
        )
