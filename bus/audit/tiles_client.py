"""A client of the tiled log (c2sp.org/tlog-tiles) that trusts nobody who serves it.

It fetches the checkpoint, checks the log's signature and a quorum of witness cosignatures
with keys the caller holds, fetches the tiles an inclusion proof needs, computes the proof and
checks it against the signed root. A mirror, a cache or the procuratorate's copy serves as
well as the bus: a tile that lies fails the check.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from bus.audit.checkpoint import Checkpoint, VerifierKey, verify_signed_checkpoint
from bus.audit.cosignature import verify_cosignature
from bus.audit.tiles import TileRef, tile_path, tiles_for_inclusion, verify_inclusion_from_tiles
from bus.errors import CheckpointError, ProofError

__all__ = ["TiledLog", "TiledProof"]


@dataclass(frozen=True, slots=True)
class TiledProof:
    """What a successful check established."""

    checkpoint: Checkpoint
    cosigners: tuple[str, ...]
    tiles_fetched: int


class TiledLog:
    """One tiled log at ``prefix`` (e.g. ``https://host/v1/tlog``), with the keys to check it."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        prefix: str,
        *,
        origin: str,
        log_key: Ed25519PublicKey,
        witnesses: Sequence[VerifierKey] = (),
        quorum: int | None = None,
    ) -> None:
        self._http = http
        self._prefix = prefix.rstrip("/")
        self._origin = origin
        self._log_key = log_key
        self._witnesses = tuple(witnesses)
        self._quorum = len(self._witnesses) if quorum is None else quorum

    async def _get(self, path: str) -> bytes:
        r = await self._http.get(f"{self._prefix}/{path}")
        if r.status_code != 200:
            raise ProofError(f"GET {path}: HTTP {r.status_code}")
        return r.content

    async def checkpoint(self) -> tuple[Checkpoint, tuple[str, ...]]:
        """The latest checkpoint, its signature and its quorum of cosignatures checked."""
        note = (await self._get("checkpoint")).decode("utf-8", errors="replace")
        checkpoint = verify_signed_checkpoint(
            note, self._origin, self._log_key, origin=self._origin
        )
        cosigners = []
        for key in self._witnesses:
            try:
                cosigners.append(verify_cosignature(note, key).cosigner)
            except CheckpointError as e:
                if e.reason != "unknown_key":
                    raise
        if len(cosigners) < self._quorum:
            raise ProofError(
                f"checkpoint {checkpoint.size} is cosigned by {len(cosigners)} of the given "
                f"witnesses, fewer than {self._quorum}"
            )
        return checkpoint, tuple(cosigners)

    async def verify_inclusion(self, leaf: bytes, index: int) -> TiledProof:
        """Check that ``leaf`` is entry ``index`` of the log's latest checkpoint, from tiles;
        raises :class:`ProofError` (or :class:`CheckpointError`) saying why not."""
        checkpoint, cosigners = await self.checkpoint()
        if index >= checkpoint.size:
            raise ProofError(f"entry {index} is beyond checkpoint size {checkpoint.size}")
        tiles: dict[TileRef, bytes] = {}
        for tile in tiles_for_inclusion(index, checkpoint.size):
            tiles[tile] = await self._get(tile_path(tile))
        verify_inclusion_from_tiles(tiles, leaf, index, checkpoint.size, checkpoint.root_hash)
        return TiledProof(checkpoint, cosigners, len(tiles))
