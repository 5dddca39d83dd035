"""Case files travel with the case: the attachment store behind every adapter.

A department uploads a document to its adapter (``POST /v1/attachments``) and gets back a
reference — SHA-256, size, media type and the bus-internal URI ``casebus://attachments/sha256/…``
— which it puts in its submission's ``fj``. The bytes stay in the store; messages carry the
reference, signed. The store is a port (:class:`AttachmentStore`) with a PostgreSQL
implementation (the default), an S3 one (:class:`S3AttachmentStore`, any S3-compatible server)
and an in-memory one for tests; the ledger records who uploaded what, which messages refer to
which attachment, and every fetch.

Files are not kept for ever: each message kind has a retention
(``deploy/attachment-retention.yaml``, :func:`load_retention`), a file is kept until the
retention of every message referring to it has run out, and ``casebus attachments sweep``
(:func:`sweep_attachments`) then deletes it from the store, recording why; a download of a
deleted file answers 410 naming the retention that expired.
"""

from __future__ import annotations

from bus.attachments._config import store_from_settings
from bus.attachments._evidence import FileCheck, check_attachment_files
from bus.attachments._ledger import (
    Deletion,
    FetchOutcome,
    check_submission,
    held,
    last_deletion,
    possessed,
    prepare_submission,
    record_fetch,
    record_references,
    record_upload,
    references,
    sm3_of,
)
from bus.attachments._memory import MemoryAttachmentStore
from bus.attachments._port import (
    DEFAULT_MEDIA_TYPE,
    URI_PREFIX,
    AttachmentStore,
    Stored,
    StoredAttachment,
    attachment_uri,
    is_sha256,
    is_sm3,
    sha256_of_uri,
)
from bus.attachments._postgres import DEFAULT_CHUNK_BYTES, PostgresAttachmentStore
from bus.attachments._retention import (
    DEFAULT_RETENTION_PATH,
    KindRetention,
    MessageRef,
    RetentionPeriod,
    RetentionPolicy,
    RetentionRule,
    RetentionVerdict,
    load_retention,
    retention_verdict,
)
from bus.attachments._rules import (
    ByteRange,
    Reference,
    RefRole,
    bus_attachments,
    delivery_role,
    parse_range,
    readers,
    submission_problems,
    with_sm3,
)
from bus.attachments._s3 import S3AttachmentStore
from bus.attachments._sweep import (
    SweepReport,
    Swept,
    deletions,
    due_candidates,
    sweep_attachments,
)

__all__ = [
    "DEFAULT_CHUNK_BYTES",
    "DEFAULT_MEDIA_TYPE",
    "DEFAULT_RETENTION_PATH",
    "URI_PREFIX",
    "AttachmentStore",
    "ByteRange",
    "Deletion",
    "FetchOutcome",
    "FileCheck",
    "KindRetention",
    "MemoryAttachmentStore",
    "MessageRef",
    "PostgresAttachmentStore",
    "RefRole",
    "Reference",
    "RetentionPeriod",
    "RetentionPolicy",
    "RetentionRule",
    "RetentionVerdict",
    "S3AttachmentStore",
    "Stored",
    "StoredAttachment",
    "SweepReport",
    "Swept",
    "attachment_uri",
    "bus_attachments",
    "check_attachment_files",
    "check_submission",
    "deletions",
    "delivery_role",
    "due_candidates",
    "held",
    "is_sha256",
    "is_sm3",
    "last_deletion",
    "load_retention",
    "parse_range",
    "possessed",
    "prepare_submission",
    "readers",
    "record_fetch",
    "record_references",
    "record_upload",
    "references",
    "retention_verdict",
    "sha256_of_uri",
    "sm3_of",
    "store_from_settings",
    "submission_problems",
    "sweep_attachments",
    "with_sm3",
]
