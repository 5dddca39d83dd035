"""The router's batch rules, as a pure function: which submissions of a batch are delivered,
which are duplicates and which are refused, given what the stores already know (design §6).

The rules make the exactly-once promise the procuratorate relies on:

- **rerun**: a message the log accepted from this very source offset (a batch planned again
  after a crash or a failed transaction) goes on as before; the idempotent audit log adds
  nothing new and the router produces exactly what the log says was produced;
- **duplicate**: the same message id with the same bytes from another offset (the sender sent
  it again), or a second time in one batch, is neither audited nor delivered again;
- **conflict**: the same message id with other bytes is refused ``conflicting_duplicate``;
- **readmission**: closing for an unwitnessed log refuses new messages only, so one the log
  accepted with these bytes is accepted again (refusing it would lose a message the log says
  was accepted);
- **attachments**: a submission written straight to its submit topic skips its adapter's
  checks, so a new one may refer to a file in the bus's store only if its sender uploaded it
  or may read it already (``attachment_not_held``). A message the log accepted before is not
  checked again: it goes on as the log says it went, whatever the ledger says now.

Nothing here reads or writes anything; bus.router.batch loads what the rules need through the
store port and carries out what they decide.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from bus.attachments import bus_attachments
from bus.errors import Problem
from bus.models import Envelope
from bus.router.store import Seen
from bus.router.verdict import UNWITNESSED, Accepted, Refused, Verdict, readmit, refuse

__all__ = [
    "ATTACHMENT_NOT_HELD",
    "Decision",
    "Fate",
    "Planned",
    "attachment_claims",
    "claims_to_check",
    "decide",
    "ids_to_look_up",
    "not_held_problems",
]

ATTACHMENT_NOT_HELD: Final = "attachment_not_held"
"""The code of a submission referring to a stored file its sender neither uploaded nor holds."""

Fate = Literal["first", "rerun", "duplicate", "conflict", "not_held", "refused"]
"""What the rules made of a submission: ``first`` and ``rerun`` are audited as accepted and
delivered, ``duplicate`` is dropped, the rest are audited as refused."""


@dataclass(frozen=True, slots=True)
class Planned:
    """One submission of the batch, as the rules left it."""

    verdict: Verdict
    fate: Fate

    @property
    def delivered(self) -> Accepted | None:
        """The accepted verdict, when the submission is audited and delivered."""
        v = self.verdict
        return v if isinstance(v, Accepted) and self.fate != "duplicate" else None

    @property
    def refused(self) -> Refused | None:
        """The refused verdict, when the submission is audited as refused."""
        return self.verdict if isinstance(self.verdict, Refused) else None


@dataclass(frozen=True, slots=True)
class Decision:
    """The batch, in record order, as the rules left it."""

    items: tuple[Planned, ...]

    def of_fate(self, *fates: Fate) -> list[Verdict]:
        """The verdicts with one of ``fates``, in record order."""
        return [p.verdict for p in self.items if p.fate in fates]


def ids_to_look_up(verdicts: Sequence[Verdict]) -> list[uuid.UUID]:
    """The message ids the rules ask the store about: every accepted message, and every one
    refused only because the log went unwitnessed."""
    return [
        v.envelope.message_id
        for v in verdicts
        if v.envelope is not None and (isinstance(v, Accepted) or v.code == UNWITNESSED)
    ]


def attachment_claims(envelope: Envelope) -> list[tuple[int, str]]:
    """``(index, sha256)`` of each attachment whose delivery lets its recipients read a file in
    the bus's store: a bus-store URI naming the attachment's own hash, the references
    :func:`bus.attachments.record_references` records. A malformed or mismatched bus URI
    grants nothing, and any other URI is a department's own server, which the bus never
    serves."""
    return [(i, a.sha256) for i, a, named in bus_attachments(envelope) if named == a.sha256]


def claims_to_check(
    verdicts: Sequence[Verdict], seen: Mapping[uuid.UUID, Seen]
) -> list[tuple[str, str]]:
    """The ``(agency_id, sha256)`` claims of the batch's new accepted submissions: what the
    ledger must answer for :func:`decide` (nothing, most batches: then it is not asked)."""
    return [
        (v.envelope.sender, sha256)
        for v in verdicts
        if isinstance(v, Accepted) and v.envelope.message_id not in seen
        for _, sha256 in attachment_claims(v.envelope)
    ]


def not_held_problems(envelope: Envelope, holding: Collection[tuple[str, str]]) -> list[Problem]:
    """A problem for each of ``envelope``'s claims (:func:`attachment_claims`) its sender does
    not hold; ``holding`` are the ``(agency_id, sha256)`` pairs known to hold (uploaded, or a
    reference already). The rule is the adapter's at submit (``attachment_not_uploaded``):
    knowing a hash is not enough to get the file."""
    problems = []
    for i, sha256 in attachment_claims(envelope):
        if (envelope.sender, sha256) in holding:
            continue
        name = envelope.attachments[i].name
        problems.append(
            Problem(
                f"attachments[{i}].sha256",
                ATTACHMENT_NOT_HELD,
                f"attachment {name!r} refers to a file in the bus's store that "
                f"{envelope.sender} neither uploaded nor may read "
                "(upload it through the adapter, POST /v1/attachments, first)",
                sha256,
                "附件所指文件既非发送单位上传，发送单位也无权读取，请先通过适配器上传附件",
            )
        )
    return problems


def decide(
    verdicts: Sequence[Verdict],
    seen: Mapping[uuid.UUID, Seen],
    holding: Collection[tuple[str, str]],
) -> Decision:
    """Apply the batch rules (this module's docstring) to ``verdicts`` in record order.

    ``seen`` is what the store answered for :func:`ids_to_look_up`, ``holding`` what the
    ledger answered for :func:`claims_to_check`."""
    first: dict[uuid.UUID, Accepted] = {}
    items = []
    for v in verdicts:
        v = _readmitted(v, seen)
        if isinstance(v, Refused):
            items.append(Planned(v, "refused"))
            continue
        message_id = v.envelope.message_id
        if message_id not in seen:
            problems = not_held_problems(v.envelope, holding)
            if problems:
                items.append(Planned(refuse(v, ATTACHMENT_NOT_HELD, problems), "not_held"))
                continue
        prior = seen.get(message_id)
        earlier = first.get(message_id)
        if prior is not None:
            same_bytes = prior.value_sha256 == v.value_sha256
            rerun = (prior.partition, prior.offset) == (v.record.partition, v.record.offset)
        elif earlier is not None:
            same_bytes, rerun = earlier.value_sha256 == v.value_sha256, False
        else:
            same_bytes, rerun = True, True
        if not same_bytes:
            items.append(
                Planned(refuse(v, "conflicting_duplicate", [_conflict(message_id)]), "conflict")
            )
        elif not rerun:
            items.append(Planned(v, "duplicate"))
        else:
            first[message_id] = v
            items.append(Planned(v, "first" if prior is None else "rerun"))
    return Decision(tuple(items))


def _readmitted(v: Verdict, seen: Mapping[uuid.UUID, Seen]) -> Verdict:
    """An unwitnessed refusal of a message the log accepted with these bytes, accepted."""
    if not isinstance(v, Refused) or v.code != UNWITNESSED or v.envelope is None:
        return v
    prior = seen.get(v.envelope.message_id)
    if prior is None or prior.value_sha256 != v.value_sha256:
        return v
    return readmit(v, v.envelope)


def _conflict(message_id: object) -> Problem:
    return Problem(
        "message_id",
        "conflicting_duplicate",
        "this message id was already accepted with other content",
        str(message_id),
        "该消息编号已以不同内容被接收",
    )
