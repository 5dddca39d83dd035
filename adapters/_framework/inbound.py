"""Department → bus: check a submitted document, sign it, and queue it in the outbox.

A submission is durable once :meth:`Submitter.submit` returns: its envelope, signed with the
agency's key, sits in the outbox table, written in the same transaction as the idempotency
record of its ``Idempotency-Key``. Kafka need not be up; the relay publishes it later.

Before that, a submission the bus would refuse or silently leave unanswered is refused here,
with every problem named: a recipient the routing policy (``deploy/routing.yaml``) does not
allow, with the router's own rule names (``unauthorized_route``...; the router still checks),
and an answer (``criminal.receipt``, ``opinion.response``...) that names neither the message it
answers (``glbh``) nor its cause (``yyxx``), which would leave the deadline it closes open
forever (rule ``reply_needs_original``; which kinds answer which, :meth:`PolicySet.replies`).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import asyncpg
import structlog
from pydantic import ValidationError

from adapters._framework.checks import DeadlineRules, SubmissionCheck, run_checks
from adapters._framework.documents import department_problem, parse_document
from adapters._framework.vocabulary import KIND_FIELD, Vocabulary
from bus.agencies import load_registry
from bus.attachments import (
    AttachmentStore,
    bus_attachments,
    prepare_submission,
    record_references,
)
from bus.codec import Codec, default_codec
from bus.errors import (
    InactiveTokenError,
    Problem,
    SubmissionRejectedError,
    ValidationFailedError,
)
from bus.models import Envelope, PayloadModel, Signature, validate_payload
from bus.models._problems import problems_from_validation_error
from bus.outbox import OUTBOX_COLUMNS, OutboxWriter
from bus.routing import RoutingPolicy, load_policy
from bus.settings import Settings
from bus.signing import Signer, sign_and_encode
from bus.sla.clock import Clock, RealClock

__all__ = [
    "Accepted",
    "Caller",
    "Submitter",
    "TokenCache",
    "department_problem",
]

log = structlog.get_logger("casebus.adapter.inbound")

MAX_IDEMPOTENCY_KEY: Final = 200
KNOWN_TOKENS: Final = 10_000
"""At most this many tokens' agencies are remembered per process (:class:`TokenCache`)."""

# A submission's idempotency record and its outbox row, in one statement: atomic on its own, so
# without attachments to lock and reference it needs no BEGIN and COMMIT of its own. Without an
# Idempotency-Key ($1 NULL) the row is always queued; with one, only if this statement recorded
# the key (ON CONFLICT: a concurrent request with the key committed first). The message id is
# fresh, so an outbox row with it already there is an error, not a replay. With the stored token
# ($11), nothing is written unless it is still active for the agency, judged in this statement:
# a known token (TokenCache) needs no lookup of its own before it, and a token revoked before
# the statement began queues nothing. Answers _QUEUED, 'recorded' (the key was recorded before)
# or _INACTIVE.
_QUEUE: Final = f"""
WITH caller AS (
    SELECT $11::bytea IS NULL OR EXISTS (
        SELECT FROM adapter_tokens
        WHERE token_sha256 = $11::bytea AND agency_id = $4::text AND revoked_at IS NULL
    ) AS active
), recorded AS (
    INSERT INTO adapter_submissions
        (agency_id, idempotency_key, body_sha256, message_id, kind, case_id)
    SELECT $4::text, $1::text, $2::bytea, $5::uuid, $3::text, $6::text
    FROM caller WHERE caller.active AND $1::text IS NOT NULL
    ON CONFLICT (agency_id, idempotency_key) DO NOTHING
    RETURNING true
), queued AS (
    INSERT INTO outbox ({OUTBOX_COLUMNS})
    SELECT $4::text, $5::uuid, $6::text, $7::text, $8::bytea, $9::bytea, $10::jsonb
    FROM caller WHERE caller.active AND ($1::text IS NULL OR EXISTS (SELECT FROM recorded))
    RETURNING true
)
SELECT CASE
    WHEN EXISTS (SELECT FROM queued) THEN 'queued'
    WHEN (SELECT active FROM caller) THEN 'recorded'
    ELSE 'inactive'
END
"""
_QUEUED: Final = "queued"
_INACTIVE: Final = "inactive"


@dataclass(frozen=True, slots=True)
class Caller:
    """Whom a token belongs to (None: unknown or revoked) and, for an Idempotency-Key, the
    body hash and message id of its earlier submission (None: the key is new)."""

    agency_id: str | None
    earlier: tuple[bytes, uuid.UUID] | None


_CALLER: Final = """
SELECT t.agency_id, s.body_sha256, s.message_id
FROM adapter_tokens t
LEFT JOIN adapter_submissions s ON s.agency_id = t.agency_id AND s.idempotency_key = $2::text
WHERE t.token_sha256 = $1 AND t.revoked_at IS NULL
"""


class TokenCache:
    """The agency of each token this process found active, so that a submission with a token
    seen before needs no lookup of its own before the statement that queues it, which checks
    the token is still active (:data:`_QUEUE`): a revocation is seen by the next submission.

    Sound because a token's agency never changes: an ``adapter_tokens`` row is only ever updated
    to revoke it (``revoked_at``), and its key is the hash of a fresh random token. Only tokens
    found active are kept, so random tokens cannot grow it; at most ``size``, the oldest
    dropped first (a dropped token is looked up again, nothing worse)."""

    def __init__(self, size: int = KNOWN_TOKENS) -> None:
        self._size = size
        self._agencies: dict[bytes, str] = {}

    def __len__(self) -> int:
        return len(self._agencies)

    def get(self, token_sha256: bytes) -> str | None:
        """The agency of a token found active before, or None: look it up."""
        return self._agencies.get(token_sha256)

    def add(self, token_sha256: bytes, agency_id: str) -> None:
        """Remember a token just found active."""
        if token_sha256 not in self._agencies and len(self._agencies) >= self._size:
            del self._agencies[next(iter(self._agencies))]
        self._agencies[token_sha256] = agency_id

    def forget(self, token_sha256: bytes) -> None:
        """Drop a token found inactive."""
        self._agencies.pop(token_sha256, None)


@dataclass(frozen=True, slots=True)
class Accepted:
    """A submission in the outbox: its message id, and whether this was a replay of the key."""

    message_id: uuid.UUID
    replay: bool


def _as_department(problem: Problem, field: str) -> dict[str, Any]:
    return department_problem(
        field,
        problem.rule,
        problem.message,
        problem.message_zh or problem.message,
        problem.value,
    )


class Submitter:
    """Turns department documents into signed envelopes in the outbox."""

    def __init__(
        self,
        settings: Settings,
        *,
        vocabulary: Vocabulary,
        sends: list[str],
        signers: Mapping[str, Signer],
        pool: asyncpg.Pool,
        codec: Codec | None = None,
        on_commit: Callable[[str], None] | None = None,
        routing: RoutingPolicy | None = None,
        replies: Mapping[str, Sequence[str]] | None = None,
        clock: Clock | None = None,
        attachments: AttachmentStore | None = None,
        checks: Sequence[SubmissionCheck] = (),
        rules: DeadlineRules | None = None,
    ) -> None:
        self._attachments = attachments
        self._checks = tuple(checks)
        # The router's policy and the SLA engine's, read from the files the settings name.
        self._rules = rules or DeadlineRules.from_settings(settings)
        self._vocabulary = vocabulary
        self._clock = clock or RealClock()
        self._sends = list(sends)
        self._signers = dict(signers)
        self._pool = pool
        self._codec = codec or default_codec()
        self._writer = OutboxWriter(settings, codec=self._codec)
        # The 国密 profile binds each stored file by its SM3 digest too (issue #19).
        self._fill_sm3 = settings.crypto_profile == "sm2"
        self._on_commit = on_commit
        self._routing = routing or load_policy(
            settings.routing_policy_file, load_registry(settings.agencies_file)
        )
        self._replies = dict(replies if replies is not None else self._rules.policies.replies())
        self.tokens = TokenCache()
        """The agencies of the tokens :meth:`caller` found active."""

    @property
    def sends(self) -> list[str]:
        """The kinds departments may submit here."""
        return list(self._sends)

    async def submit(
        self,
        agency_id: str,
        body: bytes,
        *,
        idempotency_key: str | None = None,
        conn: Any = None,
        caller: Caller | None = None,
        token: bytes | None = None,
        known: bool = False,
    ) -> Accepted:
        """Check, sign and queue one document for ``agency_id`` (already authenticated), on a
        connection of the pool or ``conn``; ``caller`` (from :meth:`caller` on ``conn``, for
        the same key) saves looking the key up again.

        ``token``: the stored token the agency was found by; nothing is queued unless it is
        still active for the agency when the queuing statement runs (else
        :class:`InactiveTokenError`), so a revocation during the request is not missed.
        ``known``: the agency came from :attr:`tokens` (with ``token`` and ``conn``, no
        ``caller``): nothing has checked the token for this request before the queuing
        statement, so a refusal before it first looks the token and the key up and answers as
        that lookup would have first (:class:`InactiveTokenError`, or the key's earlier
        answer for a document refused now)."""
        assert not known or (token is not None and conn is not None and caller is None)
        try:
            signer = self._signer(agency_id)
            _check_key(idempotency_key)
        except SubmissionRejectedError:
            if known:
                assert token is not None
                await self.confirm(conn, token, agency_id)
            raise
        digest = hashlib.sha256(body).digest()
        if conn is None:
            async with self._pool.acquire() as own:
                accepted = await self._queue(
                    own, agency_id, signer, body, digest, idempotency_key, token=token
                )
        else:
            accepted = await self._queue(
                conn, agency_id, signer, body, digest, idempotency_key, caller, token, known
            )
        if self._on_commit is not None and not accepted.replay:
            self._on_commit(agency_id)
        return accepted

    async def caller(self, conn: Any, token_sha256: bytes, idempotency_key: str | None) -> Caller:
        """The agency of an active token (see :func:`~adapters._framework.auth.stored_token`)
        and what ``idempotency_key`` answered it before, in one query; pass it to
        :meth:`submit` with the same connection. An active token is remembered in
        :attr:`tokens`."""
        row = await conn.fetchrow(_CALLER, token_sha256, idempotency_key)
        if row is None:
            return Caller(None, None)
        agency_id = str(row["agency_id"])
        self.tokens.add(token_sha256, agency_id)
        earlier = None if row["message_id"] is None else (bytes(row[1]), row["message_id"])
        return Caller(agency_id, earlier)

    async def confirm(
        self, conn: Any, token_sha256: bytes, agency_id: str, idempotency_key: str | None = None
    ) -> Caller:
        """:meth:`caller` for a token known to belong to ``agency_id``, before refusing its
        request for anything else: :class:`InactiveTokenError` (and the token forgotten) if it
        is no longer active for it, as the lookup would have refused it first."""
        found = await self.caller(conn, token_sha256, idempotency_key)
        if found.agency_id != agency_id:
            self.tokens.forget(token_sha256)
            raise InactiveTokenError()
        return found

    def _signer(self, agency_id: str) -> Signer:
        signer = self._signers.get(agency_id)
        if signer is None:
            raise SubmissionRejectedError(
                403,
                [
                    department_problem(
                        "fsdw",
                        "agency_not_served",
                        "this adapter does not serve the token's agency",
                        "本适配器不为该令牌所属单位提供服务",
                        agency_id,
                    )
                ],
            )
        return signer

    async def _queue(
        self,
        conn: Any,
        agency_id: str,
        signer: Signer,
        body: bytes,
        digest: bytes,
        idempotency_key: str | None,
        caller: Caller | None = None,
        token: bytes | None = None,
        known: bool = False,
    ) -> Accepted:
        """Queue the document unless the key answers it; ``caller``: the key already looked up.
        With ``known`` (see :meth:`submit`) the key is not looked up first: the queuing
        statement tells a key recorded before, and a replay is rare enough to be built again."""
        if idempotency_key is not None and not known:
            if caller is None:
                replay = await self._earlier(conn, agency_id, idempotency_key, digest)
            elif caller.earlier is not None:
                replay = _replay(idempotency_key, digest, *caller.earlier)
            else:
                replay = None
            if replay is not None:
                return replay
        try:
            envelope, value = self._envelope(agency_id, body, signer)
            if bus_attachments(envelope):
                async with conn.transaction():
                    # In the transaction that records the references: it locks the files
                    # against the retention sweep until the references are committed
                    # (bus.attachments). Under the sm2 profile the check may fill in SM3
                    # digests and sign again, so the outbox row is made from what it returns.
                    envelope, value = await self._check_attachments(
                        conn, agency_id, envelope, value, signer
                    )
                    status = await conn.fetchval(
                        _QUEUE,
                        *self._args(envelope, value, agency_id, idempotency_key, digest),
                        token,
                    )
                    self._active(status, token)  # raised in the transaction: it rolls back
                    if status == _QUEUED:
                        # The sender may read the case files its message carries.
                        await record_references(conn, envelope, agency_id, "sender")
            else:  # nothing else to write: one statement is the transaction
                status = await conn.fetchval(
                    _QUEUE, *self._args(envelope, value, agency_id, idempotency_key, digest), token
                )
                self._active(status, token)
        except SubmissionRejectedError:
            if not known:
                raise
            assert token is not None
            # Refused before the token and the key were looked up: answer what the lookup,
            # first, would have answered (401; a replay of the key, or its 409).
            earlier = (await self.confirm(conn, token, agency_id, idempotency_key)).earlier
            if idempotency_key is None or earlier is None:
                raise
            return _replay(idempotency_key, digest, *earlier)
        if status != _QUEUED:  # the key was recorded before, or by a concurrent request
            assert idempotency_key is not None
            replay = await self._earlier(conn, agency_id, idempotency_key, digest)
            assert replay is not None
            return replay
        log.info(
            "adapter.submitted",
            agency=agency_id,
            message_id=str(envelope.message_id),
            case_id=envelope.case_id,
            kind=envelope.kind,
        )
        return Accepted(envelope.message_id, replay=False)

    def _active(self, status: str, token: bytes | None) -> None:
        """InactiveTokenError, the token forgotten, if the queuing statement found it revoked."""
        if status == _INACTIVE:
            assert token is not None
            self.tokens.forget(token)
            raise InactiveTokenError()

    def _args(
        self,
        envelope: Envelope,
        value: bytes,
        agency_id: str,
        idempotency_key: str | None,
        digest: bytes,
    ) -> tuple[Any, ...]:
        """The parameters of ``_QUEUE``: the idempotency record and the outbox row
        (``value``: the signed envelope's Kafka value)."""
        row = self._writer.row(envelope, owner=agency_id, value=value)
        return (idempotency_key, digest, envelope.kind, *row)

    async def _check_attachments(
        self, conn: Any, agency_id: str, envelope: Envelope, value: bytes, signer: Signer
    ) -> tuple[Envelope, bytes]:
        """422 naming each ``fj`` entry in the bus's store that the sender did not upload (or
        may not read), or whose size, URI or SM3 digest is not the stored file's. Under the sm2
        crypto profile, the envelope signed again with each such entry's SM3 digest filled in
        from its upload where the department left it out, with its Kafka value; else
        ``envelope`` and ``value`` as they were."""
        if self._attachments is None:
            return envelope, value
        filled, problems = await prepare_submission(
            conn, self._attachments, agency_id, envelope, fill_sm3=self._fill_sm3
        )
        if problems:
            voc = self._vocabulary
            named = [(p, voc.department_path(None, p.path, envelope=True)) for p in problems]
            raise SubmissionRejectedError(422, [_as_department(p, field) for p, field in named])
        if filled is envelope:
            return envelope, value
        return sign_and_encode(filled, signer, codec=self._codec)

    async def _earlier(self, conn: Any, agency_id: str, key: str, digest: bytes) -> Accepted | None:
        row = await conn.fetchrow(
            "SELECT body_sha256, message_id FROM adapter_submissions"
            " WHERE agency_id = $1 AND idempotency_key = $2",
            agency_id,
            key,
        )
        if row is None:
            return None
        return _replay(key, digest, bytes(row["body_sha256"]), row["message_id"])

    # -- checking and building ------------------------------------------------------------------

    def _envelope(self, agency_id: str, body: bytes, signer: Signer) -> tuple[Envelope, bytes]:
        """The department's document as a signed envelope and its Kafka value (encoded once,
        :func:`~bus.signing.sign_and_encode`); SubmissionRejectedError naming every problem."""
        doc = parse_document(body)
        voc = self._vocabulary
        sender = doc.get("fsdw")
        if sender is not None and sender != agency_id:
            raise SubmissionRejectedError(
                403,
                [
                    department_problem(
                        "fsdw",
                        "sender_mismatch",
                        "the token belongs to another agency than fsdw",
                        "令牌所属单位与发送单位不一致，不得代其他单位提交",
                        sender,
                    )
                ],
            )
        code = doc.get(KIND_FIELD)
        kind = voc.kind_of(code) if isinstance(code, str) else None
        if kind is None or kind not in self._sends:
            allowed = "、".join(voc.codes(self._sends))
            problem = department_problem(
                KIND_FIELD,
                "missing" if code is None else "unknown_kind",
                f"{KIND_FIELD} must be one of: {allowed}",
                f"业务类型须为其中之一：{allowed}",
                code,
            )
            raise SubmissionRejectedError(422, [problem])
        now = self._clock.now()
        plain, checked = run_checks(self._checks, kind, doc, self._rules, now)
        env_fields, payload_fields, raw = voc.split_submission(kind, plain)
        raw += checked(payload_fields)
        problems = [_as_department(p, p.path) for p in raw]
        model: PayloadModel | None = None
        try:
            model = validate_payload(kind, payload_fields)
        except ValidationFailedError as e:
            problems += [_as_department(p, voc.department_path(kind, p.path)) for p in e.problems]
        payload = b""
        if model is not None:
            try:
                payload = self._codec.encode_payload(kind, model)
            except ValidationFailedError as e:
                problems += [
                    _as_department(p, voc.department_path(kind, p.path)) for p in e.problems
                ]
        message_id = uuid.uuid4()
        data: dict[str, Any] = {
            "message_id": message_id,
            "kind": kind,
            "schema_version": model.SCHEMA_VERSION if model is not None else 1,
            "sender": agency_id,
            "correlation_id": str(message_id),
            "sent_at": now,
            "payload": payload,
            "attachments": [],
            "signature": Signature(algorithm=signer.algorithm, key_id=signer.key_id, value=b""),
        }
        data.update(env_fields)
        envelope: Envelope | None = None
        try:
            envelope = Envelope.model_validate(data)
        except ValidationError as e:
            problems += [
                _as_department(p, voc.department_path(None, p.path, envelope=True))
                for p in problems_from_validation_error(e)
            ]
        if envelope is not None and model is not None:
            problems += [
                _as_department(p, voc.department_path(kind, p.path))
                for p in envelope.check_attachment_refs(model)
            ]
        if envelope is not None:
            problems += self._unanswerable(envelope, str(code), doc)
            problems += self._unroutable(envelope)
        if problems or envelope is None:
            raise SubmissionRejectedError(422, problems)
        return sign_and_encode(envelope, signer, codec=self._codec)

    def _unanswerable(
        self, envelope: Envelope, code: str, doc: Mapping[str, Any]
    ) -> list[dict[str, Any]]:
        """An answer that names no original: the deadline it should close would stay open."""
        policies = self._replies.get(envelope.kind)
        if not policies or any(doc.get(name) not in (None, "") for name in ("glbh", "yyxx")):
            return []
        names = ", ".join(policies)
        return [
            department_problem(
                "glbh",
                "reply_needs_original",
                f"{KIND_FIELD} {code} ({envelope.kind}) answers an earlier message: glbh must "
                "give that message's id (xxbh), or yyxx the message that caused this one; "
                f"without either the deadline it closes ({names}) stays open",
                f"{code}是对先前消息的答复，须在关联编号 glbh 中填写所答复消息的消息编号（或在 "
                f"yyxx 中填写引起本消息的消息编号），否则其关闭的期限（{names}）将一直不能关闭",
            )
        ]

    def _unroutable(self, envelope: Envelope) -> list[dict[str, Any]]:
        """What the router would refuse: the same rules, in the department's field names."""
        decision = self._routing.authorize(
            kind=envelope.kind, sender=envelope.sender, recipients=envelope.recipients
        )
        wrong = self._routing.check_signature(
            kind=envelope.kind, sender=envelope.sender, algorithm=envelope.signature.algorithm
        )
        return [
            department_problem(
                self._vocabulary.department_path(None, p.path, envelope=True),
                p.rule,
                p.message,
                p.message_zh or p.message,
                p.value,
            )
            for p in (*decision.problems, *wrong)
        ]


def _check_key(key: str | None) -> None:
    if key is not None and not 0 < len(key) <= MAX_IDEMPOTENCY_KEY:
        raise SubmissionRejectedError(
            400,
            [
                department_problem(
                    "Idempotency-Key",
                    "invalid_idempotency_key",
                    f"the key must have 1 to {MAX_IDEMPOTENCY_KEY} characters",
                    f"幂等键长度须为 1 至 {MAX_IDEMPOTENCY_KEY} 个字符",
                )
            ],
        )


def _replay(key: str, digest: bytes, stored: bytes, message_id: uuid.UUID) -> Accepted:
    """The answer to a key used before: its message again, or 409 for another body."""
    if stored != digest:
        raise SubmissionRejectedError(
            409,
            [
                department_problem(
                    "Idempotency-Key",
                    "idempotency_key_reused",
                    "this Idempotency-Key was used with another body",
                    "该幂等键已用于内容不同的提交",
                    key,
                )
            ],
        )
    return Accepted(message_id, replay=True)
