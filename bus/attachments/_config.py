"""The store a deployment's settings name: one place, for the adapters and the sweep alike."""

from __future__ import annotations

from collections.abc import Callable

import asyncpg

from bus.attachments._port import AttachmentStore
from bus.attachments._postgres import PostgresAttachmentStore
from bus.attachments._s3 import S3AttachmentStore
from bus.errors import ConfigError
from bus.secret_files import read_secret_file
from bus.settings import Settings

__all__ = ["store_from_settings"]


def store_from_settings(settings: Settings, pool: Callable[[], asyncpg.Pool]) -> AttachmentStore:
    """The store ``CASEBUS_ATTACHMENT_STORE`` names: PostgreSQL chunks over ``pool`` (called
    at each use), or an S3-compatible object store (its secret key read from its file now)."""
    if settings.attachment_store == "s3":
        endpoint = settings.attachment_s3_endpoint
        access_key = settings.attachment_s3_access_key
        key_file = settings.attachment_s3_secret_key_file
        if endpoint is None or access_key is None or key_file is None:
            # Settings refuse this at load; model_copy(update=...) skips that check.
            raise ConfigError(
                "CASEBUS_ATTACHMENT_STORE=s3 needs CASEBUS_ATTACHMENT_S3_ENDPOINT, "
                "CASEBUS_ATTACHMENT_S3_ACCESS_KEY and CASEBUS_ATTACHMENT_S3_SECRET_KEY_FILE"
            )
        secret = read_secret_file(
            key_file,
            what="S3 secret key file",
            leak="a leaked key lets anyone read every case file",
        )
        return S3AttachmentStore(
            endpoint_url=endpoint,
            bucket=settings.attachment_s3_bucket,
            access_key=access_key,
            secret_key=secret.decode().strip(),
            region=settings.attachment_s3_region,
        )
    return PostgresAttachmentStore(pool, chunk_bytes=settings.attachment_chunk_bytes)
