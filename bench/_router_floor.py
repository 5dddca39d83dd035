"""bench/router.py's signature floor: the CPU time of the signatures no router can skip (each
submission's verify and every signature the router makes for it), timed in the bench's process."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from _router_plan import (  # bench/, first on sys.path when a bench runs as a script
    Message,
    submitted_record,
)
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from bus import sm2
from bus.agencies import load_registry
from bus.codec import default_codec
from bus.party import Party
from bus.router.classify import Classifier
from bus.router.outputs import Outputs
from bus.router.verdict import Accepted
from bus.routing import load_policy
from bus.settings import Settings
from bus.signing import (
    DOMAIN_PREFIX,
    SM2_SM3,
    Ed25519Signer,
    InMemoryKeyStore,
    Signer,
    Sm2Signer,
)

__all__ = ["Floor", "RecordingSigner", "signature_floor", "timed_primitives"]


class RecordingSigner:
    """The bus's signer, noting every byte string the router's own code asks it to sign."""

    def __init__(self, signer: Signer) -> None:
        self._signer = signer
        self.algorithm = signer.algorithm
        self.key_id = signer.key_id
        self.signed: list[bytes] = []

    def sign(self, data: bytes) -> bytes:
        self.signed.append(data)
        return self._signer.sign(data)


def timed_primitives(
    sender: Ed25519Signer | Sm2Signer, bus: Ed25519Signer | Sm2Signer
) -> tuple[Callable[[bytes, bytes], object], Callable[[bytes], bytes]]:
    """The cheapest verify (of the sender's key) and sign (with the bus's key) the library
    offers, keys loaded once: what the floor times."""
    verify: Callable[[bytes, bytes], object]
    if isinstance(sender, Sm2Signer):
        public = sm2.Sm2PublicKey.from_raw(sender.public_key)
        verify = public.verify
    else:
        verify = Ed25519PublicKey.from_public_bytes(sender.public_key).verify
    sign: Callable[[bytes], bytes]
    if isinstance(bus, Ed25519Signer):
        private: Ed25519PrivateKey = bus.private_key
        sign = private.sign
    else:
        sign = bus.sign
    return verify, sign


@dataclass(frozen=True, slots=True)
class Floor:
    cpu_per_message: float  # CPU seconds of the signature work per message
    signatures: float  # signatures the router makes per message (beside the one it verifies)


async def signature_floor(
    settings: Settings,
    party: Party,
    messages: Sequence[Message],
    bus_signer: Ed25519Signer | Sm2Signer,
) -> Floor:
    """CPU time of the signature work (Ed25519 or SM2) no router can skip on ``messages``: verifying
    each submission's signature over the bytes its sender signed, and making every signature the
    router makes for it. What the router signs is found by running its own classifier and outputs on
    each message (untimed) with a signer that notes what it is asked to sign; then only the verifies
    and the signatures are timed (``process_time``), with the keys loaded once beforehand, the least
    any router could spend."""
    codec = default_codec()
    registry = load_registry(settings.agencies_file)
    classifier = Classifier(
        codec=codec,
        keystore=InMemoryKeyStore([party.key_record()]),
        registry=registry,
        policy=load_policy(settings.routing_policy_file, registry),
    )
    recorder = RecordingSigner(bus_signer)
    outputs = Outputs(settings, signer=recorder, codec=codec)
    if party.signer.algorithm == SM2_SM3 and not isinstance(party.signer, Sm2Signer):
        raise TypeError("an sm2-sm3 party signs with an Sm2Signer")
    now = datetime.now(UTC)
    verifies = []
    for i, m in enumerate(messages):
        record = submitted_record(
            m,
            topic=settings.topic_submit(),
            partition=0,
            offset=i,
            timestamp_ms=int(now.timestamp() * 1000),
        )
        v = await classifier.classify(record, now=now)
        if not isinstance(v, Accepted):
            raise RuntimeError(f"message {i} would be refused ({v.code}): no floor to measure")
        outputs.receipt(v, audit_index=i)
        signature = v.envelope.signature.value
        body = codec.signed_body_of(m.value, signature)
        assert body is not None  # the default codec reads canonically
        verifies.append((signature, DOMAIN_PREFIX + body))
    verify, sign = timed_primitives(party.signer, bus_signer)
    signs = recorder.signed
    began = time.process_time()
    for signature, data in verifies:
        verify(signature, data)
    for data in signs:
        sign(data)
    spent = time.process_time() - began
    return Floor(spent / len(messages), len(signs) / len(messages))
