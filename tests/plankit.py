"""Batches for the router's rule tests (test_router_plan.py, test_router_batch.py): verdicts
as the classifier gives them, built without Kafka or PostgreSQL, and a hypothesis strategy of
batches, with what the stores already know, small enough that ids, bytes and offsets collide.

A message is one of ``IDS``; its bytes are one of two contents, the second of which refers to a
file in the bus's store. A batch is read from two partitions, each from offset 0, as Kafka
hands a batch over.
"""

from __future__ import annotations

import hashlib
import tempfile
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from aiokafka.structs import ConsumerRecord
from buskit import receipt_payload
from hypothesis import strategies as st

from bus.attachments import attachment_uri
from bus.errors import Problem
from bus.models import Attachment, Envelope
from bus.party import make_party
from bus.router.store import Seen
from bus.router.verdict import UNWITNESSED, Accepted, Refused, Verdict

POLICE = "ygh.police.bureau"
BUREAU = "ygh.enforcement.bureau"
IDS = tuple(uuid.UUID(int=n + 1) for n in range(3))
FILE = hashlib.sha256(b"the scanned transfer letter").hexdigest()

_keys = tempfile.TemporaryDirectory(prefix="plankit-")
_police = make_party(POLICE, Path(_keys.name))
_base = _police.envelope(receipt_payload(), recipients=[BUREAU], case_id="YGH-PLAN-1")
_stored = Attachment(
    name="letter.pdf",
    media_type="application/pdf",
    size_bytes=1,
    sha256=FILE,
    uri=attachment_uri(FILE),
)


def envelope(message: int, content: int) -> Envelope:
    """Message ``message``'s envelope with content ``content`` (1: it refers to ``FILE``)."""
    return _base.model_copy(
        update={
            "message_id": IDS[message],
            "correlation_id": str(IDS[message]),
            "attachments": [_stored] if content else [],
        }
    )


def value(message: int, content: int) -> bytes:
    """The bytes of message ``message`` with content ``content``."""
    return f"message {message} content {content}".encode()


def digest(message: int, content: int) -> bytes:
    return hashlib.sha256(value(message, content)).digest()


def kafka_record(partition: int, offset: int, data: bytes) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        "t.submit",
        partition,
        offset,
        1_780_000_000_000 + offset,
        0,
        b"k",
        data,
        None,
        1,
        len(data),
        [],
    )


def accepted(message: int, content: int, partition: int, offset: int) -> Accepted:
    """What the classifier answers for a valid submission."""
    return Accepted(
        record=kafka_record(partition, offset, value(message, content)),
        value=value(message, content),
        value_sha256=digest(message, content),
        envelope=envelope(message, content),
        deliver_to=(BUREAU,),
        reply_to=POLICE,
    )


def refused(message: int, content: int, partition: int, offset: int, code: str) -> Refused:
    """What the classifier answers for a refused one (``log_unwitnessed`` keeps recipients)."""
    assert code in ("unauthorized_route", UNWITNESSED)
    return Refused(
        record=kafka_record(partition, offset, value(message, content)),
        value=value(message, content),
        value_sha256=digest(message, content),
        outcome="reject",
        code="unauthorized_route" if code == "unauthorized_route" else UNWITNESSED,
        problems=(Problem("recipients", code, "refused"),),
        envelope=envelope(message, content),
        deliver_to=(BUREAU,) if code == UNWITNESSED else (),
        reply_to=POLICE,
    )


@dataclass(frozen=True)
class Case:
    """A batch, what the store knew before it, whether the police hold ``FILE``, and whether
    the log was unwitnessed when it was classified."""

    verdicts: tuple[Verdict, ...]
    seen: dict[uuid.UUID, Seen]
    holds_file: bool
    unwitnessed: bool


@st.composite
def cases(draw: st.DrawFn) -> Case:
    """Batches of up to 8 submissions, a third of them refused, with a prior store whose
    offsets overlap the batch's (so reruns, duplicates and conflicts all occur)."""
    unwitnessed = draw(st.booleans())
    offsets = [0, 0]
    verdicts: list[Verdict] = []
    for _ in range(draw(st.integers(0, 8))):
        message, content = draw(st.integers(0, 2)), draw(st.integers(0, 1))
        partition = draw(st.integers(0, 1))
        offset, offsets[partition] = offsets[partition], offsets[partition] + 1
        if draw(st.integers(0, 2)) == 0:
            verdicts.append(refused(message, content, partition, offset, "unauthorized_route"))
        elif unwitnessed:
            verdicts.append(refused(message, content, partition, offset, UNWITNESSED))
        else:
            verdicts.append(accepted(message, content, partition, offset))
    seen = {}
    for message in range(len(IDS)):
        if draw(st.booleans()):
            content = draw(st.integers(0, 1))
            where = (draw(st.integers(0, 1)), draw(st.integers(0, 3)))
            seen[IDS[message]] = Seen(digest(message, content), *where, draw(st.integers(0, 9)))
    return Case(tuple(verdicts), seen, draw(st.booleans()), unwitnessed)


T = TypeVar("T")


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never waits (one over the in-memory store) without an event loop:
    hypothesis calls its tests synchronously."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coroutine.close()
    raise AssertionError("the coroutine waited for something: it is not in-memory only")
