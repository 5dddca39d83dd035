"""Case files travel with the case: the attachment store behind every adapter.

A department uploads a document to its adapter (``POST /v1/attachments``) and gets back a
reference — SHA-256, size, media type and the bus-internal URI ``casebus://attachments/sha256/…``
— which it puts in its submission's ``fj``. The bytes stay in the store; messages carry the
reference, signed. The store is a port (:class:`AttachmentStore`) with a PostgreSQL
implementation (the default), an S3 one (:class:`S3AttachmentStore`, any S3-compatible server)
and an in-memory one for tests; the ledger records who uploaded what, which messages refer to
which attachment, and every fetch.
"""

from __future__ import annotations

from bus.attachments._evidence import FileCheck, check_attachment_files
from bus.attachments._ledger import (
    FetchOutcome,
    check_submission,
    possessed,
    record_fetch,
    record_references,
    record_upload,
    references,
)
from bus.attachments._memory import MemoryAttachmentStore
from bus.attachments._port import (
    DEFAULT_MEDIA_TYPE,
    URI_PREFIX,
    AttachmentNotFound,
    AttachmentStore,
    AttachmentTooLarge,
    DigestMismatch,
    Stored,
    StoredAttachment,
    attachment_uri,
    is_sha256,
    sha256_of_uri,
)
from bus.attachments._postgres import DEFAULT_CHUNK_BYTES, PostgresAttachmentStore
from bus.attachments._rules import (
    ByteRange,
    RangeNotSatisfiable,
    Reference,
    RefRole,
    bus_attachments,
    delivery_role,
    parse_range,
    readers,
    submission_problems,
)
from bus.attachments._s3 import S3AttachmentStore

__all__ = [
    "DEFAULT_CHUNK_BYTES",
    "DEFAULT_MEDIA_TYPE",
    "URI_PREFIX",
    "AttachmentNotFound",
    "AttachmentStore",
    "AttachmentTooLarge",
    "ByteRange",
    "DigestMismatch",
    "FetchOutcome",
    "FileCheck",
    "MemoryAttachmentStore",
    "PostgresAttachmentStore",
    "RangeNotSatisfiable",
    "RefRole",
    "Reference",
    "S3AttachmentStore",
    "Stored",
    "StoredAttachment",
    "attachment_uri",
    "bus_attachments",
    "check_attachment_files",
    "check_submission",
    "delivery_role",
    "is_sha256",
    "parse_range",
    "possessed",
    "readers",
    "record_fetch",
    "record_references",
    "record_upload",
    "references",
    "sha256_of_uri",
    "submission_problems",
]
