"""人民法院 → bus: the court's submissions, checked, signed and queued in the outbox."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import asyncpg

from adapters._framework.inbound import Submitter
from adapters.court.mapping import SENDS, VOCABULARY
from bus.settings import Settings
from bus.signing import Signer

__all__ = ["SENDS", "submitter"]


def submitter(
    settings: Settings,
    *,
    signers: Mapping[str, Signer],
    pool: asyncpg.Pool,
    on_commit: Callable[[str], None] | None = None,
) -> Submitter:
    """The submitter of this adapter's kinds."""
    return Submitter(
        settings,
        vocabulary=VOCABULARY,
        sends=SENDS,
        signers=signers,
        pool=pool,
        on_commit=on_commit,
    )
