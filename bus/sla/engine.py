"""The SLA engine's message side: each message in the ``casebus.sla`` inbox opens, moves and
closes deadlines as the policies say.

:meth:`SlaEngine.handle` is an :data:`~bus.inbox.InboxHandler`: the
:class:`~bus.inbox.InboxReader` calls it once per message, inside the PostgreSQL transaction
that marks the message handled. The deadlines it writes and the sla.met (or late sla.breach)
envelopes it adds to the outbox therefore commit together with that marker or not at all: a
crash re-reads the message and does the work once. A message a policy cannot use (a field it
needs is missing, no agency plays a party) is logged and counted, never retried: retrying bad
input changes nothing and would stop the inbox.

Steps per message, in this order: open (so that a message that opens and closes the same
policy — ``criminal.transfer_after_approval`` — closes the deadline it just opened), move,
close. A close counts the step as taken at the message's ``sent_at`` (never later than now);
only the agency that owes a deadline can close or move it.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Final

import structlog
from aiokafka import ConsumerRecord

from bus.codec import Codec, default_codec
from bus.db import Conn
from bus.errors import (
    ConfigError,
    DecodeError,
    NoPartyError,
    PolicyInputError,
    ValidationFailedError,
)
from bus.models import Envelope
from bus.sla import metrics
from bus.sla.calendar import SHANGHAI, WorkCalendar
from bus.sla.clock import Clock
from bus.sla.deadline import Deadline, Emission, close_step, deadline_id, move_step
from bus.sla.events import SlaEmitter
from bus.sla.fields import policy_field_problems
from bus.sla.parties import Parties
from bus.sla.policy import Policy, PolicySet, field_value
from bus.sla.store import DeadlineStore

__all__ = ["NOTIFY_CHANNEL", "Handled", "SlaEngine", "period_key"]

log = structlog.get_logger("casebus.sla")

NOTIFY_CHANNEL: Final = "casebus_sla"
"""PostgreSQL NOTIFY channel: a transaction that opened or changed deadlines wakes the
schedulers (and relays) of every replica when — and only if — it commits."""


def period_key(value: object) -> str | None:
    """The reporting month ``YYYY-MM`` of a date or instant (Asia/Shanghai), else None."""
    if isinstance(value, datetime):
        value = value.astimezone(SHANGHAI).date()
    if isinstance(value, date):
        return f"{value.year:04d}-{value.month:02d}"
    return None


def _uuid(text: str | None) -> uuid.UUID | None:
    if not text:
        return None
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


def _thread(envelope: Envelope) -> list[uuid.UUID]:
    """The messages an envelope answers: its ``correlation_id`` and ``causation_id`` as ids."""
    return [u for u in (_uuid(envelope.correlation_id), _uuid(envelope.causation_id)) if u]


@dataclass(slots=True)
class Handled:
    """What one message did."""

    opened: list[Deadline] = field(default_factory=list)
    moved: list[Deadline] = field(default_factory=list)
    closed: list[Deadline] = field(default_factory=list)
    emitted: list[Envelope] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        """Whether any deadline changed."""
        return bool(self.opened or self.moved or self.closed)


class SlaEngine:
    """Applies the policies to the messages of the ``casebus.sla`` inbox."""

    def __init__(
        self,
        *,
        policies: PolicySet,
        calendar: WorkCalendar,
        parties: Parties,
        clock: Clock,
        emitter: SlaEmitter,
        store: DeadlineStore | None = None,
        codec: Codec | None = None,
    ) -> None:
        problems = policy_field_problems(policies)
        if problems:
            raise ConfigError(
                f"{policies.source or 'SLA policies'}: fields the payload models do not have: "
                + "; ".join(problems)
            )
        self._policies = policies
        self._calendar = calendar
        self._parties = parties
        self._clock = clock
        self._emitter = emitter
        self._store = store if store is not None else DeadlineStore()
        self._codec = codec if codec is not None else default_codec()
        kinds: set[str] = set()
        for policy in policies:
            kinds.update(policy.closes_on)
            if policy.opens_on is not None:
                kinds.add(policy.opens_on.kind)
            if policy.moves_on is not None:
                kinds.add(policy.moves_on.kind)
        self._kinds = frozenset(kinds)

    @property
    def kinds(self) -> frozenset[str]:
        """The message kinds some policy opens, moves or closes a deadline on."""
        return self._kinds

    async def handle(
        self, conn: Conn, envelope: Envelope, record: ConsumerRecord[bytes, bytes]
    ) -> None:
        """The inbox handler: :meth:`apply` the message."""
        await self.apply(conn, envelope)

    async def apply(self, conn: Conn, envelope: Envelope) -> Handled:
        """Open, move and close deadlines for one message, on ``conn`` (in its transaction)."""
        done = Handled()
        if envelope.kind not in self._kinds:
            return done  # e.g. bus.delivered receipts of the engine's own messages
        bound = log.bind(
            message_id=str(envelope.message_id),
            case_id=envelope.case_id,
            kind=envelope.kind,
            sender=envelope.sender,
        )
        try:
            model = self._codec.decode_payload_model(envelope.payload, kind=envelope.kind)[2]
        except (DecodeError, ValidationFailedError) as e:
            # The router delivers only valid messages; this is defence in depth.
            bound.warning("sla.undecodable", error=str(e))
            return done
        payload = model.model_dump()
        now = self._clock.now()
        await self._open(conn, envelope, payload, now, done, bound)
        await self._move(conn, envelope, payload, now, done, bound)
        await self._close(conn, envelope, payload, now, done, bound)
        if done.changed:
            await conn.execute("SELECT pg_notify($1, '')", NOTIFY_CHANNEL)
        return done

    # -- open -----------------------------------------------------------------------------------

    def new_deadline(
        self,
        policy: Policy,
        envelope: Envelope,
        payload: Mapping[str, Any],
        now: datetime,
        *,
        thread_start: datetime | None = None,
    ) -> Deadline:
        """The deadline ``policy`` opens for this message (PolicyInputError, NoPartyError if it
        cannot); ``thread_start`` is the start of the ``opens_on.start_of`` deadline, if any."""
        start = policy.start_from(
            sent_at=envelope.sent_at, payload=payload, thread_start=thread_start
        )
        due = policy.due_from(
            start, payload=payload, envelope_due_at=envelope.due_at, calendar=self._calendar
        )
        warnings = policy.warning_instants(start, due, calendar=self._calendar)
        notify = self._parties.procuratorates(envelope) if policy.notify_procuratorate else ()
        return Deadline(
            id=deadline_id(policy.id, envelope.message_id),
            policy_id=policy.id,
            case_id=envelope.case_id,
            correlation_id=envelope.correlation_id,
            opened_by=envelope.message_id,
            opened_kind=envelope.kind,
            # When the message was sent, not when this engine read it: a deadline that the
            # same message (or a prompt answer) closes never reads as closed before it opened.
            opened_at=min(envelope.sent_at, now),
            start_at=start,
            due_at=due,
            owner_agency=self._parties.resolve(policy.owner, envelope),
            waiting_agency=self._parties.resolve(policy.waiting, envelope),
            notify_procuratorate=policy.notify_procuratorate,
            notify_agencies=notify,
            obligation=policy.obligation,
            warnings_at=tuple(warnings),
        )

    async def _open(
        self,
        conn: Conn,
        envelope: Envelope,
        payload: Mapping[str, Any],
        now: datetime,
        done: Handled,
        bound: Any,
    ) -> None:
        for policy in self._policies.opened_by(envelope.kind, payload):
            source = policy.opens_on.start_of if policy.opens_on is not None else None
            thread_start = None
            if source is not None:
                thread_start = await self._store.thread_start(
                    conn, source, threads=[envelope.correlation_id], messages=_thread(envelope)
                )
            try:
                deadline = self.new_deadline(
                    policy, envelope, payload, now, thread_start=thread_start
                )
            except (PolicyInputError, NoPartyError, OverflowError) as e:
                # OverflowError: an instant the models accept (years 1-9999 UTC) that leaves the
                # calendar in Shanghai or when a period or a warning is counted from it.
                self._skip(bound, policy.id, "open", e)
                continue
            if await self._store.insert(conn, deadline):
                done.opened.append(deadline)
                bound.info(
                    "sla.opened",
                    policy=policy.id,
                    deadline_id=str(deadline.id),
                    due_at=deadline.due_at.isoformat(),
                    owner=deadline.owner_agency,
                )

    # -- move -----------------------------------------------------------------------------------

    async def _move(
        self,
        conn: Conn,
        envelope: Envelope,
        payload: Mapping[str, Any],
        now: datetime,
        done: Handled,
        bound: Any,
    ) -> None:
        policies = self._policies.moved_by(envelope.kind)
        if not policies:
            return
        changed = []
        for deadline in await self._matching(conn, policies, envelope, payload):
            if not self._owner_acts(deadline, envelope, bound, "move"):
                continue
            policy = self._policies.get(deadline.policy_id)
            try:
                due = policy.moved_due(payload)
                warnings = policy.warning_instants(deadline.start_at, due, calendar=self._calendar)
            except (PolicyInputError, OverflowError) as e:  # OverflowError: as in _open
                self._skip(bound, policy.id, "move", e)
                continue
            moved = move_step(
                deadline, due_at=due, warnings_at=warnings, moved_by=envelope.message_id, now=now
            )
            if moved is deadline:
                bound.info("sla.move_ignored", deadline_id=str(deadline.id), state=deadline.state)
                continue
            changed.append(moved)
            bound.info(
                "sla.moved",
                policy=policy.id,
                deadline_id=str(deadline.id),
                due_at=due.isoformat(),
                was_due_at=deadline.due_at.isoformat(),
            )
        await self._store.save(conn, changed)
        done.moved.extend(changed)

    # -- close ----------------------------------------------------------------------------------

    async def _close(
        self,
        conn: Conn,
        envelope: Envelope,
        payload: Mapping[str, Any],
        now: datetime,
        done: Handled,
        bound: Any,
    ) -> None:
        policies = self._policies.closed_by(envelope.kind)
        if not policies:
            return
        closed_at = min(envelope.sent_at, now)
        changed: list[Deadline] = []
        emissions: list[tuple[Deadline, Emission]] = []
        for deadline in await self._matching(conn, policies, envelope, payload):
            if not self._owner_acts(deadline, envelope, bound, "close"):
                continue
            after, emission = close_step(
                deadline,
                closed_by=envelope.message_id,
                kind=envelope.kind,
                closed_at=closed_at,
                now=now,
            )
            if after is deadline:
                continue
            changed.append(after)
            if emission is not None:
                emissions.append((after, emission))
            metrics.TIME_TO_CLOSE.labels(policy=after.policy_id).observe(
                max(0.0, (closed_at - after.start_at).total_seconds())
            )
            bound.info(
                "sla.closed",
                policy=after.policy_id,
                deadline_id=str(after.id),
                state=after.state,
                in_time=closed_at <= after.due_at,
            )
        await self._store.save(conn, changed)
        for deadline, emission in emissions:
            done.emitted.append(await self._emitter.emit(conn, deadline, emission, now=now))
            counter = metrics.MET if emission.kind == "sla.met" else metrics.BREACHES
            counter.labels(policy=deadline.policy_id).inc()
        done.closed.extend(changed)

    # -- matching -------------------------------------------------------------------------------

    async def _matching(
        self,
        conn: Conn,
        policies: Sequence[Policy],
        envelope: Envelope,
        payload: Mapping[str, Any],
    ) -> list[Deadline]:
        """The unclosed deadlines of ``policies`` this message speaks to, locked."""
        found: list[Deadline] = []
        by_thread = [p.id for p in policies if p.match_by == "correlation_id"]
        if by_thread:
            found += await self._store.lock_by_thread(
                conn, by_thread, threads=[envelope.correlation_id], messages=_thread(envelope)
            )
        by_case = [p.id for p in policies if p.match_by == "case_id"]
        if by_case:
            found += await self._store.lock_by_case(conn, by_case, envelope.case_id)
        for policy in policies:
            if policy.match_by != "period" or policy.schedule is None:
                continue
            key = period_key(field_value(payload, policy.schedule.period_field))
            if key is None:
                continue
            rows = await self._store.lock_by_period(conn, policy.id, [key])
            found += [d for d in rows if d.waiting_agency in envelope.recipients]
        return found

    def _owner_acts(self, deadline: Deadline, envelope: Envelope, bound: Any, step: str) -> bool:
        if deadline.owner_agency == envelope.sender:
            return True
        bound.info(
            f"sla.{step}_ignored",
            deadline_id=str(deadline.id),
            policy=deadline.policy_id,
            owner=deadline.owner_agency,
            reason="sender does not owe this deadline",
        )
        return False

    def _skip(self, bound: Any, policy_id: str, step: str, error: Exception) -> None:
        reason = "no_party" if isinstance(error, NoPartyError) else "bad_field"
        metrics.SKIPPED.labels(policy=policy_id, reason=reason).inc()
        bound.warning("sla.skipped", policy=policy_id, step=step, reason=reason, error=str(error))
