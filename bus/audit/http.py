"""The audit log's proof service over HTTP, mounted by the procuratorate adapter.

``GET /v1/audit/proofs/{message_id}`` returns an evidence bundle (as ``casebus audit prove``),
``GET /v1/audit/consistency?from=&to=`` a consistency proof with both checkpoints, and
``GET /v1/audit/checkpoints/latest`` the latest signed checkpoint. Answers are JSON that a
verifier checks with the log's public key alone; every checkpoint note carries the witnesses'
cosignatures stored with it, for a verifier who also holds the witnesses' keys.

Who may read them: a bundle carries the whole signed envelope, so ``proofs`` answers only to the
``proof_reader`` dependency the mounting app passes (the message's parties and the procuratorate,
see :mod:`bus.audit.access`); checkpoints and consistency proofs carry hashes, sizes and times,
no case content, and are public so that anyone can check the log.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Final

import asyncpg
from fastapi import APIRouter, Depends, HTTPException, Query

from bus.audit.evidence import build_bundle
from bus.audit.log import AuditLog
from bus.audit.witnessing import cosigned_note
from bus.errors import EntryNotFoundError

__all__ = ["audit_router"]

_BIGINT_MAX: Final = 2**63 - 1
"""Tree sizes are PostgreSQL ``bigint``s: a larger one is a 422, not a driver error."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def audit_router(
    pool: Callable[[], asyncpg.Pool], *, proof_reader: Callable[..., Awaitable[Any]]
) -> APIRouter:
    """The proof endpoints; ``pool()`` gives the bus database's pool at request time.

    ``proof_reader`` is a FastAPI dependency taking the path parameter ``message_id`` that
    raises (401, 403) unless the caller may read that message's bundle; it is required, so the
    router is never mounted with its bundles open to anyone.
    """
    router = APIRouter(prefix="/v1/audit", tags=["audit"])
    log = AuditLog()

    @router.get(
        "/proofs/{message_id}",
        summary="Evidence bundle of one audited event",
        dependencies=[Depends(proof_reader)],
    )
    async def proof(
        message_id: uuid.UUID,
        event: Annotated[str, Query(pattern="^[a-z_]+$", max_length=32)] = "accepted",
        checkpoint: Annotated[int | None, Query(ge=1, le=_BIGINT_MAX)] = None,
    ) -> dict[str, Any]:
        try:
            return await build_bundle(
                pool(), message_id, event_kind=event, checkpoint_size=checkpoint
            )
        except EntryNotFoundError as e:
            raise HTTPException(status_code=404, detail=str(e)) from e

    @router.get("/consistency", summary="Consistency proof between two checkpoints")
    async def consistency(
        old: Annotated[int, Query(alias="from", ge=1, le=_BIGINT_MAX)],
        new: Annotated[int, Query(alias="to", ge=1, le=_BIGINT_MAX)],
    ) -> dict[str, Any]:
        if old > new:
            raise HTTPException(status_code=422, detail="'from' must not exceed 'to'")
        db = pool()
        first = await log.checkpoint(db, old)
        second = await log.checkpoint(db, new)
        if first is None or second is None:
            missing = old if first is None else new
            raise HTTPException(status_code=404, detail=f"no checkpoint of size {missing}")
        proof = await log.consistency_proof(db, old, new)
        return {
            "old_size": old,
            "new_size": new,
            "proof": [_b64(p) for p in proof],
            "old_checkpoint": await cosigned_note(db, first),
            "new_checkpoint": await cosigned_note(db, second),
        }

    @router.get("/checkpoints/latest", summary="The latest signed checkpoint")
    async def latest() -> dict[str, Any]:
        db = pool()
        cp = await log.checkpoint(db)
        if cp is None:
            raise HTTPException(status_code=404, detail="no checkpoint yet")
        note = await cosigned_note(db, cp)
        return {"tree_size": cp.tree_size, "root_hash": _b64(cp.root_hash), "note": note}

    return router
