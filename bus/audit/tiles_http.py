"""The audit log served as C2SP tlog-tiles over HTTP, from the tree stored in PostgreSQL.

``GET <prefix>/checkpoint`` is the latest signed checkpoint with its witnesses' cosignatures;
``GET <prefix>/tile/<L>/<N>[.p/<W>]`` a tile of hashes, read from the stored perfect subtrees
(``audit_nodes``); ``GET <prefix>/tile/entries/<N>[.p/<W>]`` an entry bundle, the leaves
themselves. Tiles are served up to the latest checkpoint's size, so a client never sees a
hash the log has not signed. Under a witness policy (``policy``), "latest" means the latest
checkpoint that a quorum of the policy's witnesses cosigned: the log publishes nothing the
witnesses have not vouched for, tiles included. (The server counts the stored cosignatures by
the witnesses' names; clients check them with the witnesses' keys, as the server is not
trusted.)

Who may read: checkpoints and tiles of hashes carry no case content and are public, so that
anyone can compute and check proofs; an entry bundle carries whole signed envelopes (names,
ID numbers) of many cases at once, so only the ``entry_reader`` dependency's callers get it
(the procuratorate, which supervises every message and reads the whole log anyway). A party
proves its own message with its evidence bundle's leaf and the public tiles.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import Response

from bus.audit.log import AuditLog, StoredCheckpoint
from bus.audit.tiles import TILE_WIDTH, encode_entry_bundle, parse_tile_path
from bus.audit.witnessing import WitnessPolicy, cosigned_note
from bus.errors import ProofError

__all__ = ["tiles_router"]

_IMMUTABLE = {"cache-control": "public, max-age=31536000, immutable"}
_OCTETS = "application/octet-stream"


def tiles_router(
    pool: Callable[[], asyncpg.Pool],
    *,
    entry_reader: Callable[..., Awaitable[Any]],
    prefix: str = "/v1/tlog",
    policy: WitnessPolicy | None = None,
) -> APIRouter:
    """The tlog-tiles endpoints under ``prefix``; ``pool()`` gives the bus database's pool."""
    router = APIRouter(prefix=prefix, tags=["audit"])
    log = AuditLog()

    async def latest() -> StoredCheckpoint | None:
        if policy is None:
            return await log.checkpoint(pool())
        size = await policy.latest_quorum_size(pool())
        return None if size is None else await log.checkpoint(pool(), size)

    async def signed_size() -> int:
        cp = await latest()
        return 0 if cp is None else cp.tree_size

    def parse(path: str, *, entries: bool) -> tuple[int, int, int]:
        try:
            level, index, width = parse_tile_path(("entries/" if entries else "") + path)
        except ValueError as e:
            raise HTTPException(status_code=404, detail=str(e)) from e
        return (0 if level is None else level), index, width

    @router.get("/checkpoint", summary="The latest checkpoint, cosigned (c2sp.org/tlog-tiles)")
    async def checkpoint() -> Response:
        cp = await latest()
        if cp is None:
            raise HTTPException(status_code=404, detail="no published checkpoint yet")
        return Response(
            await cosigned_note(pool(), cp),
            media_type="text/plain; charset=utf-8",
            headers={"cache-control": "max-age=2"},
        )

    @router.get(
        "/tile/entries/{index:path}",
        summary="An entry bundle: the leaves (procuratorate only: they carry case content)",
        dependencies=[Depends(entry_reader)],
    )
    async def entry_bundle(index: str) -> Response:
        _, n, width = parse(index, entries=True)
        start = n * TILE_WIDTH
        if start + width > await signed_size():
            raise HTTPException(status_code=404, detail="beyond the latest checkpoint")
        rows = await pool().fetch(
            "SELECT leaf FROM audit_entries WHERE idx >= $1 AND idx < $2 ORDER BY idx",
            start,
            start + width,
        )
        if len(rows) != width:
            raise HTTPException(status_code=404, detail="entries missing from the log")
        try:
            body = encode_entry_bundle([bytes(r["leaf"]) for r in rows])
        except ProofError as e:
            raise HTTPException(status_code=500, detail=str(e)) from e
        return Response(body, media_type=_OCTETS, headers=_IMMUTABLE)

    @router.get("/tile/{level}/{index:path}", summary="A tile of Merkle tree hashes")
    async def tile(level: str, index: str) -> Response:
        lv, n, width = parse(f"{level}/{index}", entries=False)
        unit = TILE_WIDTH**lv
        first = n * TILE_WIDTH
        if (first + width) * unit > await signed_size():
            raise HTTPException(status_code=404, detail="beyond the latest checkpoint")
        rows = await pool().fetch(
            "SELECT hash FROM audit_nodes WHERE start_idx >= $1 AND start_idx < $2 "
            "AND end_idx = start_idx + $3 ORDER BY start_idx",
            first * unit,
            (first + width) * unit,
            unit,
        )
        if len(rows) != width:
            raise HTTPException(status_code=404, detail="subtree hashes missing from the log")
        return Response(
            b"".join(bytes(r["hash"]) for r in rows), media_type=_OCTETS, headers=_IMMUTABLE
        )

    return router
