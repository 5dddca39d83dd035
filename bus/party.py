"""A party (an agency id and its signing key) that signs envelopes without ceremony, for tests,
benchmarks and the demo.

Not for production paths: keys here live in memory or in a temporary folder.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel

from bus.codec import Codec, default_codec
from bus.models import Envelope, Signature
from bus.settings import load_settings
from bus.signing import (
    Ed25519Signer,
    PublicKeyRecord,
    Sm2Signer,
    algorithm_of_profile,
    load_signer,
    sign_envelope,
    write_keypair,
)

__all__ = ["Party", "make_party"]


class Party:
    """One agency with a signing key: builds signed envelopes and their Kafka values."""

    def __init__(
        self, agency_id: str, signer: Ed25519Signer | Sm2Signer, *, codec: Codec | None = None
    ):
        self.agency_id = agency_id
        self.signer = signer
        self.codec = codec or default_codec()

    def key_record(self, *, valid_from: datetime | None = None) -> PublicKeyRecord:
        """This party's public key as the registry holds it."""
        return PublicKeyRecord(
            key_id=self.signer.key_id,
            agency_id=self.agency_id,
            algorithm=self.signer.algorithm,
            public_key=self.signer.public_key,
            valid_from=valid_from or datetime(2020, 1, 1, tzinfo=UTC),
        )

    def envelope(
        self,
        payload: BaseModel,
        *,
        recipients: list[str],
        case_id: str,
        message_id: uuid.UUID | None = None,
        correlation_id: str | None = None,
        causation_id: str | None = None,
        sent_at: datetime | None = None,
        due_at: datetime | None = None,
    ) -> Envelope:
        """A signed envelope carrying ``payload`` (a model of ``bus.models``)."""
        kind = str(payload.KIND)  # type: ignore[attr-defined]
        mid = message_id or uuid.uuid4()
        unsigned = Envelope(
            message_id=mid,
            kind=kind,
            schema_version=int(payload.SCHEMA_VERSION),  # type: ignore[attr-defined]
            sender=self.agency_id,
            recipients=recipients,
            case_id=case_id,
            correlation_id=correlation_id or str(mid),
            causation_id=causation_id,
            sent_at=(sent_at or datetime.now(UTC)),
            due_at=due_at,
            payload=self.codec.encode_payload(kind, payload),
            attachments=[],
            signature=Signature(
                algorithm=self.signer.algorithm, key_id=self.signer.key_id, value=b""
            ),
        )
        return sign_envelope(unsigned, self.signer, codec=self.codec)

    def value(self, envelope: Envelope) -> bytes:
        """The Kafka value of an envelope."""
        return self.codec.encode_envelope(envelope)


def make_party(
    agency_id: str, key_dir: Path, *, codec: Codec | None = None, algorithm: str | None = None
) -> Party:
    """A party with a fresh key pair written under ``key_dir``, of ``algorithm`` (``ed25519`` or
    ``sm2-sm3``). Callers that hold settings pass ``algorithm_of_profile(settings.crypto_profile)``;
    None is the crypto profile of :func:`~bus.settings.load_settings` (``CASEBUS_CRYPTO_PROFILE``),
    so a test run under the sm2 profile signs with SM2 throughout."""
    if algorithm is None:
        algorithm = algorithm_of_profile(load_settings().crypto_profile)
    files = write_keypair(agency_id, key_dir / agency_id, algorithm=algorithm)
    return Party(agency_id, load_signer(files.private_key, agency_id=agency_id), codec=codec)
