"""A C2SP witness: checks a log's new checkpoint against the last one it cosigned, and cosigns.

:class:`Witness` carries the decisions of :mod:`bus.witness.protocol` out against a store and a
key; :func:`create_app` serves it as ``POST /add-checkpoint`` (``casebus witness serve``).
Anyone may submit: the protocol has no authentication beyond the log's signature on the
checkpoint, and a witness that refused strangers would vouch for less, not more.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence

import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, Response

from bus.audit.checkpoint import VerifierKey
from bus.audit.cosignature import cosign, cosigner_vkey
from bus.witness.protocol import (
    MAX_REQUEST_BYTES,
    AddCheckpoint,
    Answer,
    CheckpointHead,
    LogState,
    judge_consistency,
    judge_signatures,
    parse_add_checkpoint,
    parse_checkpoint_head,
)
from bus.witness.store import WitnessStore

__all__ = ["ROUTE_ACCESS", "Witness", "create_app", "logs_by_origin"]

log = structlog.get_logger("casebus.witness")

ROUTE_ACCESS: dict[tuple[str, str], str] = {
    ("POST", "/add-checkpoint"): "public",
    ("GET", "/healthz"): "public",
}
"""Who may call each route: everyone. A checkpoint carries sizes and hashes, no case content,
and the log's signature is the only credential the protocol knows."""


def logs_by_origin(keys: Iterable[VerifierKey]) -> dict[str, tuple[VerifierKey, ...]]:
    """The trusted log keys per origin, taking each key's name as its log's origin (as
    casebus and most C2SP logs name their checkpoint key)."""
    out: dict[str, tuple[VerifierKey, ...]] = {}
    for key in keys:
        out[key.name] = (*out.get(key.name, ()), key)
    return out


class Witness:
    """One witness identity (``name`` and Ed25519 key) over a store and the logs it knows."""

    def __init__(
        self,
        *,
        name: str,
        private_key: Ed25519PrivateKey,
        logs: Mapping[str, Sequence[VerifierKey]],
        store: WitnessStore,
        clock_s: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self._key = private_key
        self._logs = dict(logs)
        self._store = store
        self._clock_s = clock_s

    @property
    def vkey(self) -> str:
        """This witness's cosigner vkey, for verifiers to configure."""
        return cosigner_vkey(self.name, self._key.public_key())

    async def add_checkpoint(self, body: bytes) -> Answer:
        """Answer one add-checkpoint request body."""
        request = parse_add_checkpoint(body)
        if isinstance(request, Answer):
            return request
        head = parse_checkpoint_head(request.note)
        if isinstance(head, Answer):
            return head
        refusal = judge_signatures(request.note, head, self._logs)
        if refusal is None:
            refusal = await self._advance(request, head)
        if refusal is not None:
            log.info(
                "witness.refused",
                origin=head.origin,
                old_size=request.old_size,
                size=head.size,
                status=refusal.status,
                reason=refusal.body.strip(),
            )
            return refusal
        line = cosign(head.body, self.name, self._key, timestamp_s=int(self._clock_s()))
        log.info("witness.cosigned", origin=head.origin, size=head.size)
        return Answer(200, line.line() + "\n")

    async def _advance(self, request: AddCheckpoint, head: CheckpointHead) -> Answer | None:
        new = LogState(head.size, head.root_hash, request.note)
        return await self._store.advance(
            head.origin, new, lambda latest: judge_consistency(latest, request, head)
        )


def create_app(witness: Witness) -> FastAPI:
    """The witness's HTTP API (c2sp.org/tlog-witness)."""
    app = FastAPI(title="casebus witness", docs_url=None, redoc_url=None, openapi_url=None)

    @app.post("/add-checkpoint")
    async def add_checkpoint(request: Request) -> Response:
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_REQUEST_BYTES:
                return PlainTextResponse("request too large\n", status_code=413)
        answer = await witness.add_checkpoint(body)
        # Set verbatim: Starlette would add "; charset=utf-8" to text/x.tlog.size.
        return Response(
            answer.body.encode("utf-8"),
            status_code=answer.status,
            headers={"content-type": answer.content_type},
        )

    @app.get("/healthz")
    async def healthz() -> PlainTextResponse:
        return PlainTextResponse("ok\n")

    return app
