"""The signing keys tests make follow the run's crypto profile: ``CASEBUS_CRYPTO_PROFILE`` (read
through :func:`~bus.settings.load_settings`, as every process reads it), ``ed25519`` by default.
The sm2 lane (``make test-sm2``) runs the signing paths' tests again with ``sm2``; tests of one
algorithm's own format (wire-format vectors, checkpoints, witnesses) make their keys themselves.
"""

from __future__ import annotations

from bus.settings import load_settings
from bus.signing import (
    Ed25519Signer,
    Sm2Signer,
    algorithm_of_profile,
    generate_keypair,
    signer_from_pem,
)

__all__ = ["ALGORITHM", "new_signer"]

ALGORITHM = algorithm_of_profile(load_settings().crypto_profile)
"""The algorithm of every agency key a test makes in this run: ``ed25519`` or ``sm2-sm3``."""


def new_signer(agency_id: str) -> Ed25519Signer | Sm2Signer:
    """A signer with a fresh key of the run's profile, held in memory only."""
    return signer_from_pem(generate_keypair(agency_id, algorithm=ALGORITHM)[0], agency_id=agency_id)
