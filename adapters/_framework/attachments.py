"""Case files through every adapter: upload (``POST /v1/attachments``), download
(``GET /v1/attachments/{sha256}``), and the references deliveries bring.

No ``from __future__ import annotations`` here: FastAPI reads the route functions' annotations,
which name dependencies local to :func:`attachment_routes`.

Upload streams the body into the store (never whole in memory), hashing as it goes; the answer
is the reference the department puts in its submission's ``fj``. Download is for the parties of
a message referring to the attachment (its sender, its recipients, the procuratorate's copy),
each through its own adapter with its own token. Every download — allowed or refused — is
written to ``attachment_fetches`` before the answer leaves; a non-party gets 403 whether or not
the file exists, so the answer never tells it that a hash is real. A party asking for a file
the retention sweep deleted gets 410 Gone naming the retention that expired, not 404: the file
existed and is gone for good, by rule.
"""

import base64
import binascii
import re
from collections.abc import AsyncIterator
from typing import Annotated, Any, Final

import structlog
from aiokafka import ConsumerRecord
from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.requests import ClientDisconnect

from adapters._framework.auth import served_reader
from adapters._framework.inbound import department_problem
from adapters._framework.vocabulary import download_path
from bus.attachments import (
    DEFAULT_MEDIA_TYPE,
    AttachmentStore,
    Deletion,
    delivery_role,
    last_deletion,
    parse_range,
    record_fetch,
    record_references,
    record_upload,
    references,
    sm3_of,
    store_from_settings,
)
from bus.db import Conn
from bus.errors import (
    AttachmentNotFoundError,
    AttachmentTooLargeError,
    DigestMismatchError,
    RangeNotSatisfiableError,
)
from bus.inbox import InboxHandler
from bus.models import Envelope

__all__ = ["attachment_routes", "default_store", "referencing"]

log = structlog.get_logger("casebus.adapter.attachments")

_SHA256_PATTERN: Final = r"^[0-9a-f]{64}$"
# As the envelope's Attachment.media_type: what an upload's Content-Type must look like.
_MEDIA_TYPE: Final = re.compile(r"^[\w.+-]+/[\w.+-]+$")


def default_store(service: Any) -> AttachmentStore:
    """The store ``service``'s settings name (``CASEBUS_ATTACHMENT_STORE``): PostgreSQL chunks
    over its pool, or an S3-compatible object store."""
    return store_from_settings(service.settings, lambda: service.pool)


def referencing(agency_id: str, handler: InboxHandler) -> InboxHandler:
    """``handler``, and then the references of each delivered message: ``agency_id`` got it,
    so it may read the attachments it carries (in the same transaction)."""

    async def handle(conn: Conn, envelope: Envelope, record: ConsumerRecord[bytes, bytes]) -> None:
        await handler(conn, envelope, record)
        await record_references(conn, envelope, agency_id, delivery_role(envelope, agency_id))

    return handle


def _problem(status: int, field: str, rule: str, en: str, zh: str, value: Any = None) -> Response:
    problem = department_problem(field, rule, en, zh, value)
    return JSONResponse({"problems": [problem]}, status_code=status)


def _gone(deletion: Deletion) -> Response:
    """410 for a deleted file: which retention expired, from which message, and when the
    sweep deleted it (``retention`` carries the same as fields, for programs)."""
    v = deletion.verdict
    day = v.expires_at.date().isoformat()
    problem = department_problem(
        "sha256",
        "attachment_retention_expired",
        f"the attachment was deleted on {deletion.deleted_at.date().isoformat()} when "
        f"{v.describe()} expired on {day}",
        f"附件保存期限（{v.retention_days} 天，{_RULE_ZH[v.rule]}）已于 {day} 届满，附件已被删除",
        deletion.sha256,
    )
    message = v.message
    retention = {
        "rule": v.rule,
        "retention_days": v.retention_days,
        "kind": None if message is None else message.kind,
        "message_id": None if message is None else message.message_id,
        "message_sent_at": None if message is None else message.sent_at.isoformat(),
        "newest_message_at": None
        if v.newest_message_at is None
        else v.newest_message_at.isoformat(),
        "last_uploaded_at": v.last_uploaded_at.isoformat(),
        "expired_at": v.expires_at.isoformat(),
        "deleted_at": deletion.deleted_at.isoformat(),
    }
    return JSONResponse({"problems": [problem], "retention": retention}, status_code=410)


_RULE_ZH: Final = {
    "kind_retention": "按引用该附件的消息类型",
    "default_retention": "默认期限",
    "unknown_kind_retention": "消息类型不明，按最长期限",
    "upload_grace": "上传后未被引用的宽限期",
}


def _declared_sha256(request: Request) -> str | Response | None:
    """The SHA-256 the uploader declares in ``Repr-Digest`` (or ``Content-Digest``; RFC 9530),
    hex; None when it declares none; a 400 answer when the header is unusable."""
    for header in ("repr-digest", "content-digest"):
        value = request.headers.get(header)
        if value is None:
            continue
        for member in value.split(","):
            name, _, encoded = member.strip().partition("=")
            if name.strip().lower() != "sha-256":
                continue
            encoded = encoded.strip()
            try:
                digest = base64.b64decode(encoded.strip(":"), validate=True)
            except (binascii.Error, ValueError):
                digest = b""
            if len(digest) == 32 and encoded.startswith(":") and encoded.endswith(":"):
                return digest.hex()
            break
        return _problem(
            400,
            header,
            "invalid_digest",
            f"{header} must carry sha-256=:<base64 of the 32-byte digest>:",
            f"{header} 须为 sha-256=:<32 字节摘要的 base64>:",
            value,
        )
    return None


def _media_type(request: Request) -> str | Response:
    raw = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if not raw:
        return DEFAULT_MEDIA_TYPE
    if not _MEDIA_TYPE.match(raw):
        return _problem(
            422,
            "Content-Type",
            "invalid_media_type",
            "Content-Type must be a media type such as application/pdf",
            "Content-Type 须为文件类型，如 application/pdf",
            raw,
        )
    return raw


def attachment_routes(service: Any, store: AttachmentStore | None = None) -> APIRouter:
    """The attachment routes of an adapter app over ``service`` (an AdapterService) and
    ``store`` (by default :func:`default_store`)."""
    the_store = store or default_store(service)
    max_bytes: int = service.settings.attachment_max_bytes
    router = APIRouter()
    agency_of = served_reader(
        lambda: service.pool, lambda agency: service.config.agency(agency) is not None
    )
    Agency = Annotated[str, Depends(agency_of)]
    Sha256 = Annotated[str, Path(pattern=_SHA256_PATTERN, description="lower-case hex SHA-256")]

    def too_large() -> Response:
        return _problem(
            413,
            "$",
            "attachment_too_large",
            f"an attachment may have at most {max_bytes} bytes",
            f"附件不得超过 {max_bytes} 字节",
        )

    def deleted_meanwhile() -> Response:
        # The store found these bytes stored already, and the retention sweep deleted that
        # copy before the upload was recorded: this upload's bytes were not kept either.
        log.warning("adapter.attachment_deleted_during_upload")
        return _problem(
            409,
            "$",
            "attachment_deleted_during_upload",
            "the stored copy of these bytes was deleted by the retention sweep while they "
            "were uploaded; nothing was kept: upload them again",
            "上传期间该文件的已存副本因保存期限届满被删除，本次未保存，请重新上传",
        )

    @router.post(
        "/v1/attachments",
        status_code=201,
        summary="上传附件 / upload a case file",
        description=(
            "The body is the file itself (streamed; `Content-Type` its media type). Optional "
            "`Repr-Digest: sha-256=:<base64>:` makes the store refuse bytes that hash otherwise. "
            "The answer gives `sha256` and `sm3` (SM3, hex; the sm2 profile's envelopes carry it). "
            "201 with the reference to put in a submission's `fj` (add `mc`, the name); 200 when "
            "the same bytes were stored before. At most "
            f"{max_bytes} bytes."
        ),
        responses={200: {"description": "already stored"}, 413: {}, 422: {}},
    )
    async def upload(request: Request, agency: Agency) -> Response:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_bytes:
            return too_large()
        media_type = _media_type(request)
        if isinstance(media_type, Response):
            return media_type
        expected = _declared_sha256(request)
        if isinstance(expected, Response):
            return expected
        try:
            stored = await the_store.put(
                request.stream(),
                media_type=media_type,
                max_bytes=max_bytes,
                expected_sha256=expected,
            )
        except AttachmentTooLargeError:
            return too_large()
        except DigestMismatchError as e:
            return _problem(
                422,
                "Repr-Digest",
                "digest_mismatch",
                f"the body's SHA-256 is {e.actual}, not the declared {e.expected}; "
                "nothing was stored",
                "文件的 SHA-256 与声明的不一致，未保存",
                e.expected,
            )
        except ClientDisconnect:
            log.info("adapter.attachment_upload_cut", agency=agency)
            return Response(status_code=400)
        except AttachmentNotFoundError:
            return deleted_meanwhile()
        a = stored.attachment
        try:
            await record_upload(service.pool, a.sha256, agency, store=the_store, sm3=stored.sm3)
        except AttachmentNotFoundError:
            return deleted_meanwhile()
        log.info(
            "adapter.attachment_stored",
            agency=agency,
            sha256=a.sha256,
            size_bytes=a.size_bytes,
            created=stored.created,
        )
        body = {
            "sha256": a.sha256,
            "sm3": stored.sm3,
            "size_bytes": a.size_bytes,
            "media_type": a.media_type,
            "uri": a.uri,
            "fj": {"lx": a.media_type, "dx": a.size_bytes, "hash": a.sha256, "dz": a.uri},
        }
        return JSONResponse(
            body,
            status_code=201 if stored.created else 200,
            headers={"Location": download_path(a.sha256)},
        )

    @router.get(
        "/v1/attachments/{sha256}",
        summary="下载附件 / download a case file",
        description=(
            "For the sender, the recipients and the procuratorate's copy of a message that "
            "refers to the attachment, each with its own token at its own adapter; anyone else "
            "gets 403 whether or not it exists. `Range: bytes=…` gives 206. Every request is "
            "audited. Headers: `Content-Type`, `Repr-Digest`, `ETag` (the SHA-256), "
            "`X-Casebus-SM3` (the SM3 digest, hex, when the upload computed it). A file whose "
            "retention ran out and that the retention sweep deleted answers 410, naming the "
            "retention that expired."
        ),
        response_class=StreamingResponse,
        responses={
            206: {"description": "a byte range"},
            403: {},
            404: {},
            410: {"description": "deleted by the retention sweep; the body names the rule"},
            416: {},
        },
    )
    async def download(request: Request, agency: Agency, sha256: Sha256) -> Response:
        refs = await references(service.pool, sha256)
        mine = sorted({r.case_id for r in refs if r.agency_id == agency})
        wanted = request.headers.get("range")
        if not mine:
            await record_fetch(
                service.pool,
                sha256=sha256,
                agency_id=agency,
                case_ids=(r.case_id for r in refs),
                outcome="refused",
                byte_range=wanted,
            )
            log.warning("adapter.attachment_refused", agency=agency, sha256=sha256)
            return _problem(
                403,
                "sha256",
                "not_a_party",
                "only the sender, the recipients and the procuratorate of a message referring "
                "to this attachment may download it",
                "仅引用该附件的消息的发送单位、接收单位和检察机关可以下载",
            )
        index = await record_fetch(
            service.pool,
            sha256=sha256,
            agency_id=agency,
            case_ids=mine,
            outcome="allowed",
            byte_range=wanted,
        )
        log.info(
            "adapter.attachment_fetched",
            agency=agency,
            sha256=sha256,
            case_ids=mine,
            fetch_id=index,
            range=wanted,
        )
        found = await the_store.stat(sha256)
        if found is None:
            deletion = await last_deletion(service.pool, sha256)
            if deletion is not None:
                return _gone(deletion)
            return _problem(
                404, "sha256", "not_stored", "the attachment is not in the store", "附件未上传"
            )
        try:
            part = parse_range(wanted, found.size_bytes)
        except RangeNotSatisfiableError:
            problem = department_problem(
                "Range", "range_not_satisfiable", "no such bytes", "请求的字节范围无效", wanted
            )
            return JSONResponse(
                {"problems": [problem]},
                status_code=416,
                headers={"Content-Range": f"bytes */{found.size_bytes}"},
            )
        digest = base64.b64encode(bytes.fromhex(sha256)).decode()
        headers = {
            "Accept-Ranges": "bytes",
            "ETag": f'"{sha256}"',
            "Repr-Digest": f"sha-256=:{digest}:",
            "X-Casebus-Fetch-Id": str(index),
        }
        # No SM3 in the IANA HTTP Digest Algorithm registry (RFC 9530), so no Repr-Digest
        # member for it: a header of our own, the whole file's digest also on a 206.
        sm3 = await sm3_of(service.pool, sha256)
        if sm3 is not None:
            headers["X-Casebus-SM3"] = sm3
        start, end = (0, found.size_bytes) if part is None else (part.start, part.end)
        headers["Content-Length"] = str(end - start)
        if part is not None:
            headers["Content-Range"] = part.content_range
        body: AsyncIterator[bytes] = the_store.read(sha256, start=start, end=end)
        return StreamingResponse(
            body,
            status_code=200 if part is None else 206,
            media_type=found.media_type,
            headers=headers,
        )

    return router
