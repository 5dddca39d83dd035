"""What every adapter shares: vocabulary mapping, submission, delivery, the HTTP API, fakes.

An adapter package (``adapters/<kind>/``) declares one :class:`AdapterSpec` in its
``__init__.py`` (its vocabulary, what it sends and receives, its checks, its extra routes and
readers); the service, the HTTP API and the CLI command are built from it by the parts here.
Besides it, a package holds only code that is really that adapter's: ``mapping`` (its
vocabulary ↔ ours), ``testing`` (a fake department and documents in its terms) and, where it has
them, its checks (``enforcement.criminal``) and its views (``procuratorate``).
"""

from __future__ import annotations

from adapters._framework.app import create_app
from adapters._framework.auth import create_token, hash_token, revoke_token, token_agency
from adapters._framework.chain import CHAIN_KINDS, DOCUMENT_TYPES
from adapters._framework.checks import Check, DeadlineRules, SubmissionCheck
from adapters._framework.config import AdapterConfig, AgencyEndpoint, DeliveryMode
from adapters._framework.inbound import Accepted, Submitter
from adapters._framework.outbound import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Settler,
    inbox_handler,
    sign_webhook,
)
from adapters._framework.regulatory import OPINION_TYPES, REGULATORY_KINDS, clue_receipt
from adapters._framework.service import AdapterService
from adapters._framework.spec import AdapterSpec
from adapters._framework.vocabulary import (
    BUS_KINDS,
    ENVELOPE_FIELDS,
    KIND_FIELD,
    KindVocabulary,
    Nested,
    Vocabulary,
)
from adapters._framework.webhooks import CircuitBreaker, WebhookDeliverer

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
    "AdapterSpec",
    "AgencyEndpoint",
    "Check",
    "CircuitBreaker",
    "DeadlineRules",
    "DeliveryMode",
    "KindVocabulary",
    "Nested",
    "Settler",
    "SubmissionCheck",
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
