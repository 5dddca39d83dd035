"""A department's proof of what became of its own message, by the id it knows.

``GET /v1/messages/{message_id}/audit`` on the department's own adapter, with its own token:
every audit entry of the message — accepted, delivered, acknowledged, and above all refused or
dead-lettered, which the router audits under an id derived from the submitted bytes, with the
department's id in the leaf — each with the whole reason (code and every problem), the leaf
itself, and an inclusion proof against the latest signed checkpoint that covers it. A verifier
checks the proof with the log's public key alone (:func:`bus.audit.merkle.verify_inclusion`
against the checkpoint's root).

Who may read it: an agency this adapter serves (401/403 as every department route), and only
about a message it is a party to per the audit log (:func:`bus.audit.access.parties`: the
sender, and for an accepted message its recipients). Any other id — another agency's, or none
at all — is the same 404, so the answer never tells whether someone else's message exists. The
adapter's database login reads the log only through ``casebus_message_audit`` (migration 0021).

No ``from __future__ import annotations``: FastAPI reads the route's annotations, which name the
dependency passed in.
"""

import base64
import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from adapters._framework.auth import AgencyReader
from adapters._framework.inbound import department_problem
from adapters._framework.service import AdapterService
from bus.audit.access import parties
from bus.audit.events import decode_leaf
from bus.audit.log import AuditLog

__all__ = ["AuditEntry", "InclusionProof", "MessageAudit", "audit_trail_routes"]

_CASE_OF = """
SELECT case_id FROM outbox WHERE message_id = $1 AND owner = $2
UNION ALL
SELECT case_id FROM adapter_deliveries WHERE message_id = $1 AND agency_id = $2
LIMIT 1
"""


class InclusionProof(BaseModel):
    """RFC 6962 inclusion proof of a leaf in the tree of ``tree_size`` leaves."""

    tree_size: int
    inclusion_proof: list[str] = Field(description="Sibling hashes, base64, leaf to root.")
    checkpoint: str = Field(description="The signed checkpoint (C2SP signed note) proven against.")


class AuditEntry(BaseModel):
    """One audited event about the message."""

    event: str = Field(description="accepted, delivered, acknowledged, rejected, dead_lettered…")
    audit_index: int
    audited_as: uuid.UUID = Field(
        description="The id the log keeps the entry under: the message id, or for a refused "
        "submission the id derived from its bytes."
    )
    recorded_at: datetime
    details: dict[str, Any] = Field(
        description="What the entry states: for a refusal its code and every problem, whole."
    )
    leaf: str = Field(description="The leaf's canonical bytes, base64.")
    proof: InclusionProof | None = Field(
        description="None until a checkpoint covers the entry (a few seconds)."
    )


class MessageAudit(BaseModel):
    """Every audit entry of one message, in log order."""

    message_id: uuid.UUID
    entries: list[AuditEntry]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _not_found(message_id: uuid.UUID) -> JSONResponse:
    problem = department_problem(
        "message_id",
        "not_found",
        "no audited message with this id that your agency sent or received",
        "没有本单位发送或接收的、已审计的该消息",
        str(message_id),
    )
    return JSONResponse({"problems": [problem]}, status_code=404)


def audit_trail_routes(service: AdapterService, agency_of: AgencyReader) -> APIRouter:
    """The route, its callers resolved by ``agency_of`` (the app's served-agency dependency)."""
    router = APIRouter(tags=["audit"])
    log = AuditLog()

    @router.get(
        "/v1/messages/{message_id}/audit",
        response_model=MessageAudit,
        responses={401: {}, 403: {}, 404: {}},
        summary="审计记录与证明 / the audit entries and inclusion proofs of one's own message",
        description=(
            "Every audit entry of a message this agency sent or received, by its `xxbh`: "
            "accepted, delivered, acknowledged, or refused (`rejected`, with the router's code "
            "such as `unauthorized_route` and every reason in full) — each with its leaf and an "
            "inclusion proof against a signed checkpoint. Another agency's message id, or an "
            "unknown one, is 404."
        ),
    )
    async def audit(
        message_id: uuid.UUID, agency: Annotated[str, Depends(agency_of)]
    ) -> MessageAudit | JSONResponse:
        pool = service.pool
        case_id = await pool.fetchval(_CASE_OF, message_id, agency)
        rows = await pool.fetch("SELECT * FROM casebus_message_audit($1, $2)", message_id, case_id)
        leaves = [decode_leaf(bytes(r["leaf"])) for r in rows]
        if not rows or agency not in parties(leaves):
            return _not_found(message_id)
        entries = []
        for row, leaf in zip(rows, leaves, strict=True):
            index = int(row["idx"])
            proof = None
            checkpoint = await log.checkpoint_covering(pool, index)
            if checkpoint is not None:
                path = await log.inclusion_proof(pool, index, checkpoint.tree_size)
                proof = InclusionProof(
                    tree_size=checkpoint.tree_size,
                    inclusion_proof=[_b64(h) for h in path],
                    checkpoint=checkpoint.note,
                )
            entries.append(
                AuditEntry(
                    event=str(row["event_kind"]),
                    audit_index=index,
                    audited_as=row["message_id"],
                    recorded_at=row["recorded_at"],
                    details=dict(leaf.get("details") or {}),
                    leaf=_b64(bytes(row["leaf"])),
                    proof=proof,
                )
            )
        return MessageAudit(message_id=message_id, entries=entries)

    return router
