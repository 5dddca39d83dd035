"""What every adapter shares: vocabulary mapping, submission, delivery, the HTTP API, fakes.

Each adapter package (``adapters/<kind>/``) has the same shape — ``inbound`` (department →
bus), ``outbound`` (bus → department), ``mapping`` (their vocabulary ↔ ours), ``app`` (HTTP
API) and ``testing`` (a fake department) — and builds each from the parts here.
"""

from __future__ import annotations

from adapters._framework.app import create_app
from adapters._framework.auth import create_token, hash_token, revoke_token, token_agency
from adapters._framework.chain import CHAIN_KINDS, DOCUMENT_TYPES
from adapters._framework.config import AdapterConfig, AgencyEndpoint, DeliveryMode
from adapters._framework.inbound import Accepted, SubmissionRejected, Submitter
from adapters._framework.outbound import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    CircuitBreaker,
    DeliveryConflict,
    DeliveryNotFound,
    Settler,
    WebhookDeliverer,
    inbox_handler,
    sign_webhook,
)
from adapters._framework.regulatory import OPINION_TYPES, REGULATORY_KINDS, clue_receipt
from adapters._framework.service import AdapterService
from adapters._framework.vocabulary import (
    BUS_KINDS,
    ENVELOPE_FIELDS,
    KIND_FIELD,
    KindVocabulary,
    Nested,
    Vocabulary,
)

__all__ = [
    "BUS_KINDS",
    "CHAIN_KINDS",
    "DOCUMENT_TYPES",
    "ENVELOPE_FIELDS",
    "KIND_FIELD",
    "OPINION_TYPES",
    "REGULATORY_KINDS",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "Accepted",
    "AdapterConfig",
    "AdapterService",
    "AgencyEndpoint",
    "CircuitBreaker",
    "DeliveryConflict",
    "DeliveryMode",
    "DeliveryNotFound",
    "KindVocabulary",
    "Nested",
    "Settler",
    "SubmissionRejected",
    "Submitter",
    "Vocabulary",
    "WebhookDeliverer",
    "clue_receipt",
    "create_app",
    "create_token",
    "hash_token",
    "inbox_handler",
    "revoke_token",
    "sign_webhook",
    "token_agency",
]
