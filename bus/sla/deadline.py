"""One deadline and what happens to it, as pure functions: no database, no clock, no Kafka.

The engine and the scheduler read a :class:`Deadline` from the store, ask one of
:func:`due_step`, :func:`close_step` or :func:`move_step` what it becomes, write that back and
emit the :class:`Emission` it returns — all in one transaction. Each emission has a number
``n`` that is part of its message id (:func:`event_message_id`), so the same step always makes
the same message: a warning is the ``warnings_sent``-th, a deadline breaches or is met once.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Final, Literal

__all__ = [
    "SLA_AGENCY",
    "SLA_NAMESPACE",
    "Deadline",
    "DeadlineState",
    "Emission",
    "EventKind",
    "Obligation",
    "close_step",
    "deadline_id",
    "due_step",
    "event_message_id",
    "move_step",
]

SLA_AGENCY: Final = "casebus.sla"
"""The SLA engine's agency id: it signs every sla.* message and reads this inbox."""

SLA_NAMESPACE: Final = uuid.uuid5(uuid.NAMESPACE_URL, "https://casebus.local/sla")
"""Namespace of deadline ids (and of the synthetic opening ids of scheduled deadlines)."""

DeadlineState = Literal["open", "met", "breached", "lapsed", "cancelled"]
Obligation = Literal["duty", "window"]
EventKind = Literal["sla.warning", "sla.breach", "sla.met"]


def deadline_id(policy_id: str, opened_by: uuid.UUID) -> uuid.UUID:
    """The id of ``policy_id``'s deadline opened by message ``opened_by``: the same every time."""
    return uuid.uuid5(SLA_NAMESPACE, f"{policy_id}/{opened_by}")


def event_message_id(deadline: uuid.UUID, kind: EventKind, n: int) -> uuid.UUID:
    """The message id of the ``n``-th ``kind`` event of a deadline."""
    return uuid.uuid5(deadline, f"{kind}/{n}")


@dataclass(frozen=True, slots=True)
class Deadline:
    """One row of ``sla_deadlines``."""

    id: uuid.UUID
    policy_id: str
    case_id: str
    correlation_id: str
    opened_by: uuid.UUID
    opened_kind: str
    opened_at: datetime
    start_at: datetime
    due_at: datetime
    owner_agency: str
    waiting_agency: str
    period_key: str | None = None
    notify_procuratorate: bool = False
    notify_agencies: tuple[str, ...] = ()
    obligation: Obligation = "duty"
    state: DeadlineState = "open"
    warnings_at: tuple[datetime, ...] = ()
    warnings_sent: int = 0
    last_warning_at: datetime | None = None
    breach_emitted_at: datetime | None = None
    met_emitted_at: datetime | None = None
    moved_by: uuid.UUID | None = None
    moved_at: datetime | None = None
    moves: int = 0
    closed_by: uuid.UUID | None = None
    closed_kind: str | None = None
    closed_at: datetime | None = None

    @property
    def next_warning_at(self) -> datetime | None:
        """The next pending warning instant, if any."""
        return self.warnings_at[0] if self.warnings_at else None

    @property
    def next_action_at(self) -> datetime | None:
        """When the scheduler next has something to do with this deadline (None: nothing)."""
        if self.state != "open":
            return None
        warning = self.next_warning_at
        return self.due_at if warning is None else min(warning, self.due_at)

    def recipients(self, kind: EventKind) -> list[str]:
        """Who gets an event: the owner and the waiting party; for a breach also the
        procuratorates the policy names. Each once, in that order."""
        parties = [self.owner_agency, self.waiting_agency]
        if kind == "sla.breach":
            parties.extend(self.notify_agencies)
        return [p for i, p in enumerate(parties) if p not in parties[:i] and p != SLA_AGENCY]


@dataclass(frozen=True, slots=True)
class Emission:
    """An sla.* event to write: the ``n``-th of its ``kind`` for the deadline."""

    kind: EventKind
    n: int
    occurred_at: datetime
    """The instant the event is about: the warning point, the due instant, the closing step."""
    causation_id: uuid.UUID
    """The message it reacts to: the opening message, or the closing one for sla.met."""


def due_step(deadline: Deadline, now: datetime) -> tuple[Deadline, Emission | None]:
    """What the scheduler does at ``now`` with an open deadline whose next action has come.

    Past due, a duty breaches (one sla.breach) and a window lapses (nothing to send); pending
    warnings are dropped. Otherwise the passed warning points are sent as ONE warning, dated at
    the latest of them: after an outage nobody needs three warnings at once.
    """
    if deadline.state != "open":
        return deadline, None
    if deadline.due_at <= now:
        if deadline.obligation == "window":
            return replace(deadline, state="lapsed", warnings_at=()), None
        breached = replace(deadline, state="breached", warnings_at=(), breach_emitted_at=now)
        return breached, Emission("sla.breach", 0, deadline.due_at, deadline.opened_by)
    passed = [w for w in deadline.warnings_at if w <= now]
    if not passed:
        return deadline, None
    warned = replace(
        deadline,
        warnings_at=tuple(w for w in deadline.warnings_at if w > now),
        warnings_sent=deadline.warnings_sent + 1,
        last_warning_at=now,
    )
    return warned, Emission("sla.warning", deadline.warnings_sent, passed[-1], deadline.opened_by)


def close_step(
    deadline: Deadline, *, closed_by: uuid.UUID, kind: str, closed_at: datetime, now: datetime
) -> tuple[Deadline, Emission | None]:
    """What a closing message taken at ``closed_at`` does to a deadline.

    In time: met, with one sla.met — also when a breach was already emitted because the
    message reached the engine late (the sla.met then corrects the record). Late: a duty not
    yet reported breaches now (the same single sla.breach the scheduler would have sent); a
    window simply lapsed. A deadline already closed or cancelled is left as it is.
    """
    if deadline.closed_at is not None or deadline.state == "cancelled":
        return deadline, None
    closed = replace(
        deadline, closed_by=closed_by, closed_kind=kind, closed_at=closed_at, warnings_at=()
    )
    in_time = closed_at <= deadline.due_at
    if in_time and deadline.state in ("open", "breached"):
        met = replace(closed, state="met", met_emitted_at=now)
        return met, Emission("sla.met", 0, closed_at, closed_by)
    if deadline.state == "open":
        if deadline.obligation == "window":
            return replace(closed, state="lapsed"), None
        breached = replace(closed, state="breached", breach_emitted_at=now)
        return breached, Emission("sla.breach", 0, deadline.due_at, deadline.opened_by)
    return closed, None


def move_step(
    deadline: Deadline,
    *,
    due_at: datetime,
    warnings_at: list[datetime],
    moved_by: uuid.UUID,
    now: datetime,
) -> Deadline:
    """An open deadline gets a new due instant (and warning points); the others stay as they
    are: a step promised after the deadline passed does not undo the breach."""
    if deadline.state != "open":
        return deadline
    return replace(
        deadline,
        due_at=due_at,
        warnings_at=tuple(sorted(w for w in warnings_at if w > now)),
        moved_by=moved_by,
        moved_at=now,
        moves=deadline.moves + 1,
    )
