"""The callbacks a department receives, published in the adapter's ``/openapi.json``.

Why this module: an integrator builds the receiving end of a webhook from the API description
alone, and until now only :mod:`adapters._framework.outbound` said how a delivery is signed and
what each answer leads to. OpenAPI 3.1 has a ``webhooks`` section for exactly this; here it is
filled with one entry per kind the department can be sent (its own kinds and the bus's
receipts and deadline events), each with the signature headers, the body in the department's
vocabulary and the meaning of every answer. The facts come from the code that acts on them
(header names, the retried statuses), so the description cannot drift from the behaviour.
``docs/webhooks.md`` is the prose and the worked examples.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from fastapi import FastAPI

from adapters._framework.outbound import SIGNATURE_HEADER, TIMESTAMP_HEADER
from adapters._framework.service import AdapterService
from adapters._framework.vocabulary import BUS_KINDS, KIND_FIELD
from adapters._framework.webhooks import _RETRIED_4XX

__all__ = ["MESSAGE_ID_HEADER", "RECOMMENDED_MAX_SKEW_S", "install_webhook_docs", "webhooks"]

MESSAGE_ID_HEADER: Final = "X-Casebus-Message-Id"
"""The message's id, the same on every retry: a department deduplicates by it."""

RECOMMENDED_MAX_SKEW_S: Final = 300
"""How far a department should let ``X-Casebus-Timestamp`` be from its own clock. Each attempt
is signed when it is sent, so a retry always carries a fresh timestamp."""

_RETRIED: Final = ", ".join(str(s) for s in sorted(_RETRIED_4XX))

_SIGNATURE_TEXT: Final = (
    f"Every delivery is signed. `{SIGNATURE_HEADER}` is `sha256=` followed by the lower-case hex "
    f"HMAC-SHA256, keyed with the agency's webhook secret (the bytes of the adapter's "
    f"`<agency>.webhook-secret` file, white space at either end removed), of the ASCII "
    f"`{TIMESTAMP_HEADER}` value, one `.` and the request body exactly as received: "
    f'`HMAC-SHA256(secret, timestamp + "." + body)`. Compute it over the raw body before parsing '
    f"the JSON, compare in constant time, and refuse a timestamp more than "
    f"{RECOMMENDED_MAX_SKEW_S} s from your clock. See docs/webhooks.md for Java and Python."
)

_ANSWERS_TEXT: Final = (
    "What each answer leads to: any 2xx accepts the message (the adapter sends `bus.ack` to its "
    "sender, signed as the agency; a `bus.*` or `audit.*` message needs no answer and gets "
    f"none). Any other 4xx except {_RETRIED} rejects it for good: the "
    "reason is read from the JSON body's `jjyy` (or `reason`, `yy`), else the body's text, and "
    "the sender gets `bus.nack` code `rejected_by_department`. "
    f"{_RETRIED}, any 5xx, a timeout or a refused connection are not about the message (a wrong "
    "secret or URL, throttling): the same message is offered again, with exponential backoff "
    "and a circuit breaker, until it is accepted or rejected, never dropped. So answering a bad "
    "signature with 401 is safe: nothing is lost while the operator fixes the secret. A case's "
    "messages come one at a time, in order: the next waits until this one is settled."
)


def _header(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "in": "header",
        "required": True,
        "description": description,
        "schema": schema,
    }


_HEADERS: Final = [
    _header(
        TIMESTAMP_HEADER,
        "Unix time in seconds (decimal ASCII) when this attempt was signed.",
        {"type": "string", "pattern": "^[0-9]+$"},
    ),
    _header(
        SIGNATURE_HEADER,
        'sha256=<lower-case hex HMAC-SHA256(secret, timestamp + "." + body)>',
        {"type": "string", "pattern": "^sha256=[0-9a-f]{64}$"},
    ),
    _header(
        MESSAGE_ID_HEADER,
        "消息编号 / the message id (`xxbh`), the same on every retry: deduplicate by it.",
        {"type": "string", "format": "uuid"},
    ),
]

_ENVELOPE_PROPERTIES: Final[dict[str, Any]] = {
    "xxbh": {"type": "string", "format": "uuid", "description": "消息编号 / message id"},
    "ajbh": {"type": "string", "description": "案件编号 / case number"},
    "fsdw": {"type": "string", "description": "发送单位 / sending agency id"},
    "jsdw": {"type": "array", "items": {"type": "string"}, "description": "接收单位"},
    "glbh": {"type": "string", "description": "关联编号 / the thread (correlation id)"},
    "yyxx": {"type": ["string", "null"], "description": "引起本消息的消息编号 / causation id"},
    "fssj": {"type": "string", "format": "date-time", "description": "发送时间 / sent at"},
    "qx": {"type": ["string", "null"], "format": "date-time", "description": "期限 / due at"},
    "fj": {
        "type": "array",
        "description": "附件 / attachments: mc, lx, dx, hash, dz, sm3 (the SM3 digest, when "
        "the sender's envelope carries it), and xzdz (where to download it from this adapter) "
        "when the bus stores it",
        "items": {"type": "object"},
    },
}

_ANSWER_BODY: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {"jjyy": {"type": "string", "description": "拒收原因 / the reason"}},
}


def _operation(service: AdapterService, kind: str) -> dict[str, Any]:
    code = service.vocabulary.code(kind)
    body = {
        "type": "object",
        "required": [KIND_FIELD, "xxbh", "ajbh", "fsdw"],
        "properties": {
            KIND_FIELD: {"const": code, "description": f"业务类型 / `{kind}`"},
            **_ENVELOPE_PROPERTIES,
        },
        "additionalProperties": True,
    }
    return {
        "post": {
            "operationId": f"deliver_{kind.replace('.', '_')}",
            "summary": f"投递 {code} / delivery of `{kind}` to the department's webhook",
            "description": "\n\n".join(
                p
                for p in (_SIGNATURE_TEXT, _ANSWERS_TEXT, service.vocabulary.describe([kind]))
                if p
            ),
            "parameters": _HEADERS,
            "requestBody": {
                "required": True,
                "content": {"application/json; charset=utf-8": {"schema": body}},
            },
            "responses": {
                "2XX": {"description": "接收 / accepted: the sender gets `bus.ack`"},
                "4XX": {
                    "description": f"拒收 / rejected, except {_RETRIED} (offered again): the "
                    "sender gets `bus.nack` with the reason",
                    "content": {"application/json": {"schema": _ANSWER_BODY}},
                },
                "401": {"description": "签名无效 / bad signature or stale timestamp: retried"},
                "5XX": {"description": "暂不可用 / unavailable: retried with backoff"},
            },
        }
    }


def webhooks(service: AdapterService) -> dict[str, Any]:
    """The OpenAPI 3.1 ``webhooks`` of ``service``: one per kind its departments can be sent."""
    kinds = [*service.receives, *(k.kind for k in BUS_KINDS)]
    return {kind: _operation(service, kind) for kind in dict.fromkeys(kinds)}


def install_webhook_docs(app: FastAPI, service: AdapterService) -> None:
    """Make ``app``'s OpenAPI document carry :func:`webhooks` of ``service``."""
    plain: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        document = plain()  # FastAPI caches it: the section is added to the cached document
        document.setdefault("webhooks", {}).update(webhooks(service))
        return document

    app.openapi = openapi  # type: ignore[method-assign]
