"""The HTTP API every adapter serves (FastAPI), over an :class:`AdapterService`.

No ``from __future__ import annotations`` here: FastAPI reads the route functions' annotations,
which name dependencies local to :func:`create_app`.

``POST /v1/submissions`` takes a department document in the department's vocabulary;
``GET /v1/inbox`` with ``POST /v1/inbox/{message_id}/ack|reject`` is the pull channel;
``GET /v1/messages/{message_id}/audit`` is a department's proof of what became of its own
message, refusals included (:mod:`adapters._framework.audit_trail`);
``/healthz``, ``/readyz`` and ``/metrics`` are for operations. Every 4xx body is
``{"problems": [{"field", "rule", "message", "message_zh", "value"?}, ...]}``.

Who may call what: the operations routes and the API description are public (no case content);
every other route needs the token of an agency this adapter serves, refused as
:mod:`adapters._framework.auth` says (401 ``missing_token`` / ``invalid_token``, 403
``agency_not_served``), and reads or settles only that agency's own messages.
"""

import asyncio
import contextlib
import gc
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any, Final

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from pydantic import BaseModel, Field, StringConstraints, TypeAdapter, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import request_response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from adapters._framework.attachments import attachment_routes
from adapters._framework.audit_trail import audit_trail_routes
from adapters._framework.auth import (
    BEARER,
    bearer_token,
    invalid_token,
    not_served,
    served_reader,
    stored_token,
    token_agency,
)
from adapters._framework.inbound import MAX_IDEMPOTENCY_KEY, Caller, department_problem
from adapters._framework.outbound import pending_deliveries
from adapters._framework.service import AdapterService
from adapters._framework.vocabulary import ENVELOPE_FIELDS, KIND_FIELD, Nested
from adapters._framework.webhook_docs import install_webhook_docs
from bus.errors import (
    DeliveryConflictError,
    DeliveryNotFoundError,
    InactiveTokenError,
    SubmissionRejectedError,
)
from bus.models import MAX_IDENTIFIER_LENGTH

__all__ = ["create_app"]

REQUESTS: Final = Counter(
    "casebus_adapter_requests_total",
    "HTTP requests to adapters, by adapter, route and status.",
    ["adapter", "route", "status"],
)
"""Requests by route and status."""
SUBMIT_LATENCY: Final = Histogram(
    "casebus_adapter_submission_seconds",
    "Time to check, sign and queue one accepted submission.",
    ["adapter"],
)
"""Latency of accepted submissions."""


class ProblemOut(BaseModel):
    """One problem, named in the department's vocabulary."""

    field: str
    rule: str
    message: str
    message_zh: str
    value: Any = None


class Problems(BaseModel):
    """Every problem found with a request."""

    problems: list[ProblemOut]


class SubmissionAccepted(BaseModel):
    """The message id the submission travels under."""

    message_id: uuid.UUID


class InboxItem(BaseModel):
    """One message waiting for the department."""

    cursor: int
    message_id: uuid.UUID
    document: dict[str, Any]


class InboxPage(BaseModel):
    """Pending messages after a cursor; pass ``next_cursor`` as ``after`` for the next page."""

    items: list[InboxItem]
    next_cursor: int


class Rejection(BaseModel):
    """Why the department rejects a message (拒收原因)."""

    jjyy: str = Field(min_length=1, max_length=2000, description="拒收原因 / the reason")


class Settled(BaseModel):
    """The result of an ack or reject."""

    message_id: uuid.UUID
    state: str
    changed: bool


def _problems(status: int, problems: list[dict[str, Any]]) -> JSONResponse:
    return JSONResponse({"problems": problems}, status_code=status)


_IDENTIFIER_SCHEMA: Final[dict[str, Any]] = {
    "type": "string",
    "minLength": 1,
    "maxLength": MAX_IDENTIFIER_LENGTH,
}
_IDENTIFIER_RULES: Final = (
    f"非空，至多 {MAX_IDENTIFIER_LENGTH} 个字符，NFC 规范化，首尾无空白，不含控制字符、格式字符等"
    "不可见字符，空格仅限普通空格 / not blank, at most "
    f"{MAX_IDENTIFIER_LENGTH} characters, NFC, no white space at either end, no control, format, "
    "private-use, unassigned or separator characters, no space but U+0020."
)


def _identifier_schema(what: str) -> dict[str, Any]:
    return _IDENTIFIER_SCHEMA | {"description": f"{what}. {_IDENTIFIER_RULES}"}


def _submission_schema(service: AdapterService) -> dict[str, Any]:
    properties: dict[str, Any] = {
        KIND_FIELD: {
            "type": "string",
            "enum": service.vocabulary.codes(service.sends),
            "description": "业务类型 / the message kind",
        },
        "ajbh": _identifier_schema("案件编号 / case number"),
        "jsdw": {"type": "array", "items": {"type": "string"}, "description": "接收单位"},
    }
    for name, spec in ENVELOPE_FIELDS.items():
        if name not in properties and not isinstance(spec, Nested):
            properties.setdefault(name, {"description": spec})
    for name in ("glbh", "yyxx"):  # thread ids follow the case number's rules
        properties[name] = _identifier_schema(str(ENVELOPE_FIELDS[name]))
    answers = _answers(service)
    if answers:
        properties["glbh"]["description"] += (
            " 答复类文书必须填写 glbh（所答复消息的 xxbh）或 yyxx，否则 422 reply_needs_original / "
            "required (or yyxx) for an answer, else 422 `reply_needs_original`: "
            + "; ".join(answers)
        )
    return {
        "type": "object",
        "required": [KIND_FIELD, "ajbh", "jsdw"],
        "properties": properties,
        "additionalProperties": True,
    }


def _answers(service: AdapterService) -> list[str]:
    """The kinds this adapter sends that answer an earlier message, with the deadlines they
    close (the SLA engine finds those by the original's id)."""
    replies = service.rules.policies.replies()
    return [
        f"{service.vocabulary.code(k)} (`{k}`, closes {', '.join(replies[k])})"
        for k in service.sends
        if k in replies
    ]


_SUBMIT_REFUSALS: Final = (
    "\n\nRefused with 422 before anything is queued, as the bus would refuse or ignore it: "
    "a recipient (`jsdw[i]`) the routing policy does not allow this agency to send this kind "
    "to, with the router's rule (`unauthorized_route`, `unknown_agency`, "
    "`sender_kind_not_allowed`); an answer without `glbh` (the id of the message it answers) "
    "or `yyxx`, rule `reply_needs_original`, since the deadline it closes is found by that id "
    "and would otherwise stay open."
)


def create_app(service: AdapterService, *, manage_service: bool = True) -> FastAPI:
    """The FastAPI app of ``service`` and its spec's own routes; with ``manage_service`` its
    lifespan starts and stops the service."""
    kind = service.config.adapter_kind
    max_body = service.config.max_body_bytes

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if manage_service:
            await service.start()
            # The process serves this adapter from now on. A full collection walked the ~90,000
            # objects of the set-up (the app, its schemas, the codec) for 50-70 ms each time,
            # holding every request in flight meanwhile, and never freed one of them.
            gc.collect()
            gc.freeze()
        try:
            yield
        finally:
            if manage_service:
                await service.stop()

    app = FastAPI(
        title=f"casebus {kind} adapter",
        version="1",
        description=(
            "提交本部门业务文书、接收总线消息 / submit documents in the department's vocabulary "
            "and receive bus messages by webhook or pull."
        ),
        lifespan=lifespan,
    )
    install_webhook_docs(app, service)  # the callbacks a department receives (OpenAPI 3.1)

    app.add_middleware(_CountRequests, adapter=kind)

    @app.exception_handler(RequestValidationError)
    async def bad_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            department_problem(
                ".".join(str(p) for p in e.get("loc", ())[1:]) or "$",
                str(e.get("type", "invalid")),
                str(e.get("msg", "invalid")),
                "请求参数无效",
            )
            for e in exc.errors()
        ]
        return _problems(422, problems)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail
        if isinstance(detail, list):
            return JSONResponse(
                {"problems": detail}, status_code=exc.status_code, headers=exc.headers
            )
        problem = department_problem("$", "http_error", str(detail), str(detail))
        return JSONResponse(
            {"problems": [problem]}, status_code=exc.status_code, headers=exc.headers
        )

    agency_of = served_reader(lambda: service.pool, lambda agency: serves(agency))

    Agency = Annotated[str, Depends(agency_of)]

    def serves(agency: str) -> bool:
        return service.config.agency(agency) is not None

    @contextlib.asynccontextmanager
    async def submitting(request: Request) -> AsyncIterator[_Submitting]:
        """The caller of ``POST /v1/submissions``, refused as :func:`served_reader` refuses.

        A body of at most :data:`_READ_FIRST` bytes (declared) is read first; then the token,
        the Idempotency-Key's earlier submission and the submission itself take one connection
        and two statements, or one for a token this process found active before (its agency
        is remembered, and the statement that queues the submission checks it is still
        active). A larger body is read only once the token is found good, as every other
        route's, and never while a connection is held for it."""
        token = bearer_token(request)
        declared = request.headers.get("content-length", "")
        if not (declared.isdigit() and int(declared) <= _READ_FIRST):
            agency = await token_agency(service.pool, token)
            if agency is None:
                raise invalid_token()
            if not serves(agency):
                raise not_served(agency)
            yield _Submitting(agency, token=stored_token(token))
            return
        body = None if int(declared) > max_body else await _read(request, max_body)
        stored = stored_token(token)
        if stored is None:
            raise invalid_token()
        async with service.pool.acquire() as conn:
            known = service.submitter.tokens.get(stored)
            if known is not None and serves(known):
                yield _Submitting(
                    known, conn, None, body, too_large=body is None, token=stored, known=True
                )
                return
            key = request.headers.get("idempotency-key")
            caller = await service.submitter.caller(conn, stored, key)
            if caller.agency_id is None:
                raise invalid_token()
            if not serves(caller.agency_id):
                raise not_served(caller.agency_id)
            yield _Submitting(
                caller.agency_id, conn, caller, body, too_large=body is None, token=stored
            )

    @app.post(
        "/v1/submissions",
        status_code=202,
        response_model=SubmissionAccepted,
        responses={
            200: {"model": SubmissionAccepted, "description": "a replay of an Idempotency-Key"},
            400: {"model": Problems},
            401: {"model": Problems},
            403: {"model": Problems},
            409: {"model": Problems},
            413: {"model": Problems},
            422: {"model": Problems},
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _submission_schema(service)}},
            }
        },
        summary="提交业务文书 / submit a document",
        description=(
            "Submit one document in the department's vocabulary; `Idempotency-Key` makes a retry "
            "safe. Envelope fields: "
            + ", ".join(f"`{k}`" for k in ENVELOPE_FIELDS if k not in ("xxbh", "fssj"))
            + "."
            + _SUBMIT_REFUSALS
            + "\n\n"
            + service.vocabulary.describe(service.sends)
        ),
    )
    async def submit(
        # The parameters describe the route (its security scheme and header) for the API
        # description; serve_submission below serves it.
        _: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
        idempotency_key: Annotated[str | None, Header(max_length=MAX_IDEMPOTENCY_KEY)] = None,
    ) -> Response:
        raise AssertionError("POST /v1/submissions is served by serve_submission")

    async def serve_submission(request: Request) -> Response:
        """``POST /v1/submissions`` as :func:`submit` describes it, checked in the order FastAPI
        checks a route (the token's dependency, then the header, then the handler), without
        FastAPI resolving dependencies for each request: that took a fifth of the adapter's
        CPU per submission, more than the route's own work but signing and building the
        envelope. A token known from before is checked last, by the statement that queues the
        submission; a refusal before that checks it first, so the answers keep their order."""
        try:
            async with submitting(request) as caller:
                started = time.perf_counter()  # as the handler's time was after the token's
                idempotency_key = request.headers.get("idempotency-key")
                if idempotency_key is not None:
                    try:
                        _check_idempotency_key(idempotency_key)
                    except RequestValidationError:
                        await confirm(caller)
                        raise
                body = caller.body
                if body is None and not caller.too_large:  # not read before the token's check
                    body = await _read(request, max_body)
                if body is None:
                    await confirm(caller)
                    return _too_large(max_body)
                try:
                    accepted = await service.submitter.submit(
                        caller.agency,
                        body,
                        idempotency_key=idempotency_key,
                        conn=caller.conn,
                        caller=caller.caller,
                        token=caller.token,
                        known=caller.known,
                    )
                except SubmissionRejectedError as e:
                    return _problems(e.status, e.problems)
        except InactiveTokenError:
            raise invalid_token() from None
        SUBMIT_LATENCY.labels(adapter=kind).observe(time.perf_counter() - started)
        return JSONResponse(
            {"message_id": str(accepted.message_id)}, status_code=200 if accepted.replay else 202
        )

    async def confirm(caller: _Submitting) -> None:
        """For a known token (not looked up for this request): InactiveTokenError if it was
        revoked, before any other refusal."""
        if caller.known:
            assert caller.token is not None
            await service.submitter.confirm(caller.conn, caller.token, caller.agency)

    routes = [r for r in app.router.routes if isinstance(r, APIRoute) and r.endpoint is submit]
    if len(routes) != 1:
        raise RuntimeError("the route of POST /v1/submissions was not found to serve it")
    routes[0].app = request_response(serve_submission)

    @app.get(
        "/v1/inbox",
        response_model=InboxPage,
        responses={401: {"model": Problems}, 403: {"model": Problems}},
        summary="拉取待接收消息 / pull pending messages",
        description=(
            "Messages waiting for the department, oldest first; settle each with `ack` or "
            "`reject`, a case's messages in order.\n\n"
            + service.vocabulary.describe(service.receives)
        ),
    )
    async def inbox(
        agency: Agency,
        after: Annotated[int, Query(ge=0, le=2**62)] = 0,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> InboxPage:
        items = await pending_deliveries(
            service.pool, agency, after=after, limit=min(limit, service.config.pull_max_limit)
        )
        page = [InboxItem.model_validate(i) for i in items]
        return InboxPage(items=page, next_cursor=page[-1].cursor if page else after)

    async def settle(agency: str, message_id: uuid.UUID, outcome: Any, reason: str | None) -> Any:
        try:
            changed = await service.settler.settle(
                service.pool, agency, message_id, outcome, reason=reason
            )
        except DeliveryNotFoundError as e:
            return _problems(
                404, [department_problem("message_id", "not_found", str(e), "没有该消息")]
            )
        except DeliveryConflictError as e:
            return _problems(
                409,
                [
                    department_problem(
                        "message_id", "conflict", str(e), "须先处理同一案件的前序消息或该消息已处理"
                    )
                ],
            )
        return Settled(message_id=message_id, state=outcome, changed=changed)

    @app.post(
        "/v1/inbox/{message_id}/ack",
        response_model=Settled,
        responses={401: {"model": Problems}, 404: {"model": Problems}, 409: {"model": Problems}},
        summary="确认接收 / accept a message",
    )
    async def ack(agency: Agency, message_id: uuid.UUID) -> Any:
        return await settle(agency, message_id, "accepted", None)

    @app.post(
        "/v1/inbox/{message_id}/reject",
        response_model=Settled,
        responses={401: {"model": Problems}, 404: {"model": Problems}, 409: {"model": Problems}},
        summary="拒收 / reject a message, with the reason",
    )
    async def reject(agency: Agency, message_id: uuid.UUID, rejection: Rejection) -> Any:
        return await settle(agency, message_id, "rejected", rejection.jjyy)

    app.include_router(audit_trail_routes(service, agency_of))

    @app.get("/healthz", summary="存活检查 / liveness")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", summary="就绪检查 / PostgreSQL and Kafka reachable")
    async def readyz() -> JSONResponse:
        checks = {"postgresql": await _pg_ok(service), "kafka": await _kafka_ok(service)}
        ok = all(checks.values())
        return JSONResponse(
            {"status": "ready" if ok else "not_ready", "checks": checks},
            status_code=200 if ok else 503,
        )

    @app.get("/metrics", summary="Prometheus metrics")
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    app.include_router(attachment_routes(service, service.attachments))
    for install in service.spec.routes:  # the adapter's own routes, after the common ones
        install(app, service)
    return app


class _CountRequests:
    """Counts each request by route and status (:data:`REQUESTS`). A plain ASGI middleware:
    Starlette's ``BaseHTTPMiddleware`` (``@app.middleware``) runs every request through a task
    group and a streamed copy of the response, which cost more CPU than the rest of the
    framework's share of a submission."""

    def __init__(self, app: ASGIApp, *, adapter: str) -> None:
        self._app = app
        self._adapter = adapter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        status = 500  # what the client gets when the app fails before it answers

        async def sent(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._app(scope, receive, sent)
        finally:
            path = getattr(scope.get("route"), "path", "other")
            REQUESTS.labels(adapter=self._adapter, route=path, status=str(status)).inc()


_READ_FIRST: Final = 64 * 1024
"""A submission declaring at most this many bytes is read before its token is looked up, so
that one connection serves the lookup and the submission; no more than uvicorn buffers of a
request before its app reads it."""


@dataclass(frozen=True, slots=True)
class _Submitting:
    """Who submits, and what was done for the submission before its route ran."""

    agency: str
    conn: Any = None
    """The connection the token was looked up on, for the submission too; None: take one."""
    caller: Caller | None = None
    """The token's agency and the key's earlier submission, looked up on ``conn``."""
    body: bytes | None = None
    """The body, read already; None: read it (unless ``too_large``)."""
    too_large: bool = False
    token: bytes | None = None
    """The stored token: the statement that queues the submission checks it is still active."""
    known: bool = False
    """The agency is the one remembered for ``token``, not looked up for this request."""


_IDEMPOTENCY_KEY: Final = TypeAdapter(
    Annotated[str, StringConstraints(max_length=MAX_IDEMPOTENCY_KEY)]
)


def _check_idempotency_key(key: str) -> None:
    """The 422 FastAPI answers for the declared ``Header(max_length=...)``."""
    try:
        _IDEMPOTENCY_KEY.validate_python(key)
    except ValidationError as e:
        errors = [{**error, "loc": ("header", "idempotency-key")} for error in e.errors()]
        raise RequestValidationError(errors) from e


async def _read(request: Request, limit: int) -> bytes | None:
    """The request's body, or None once it exceeds ``limit`` bytes."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def _too_large(limit: int) -> JSONResponse:
    return _problems(
        413,
        [
            department_problem(
                "$",
                "body_too_large",
                f"the body exceeds {limit} bytes",
                f"请求体超过 {limit} 字节上限",
            )
        ],
    )


async def _pg_ok(service: AdapterService) -> bool:
    try:
        return bool(await asyncio.wait_for(service.pool.fetchval("SELECT 1"), 2.0) == 1)
    except Exception:
        return False


async def _kafka_ok(service: AdapterService) -> bool:
    for part in service.relay_bootstrap.split(","):
        host, _, port = part.strip().rpartition(":")
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), 2.0)
        except (OSError, TimeoutError, ValueError):
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True
    return False
