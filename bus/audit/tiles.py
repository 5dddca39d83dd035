"""The audit log as C2SP tlog-tiles (c2sp.org/tlog-tiles): tile paths, and a client that
computes and checks proofs from tiles alone.

A tile at level L, index N holds up to 256 consecutive hashes of perfect subtrees 256**L
leaves wide, ``MTH(D[(N*256+i) * 256**L : (N*256+i+1) * 256**L])``; the rightmost tiles of a
tree are partial (``.p/<W>``, W hashes). With them a client needs no proof service: it
fetches the tiles a proof touches and computes the proof itself, so a mirror or the
procuratorate can serve them and nobody has to trust whoever answers.

:func:`tiles_for_inclusion` says which tiles an inclusion proof needs; :class:`TileHashes`
answers :mod:`bus.audit.merkle`'s subtree questions from fetched tiles, so the proofs are
computed by the same code as everywhere else, and checked with the checkpoint's root.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from bus.audit.merkle import HASH_SIZE, inclusion_proof_from, leaf_hash, node_hash, verify_inclusion
from bus.errors import ProofError

__all__ = [
    "TILE_WIDTH",
    "TileHashes",
    "TileRef",
    "encode_entry_bundle",
    "entry_bundle_path",
    "inclusion_proof_from_tiles",
    "parse_tile_path",
    "tile_path",
    "tiles_for_inclusion",
    "verify_inclusion_from_tiles",
]

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT
"""A full tile holds 256 hashes."""

_MAX_ENTRY = 0xFFFF
_ELEMENT = re.compile(r"(x[0-9]{3}/)*[0-9]{3}")
_LEVEL = re.compile(r"0|[1-9][0-9]?")
_WIDTH = re.compile(r"[1-9][0-9]{0,2}")


@dataclass(frozen=True, slots=True, order=True)
class TileRef:
    """One tile: its level, index and width (256 for a full tile)."""

    level: int
    index: int
    width: int = TILE_WIDTH

    @property
    def start(self) -> int:
        """Index, within its level, of the first hash in the tile."""
        return self.index * TILE_WIDTH


def _encode_index(n: int) -> str:
    digits = f"{n:03d}"
    digits = "0" * (-len(digits) % 3) + digits
    groups = [digits[i : i + 3] for i in range(0, len(digits), 3)]
    return "/".join([*(f"x{g}" for g in groups[:-1]), groups[-1]])


def _suffix(width: int) -> str:
    return "" if width == TILE_WIDTH else f".p/{width}"


def tile_path(tile: TileRef) -> str:
    """``tile/<L>/<N>[.p/<W>]``."""
    return f"tile/{tile.level}/{_encode_index(tile.index)}{_suffix(tile.width)}"


def entry_bundle_path(index: int, width: int = TILE_WIDTH) -> str:
    """``tile/entries/<N>[.p/<W>]``."""
    return f"tile/entries/{_encode_index(index)}{_suffix(width)}"


def parse_tile_path(path: str) -> tuple[int | None, int, int]:
    """``(level, index, width)`` of a path after ``tile/`` (level None for ``entries/``);
    raises :class:`ValueError` when it is not one the spec allows."""
    head, _, rest = path.partition("/")
    level: int | None
    if head == "entries":
        level = None
    elif _LEVEL.fullmatch(head) and int(head) <= 63:
        level = int(head)
    else:
        raise ValueError(f"bad tile level {head!r}")
    width = TILE_WIDTH
    if ".p/" in rest:
        rest, _, w = rest.partition(".p/")
        if not _WIDTH.fullmatch(w) or int(w) >= TILE_WIDTH:
            raise ValueError(f"bad partial tile width {w!r}")
        width = int(w)
    if not _ELEMENT.fullmatch(rest):
        raise ValueError(f"bad tile index {rest!r}")
    return level, int(rest.replace("x", "").replace("/", "")), width


def encode_entry_bundle(entries: list[bytes]) -> bytes:
    """Entries as big-endian uint16 length-prefixed records."""
    out = bytearray()
    for entry in entries:
        if len(entry) > _MAX_ENTRY:
            raise ProofError(f"an entry of {len(entry)} bytes does not fit an entry bundle")
        out += len(entry).to_bytes(2, "big") + entry
    return bytes(out)


def _tile_of(level: int, node: int, size: int) -> TileRef:
    """The tile holding hash ``node`` of ``level``, as wide as the tree of ``size`` makes it."""
    index = node // TILE_WIDTH
    available = size // TILE_WIDTH**level - index * TILE_WIDTH
    return TileRef(level, index, min(TILE_WIDTH, available))


def _subtree_tile(start: int, end: int, size: int) -> tuple[TileRef, int, int]:
    """Where the hashes that make perfect subtree ``[start, end)`` live: (tile, first, count).
    A subtree 2**h wide is 2**(h % 8) consecutive hashes of one tile at level h // 8."""
    height = (end - start).bit_length() - 1
    level = height // TILE_HEIGHT
    unit = TILE_WIDTH**level
    first, count = start // unit, (end - start) // unit
    tile = _tile_of(level, first, size)
    return tile, first - tile.start, count


class _Recorder:
    def __init__(self, size: int) -> None:
        self.size = size
        self.tiles: set[TileRef] = set()

    def __call__(self, start: int, end: int) -> bytes:
        self.tiles.add(_subtree_tile(start, end, self.size)[0])
        return bytes(HASH_SIZE)


def tiles_for_inclusion(index: int, size: int) -> list[TileRef]:
    """The tiles needed for the inclusion proof of leaf ``index`` in the tree of ``size``."""
    recorder = _Recorder(size)
    inclusion_proof_from(recorder, index, size)
    recorder(index, index + 1)
    return sorted(recorder.tiles)


class TileHashes:
    """A :data:`~bus.audit.merkle.SubtreeHash` answered from fetched tiles."""

    def __init__(self, tiles: Mapping[TileRef, bytes], size: int) -> None:
        for tile, data in tiles.items():
            if len(data) != tile.width * HASH_SIZE:
                want = tile.width * HASH_SIZE
                raise ProofError(f"{tile_path(tile)} has {len(data)} bytes, want {want}")
        self._tiles = tiles
        self._size = size

    def __call__(self, start: int, end: int) -> bytes:
        tile, first, count = _subtree_tile(start, end, self._size)
        data = self._tiles.get(tile)
        if data is None:
            raise ProofError(f"tile {tile_path(tile)} was not fetched")
        hashes = [data[(first + i) * HASH_SIZE : (first + i + 1) * HASH_SIZE] for i in range(count)]
        while len(hashes) > 1:
            hashes = [node_hash(hashes[i], hashes[i + 1]) for i in range(0, len(hashes), 2)]
        return hashes[0]


def inclusion_proof_from_tiles(
    tiles: Mapping[TileRef, bytes], index: int, size: int
) -> tuple[bytes, list[bytes]]:
    """The leaf hash of ``index`` and its inclusion proof in the tree of ``size``."""
    hashes = TileHashes(tiles, size)
    return hashes(index, index + 1), inclusion_proof_from(hashes, index, size)


def verify_inclusion_from_tiles(
    tiles: Mapping[TileRef, bytes], leaf: bytes, index: int, size: int, root: bytes
) -> None:
    """Check that ``leaf`` is entry ``index`` of the tree of ``size`` with ``root`` (from a
    verified checkpoint), using tiles only; raises :class:`ProofError` saying why not."""
    tile_leaf, proof = inclusion_proof_from_tiles(tiles, index, size)
    if tile_leaf != leaf_hash(leaf):
        raise ProofError(f"the tiles hold another leaf hash at index {index}")
    verify_inclusion(leaf_hash(leaf), index, size, proof, root)
