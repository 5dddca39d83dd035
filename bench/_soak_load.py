"""The soak's traffic: a seeded mix of realistic department documents, offered at a steady rate
to the adapters' ``POST /v1/submissions``, each retried with its Idempotency-Key until accepted.

Every message belongs to one of ``cases`` enforcement cases; a case always involves the same
bureau, regulator and police agency, so each (sender, case) pair has a sequence of messages and
the recipients' arrival order can be checked against it. A sender's messages of one case are
submitted one after another (the next only after the previous got its 202), as a department's
case system would; everything else runs concurrently.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Final, Literal
from urllib.parse import urlsplit

from _soak_http import HttpError, Pool

from adapters.court.testing import acceptance, ruling
from adapters.enforcement.testing import (
    clue_receipt,
    opinion_request,
    penalty_decision,
    penalty_feedback,
)
from adapters.police.testing import case_update, filing_decision, receipt
from adapters.procuratorate.testing import supervision_notice
from adapters.regulators.testing import clue_handover, opinion_delegated, opinion_response
from bus.routing import RoutingPolicy
from bus.sim.documents import court_application, obstruction_report, transfer
from bus.sim.world import PROCURATORATE, REGULATORS

__all__ = ["COURT", "ENFORCEMENT", "MIX", "POLICE", "LoadGenerator", "Submission"]

ENFORCEMENT: Final = (
    "ygh.enforcement.bureau",
    "ygh.enforcement.tangchi",
    "ygh.enforcement.qidian",
    "ygh.enforcement.yangzong",
)
POLICE: Final = ("ygh.police.bureau", "kmg.police.eco")
COURT: Final = "ygh.court"


@dataclass(frozen=True, slots=True)
class _Case:
    """The parties of one case and its numbers."""

    n: int
    ajbh: str
    bureau: str
    regulator: str
    police: str


Build = Callable[[_Case, int], tuple[str, list[str], dict[str, Any]]]
"""(case, sequence) → (sender, named recipients, document)."""


def _doc_no(case: _Case, seq: int, tag: str) -> str:
    return f"阳城执{tag}〔2026〕{case.n:05d}-{seq:06d}号"


def _clue_handover(c: _Case, s: int) -> tuple[str, list[str], dict[str, Any]]:
    return (
        c.regulator,
        [c.bureau],
        clue_handover(ajbh=c.ajbh, xsbh=f"XS-{c.n}-{s}", jsdw=[c.bureau]),
    )


def _opinion_response(c: _Case, s: int) -> tuple[str, list[str], dict[str, Any]]:
    doc = opinion_response(ajbh=c.ajbh, qqbh=f"QQ-{c.n}-{s}", dfbh=f"DF-{c.n}-{s}", jsdw=[c.bureau])
    return c.regulator, [c.bureau], doc


def _opinion_delegated(c: _Case, s: int) -> tuple[str, list[str], dict[str, Any]]:
    return (
        c.regulator,
        [c.bureau],
        opinion_delegated(ajbh=c.ajbh, qqbh=f"QQ-{c.n}-{s}", jsdw=[c.bureau]),
    )


def _opinion_request(c: _Case, s: int) -> tuple[str, list[str], dict[str, Any]]:
    return (
        c.bureau,
        [c.regulator],
        opinion_request(ajbh=c.ajbh, qqbh=f"QQ-{c.n}-{s}", jsdw=[c.regulator]),
    )


def _penalty_feedback(c: _Case, s: int) -> tuple[str, list[str], dict[str, Any]]:
    doc = penalty_feedback(
        ajbh=c.ajbh,
        bgbh=f"BG-{c.n}-{s}",
        jsdw=[c.regulator],
        decisions=[penalty_decision(c.ajbh, s % 10_000)],
    )
    return c.bureau, [c.regulator], doc


def _clue_receipt(c: _Case, s: int) -> tuple[str, list[str], dict[str, Any]]:
    return (
        c.bureau,
        [c.regulator],
        clue_receipt(ajbh=c.ajbh, xsbh=f"XS-{c.n}-{s}", jsdw=[c.regulator]),
    )


def _transfer(c: _Case, s: int) -> tuple[str, list[str], dict[str, Any]]:
    doc = transfer(ajbh=c.ajbh, ysshh=_doc_no(c, s, "移"), jsdw=[c.police], now=datetime.now(UTC))
    return c.bureau, [c.police], doc


def _receipt(c: _Case, s: int) -> tuple[str, list[str], dict[str, Any]]:
    return c.police, [c.bureau], receipt(ajbh=c.ajbh, ysshh=_doc_no(c, s, "移"), jsdw=[c.bureau])


def _filing(c: _Case, s: int) -> tuple[str, list[str], dict[str, Any]]:
    doc = filing_decision(
        ajbh=c.ajbh,
        ysshh=_doc_no(c, s, "移"),
        jsdw=[c.bureau],
        filed=s % 3 != 0,
        jdsh=f"阳公立〔2026〕{c.n:05d}-{s}号",
        reasons=["没有犯罪事实"],
    )
    return c.police, [c.bureau], doc


def _case_update(c: _Case, s: int) -> tuple[str, list[str], dict[str, Any]]:
    return (
        c.police,
        [c.bureau],
        case_update(ajbh=c.ajbh, ysshh=_doc_no(c, s, "移"), jsdw=[c.bureau]),
    )


def _court_application(c: _Case, s: int) -> tuple[str, list[str], dict[str, Any]]:
    doc = court_application(
        ajbh=c.ajbh, sqh=f"SQ-{c.n}-{s}", jsdw=[COURT], today=date.today(), now=datetime.now(UTC)
    )
    return c.bureau, [COURT], doc


def _court_acceptance(c: _Case, s: int) -> tuple[str, list[str], dict[str, Any]]:
    doc = acceptance(
        ajbh=c.ajbh,
        sqh=f"SQ-{c.n}-{s}",
        jsdw=[c.bureau],
        accepted=True,
        fyah=f"(2026)云0191行审{s}号",
    )
    return COURT, [c.bureau], doc


def _court_ruling(c: _Case, s: int) -> tuple[str, list[str], dict[str, Any]]:
    doc = ruling(ajbh=c.ajbh, sqh=f"SQ-{c.n}-{s}", fyah=f"(2026)云0191行审{s}号", jsdw=[c.bureau])
    return COURT, [c.bureau], doc


def _supervision_notice(c: _Case, s: int) -> tuple[str, list[str], dict[str, Any]]:
    doc = supervision_notice(
        ajbh=c.ajbh,
        ysshh=_doc_no(c, s, "移"),
        jsdw=[c.police, c.bureau],
        gajg=c.police,
        tzsh=f"阳检监〔2026〕{c.n:05d}-{s}号",
        file_case=s % 2 == 0,
    )
    return PROCURATORATE, [c.police, c.bureau], doc


def _obstruction(c: _Case, s: int) -> tuple[str, list[str], dict[str, Any]]:
    doc = obstruction_report(
        ajbh=c.ajbh,
        ysshh=_doc_no(c, s, "移"),
        jsdw=[PROCURATORATE],
        zadw=c.police,
        now=datetime.now(UTC),
    )
    return c.bureau, [PROCURATORATE], doc


MIX: Final[tuple[tuple[str, float, Build], ...]] = (
    # Most traffic is between the bureau and the regulators (2017 plan item 4); the criminal
    # chain and the court carry less; the procuratorate writes rarely.
    ("clue.handover", 18, _clue_handover),
    ("opinion.request", 14, _opinion_request),
    ("opinion.response", 11, _opinion_response),
    ("opinion.delegated", 3, _opinion_delegated),
    ("penalty.feedback", 10, _penalty_feedback),
    ("clue.receipt", 10, _clue_receipt),
    ("criminal.transfer", 7, _transfer),
    ("criminal.receipt", 6, _receipt),
    ("criminal.filing_decision", 4, _filing),
    ("criminal.case_update", 3, _case_update),
    ("court.execution_application", 5, _court_application),
    ("court.acceptance", 3, _court_acceptance),
    ("court.ruling", 2, _court_ruling),
    ("supervision.notice", 2, _supervision_notice),
    ("obstruction.report", 2, _obstruction),
)
"""(kind, weight, builder): the offered mix."""


@dataclass(slots=True)
class Submission:
    """One logical department submission and what became of it."""

    seq: int
    kind: str
    sender: str
    case: str
    deliver_to: tuple[str, ...]
    """Every agency the routing policy delivers it to, among those the soak runs departments for."""
    body: bytes
    offered_s: float
    sent_s: float = 0.0
    """Start of the POST that was accepted."""
    accepted_s: float = 0.0
    message_id: str = ""
    attempts: int = 0
    status: Literal["pending", "accepted", "refused", "gave_up"] = "pending"
    error: str = ""
    other_ids: list[str] = field(default_factory=list)
    """Different message ids answered for the same Idempotency-Key (must stay empty)."""

    @property
    def key(self) -> str:
        """The Idempotency-Key: one per logical submission, reused on every retry."""
        return f"soak-{self.seq}"


class LoadGenerator:
    """Offers ``rate`` submissions a second for ``duration_s``, keeping every one it made."""

    def __init__(
        self,
        *,
        seed: int,
        rate: float,
        cases: int,
        policy: RoutingPolicy,
        served: set[str],
        base_url: Mapping[str, str],
        tokens: Mapping[str, str],
        max_in_flight: int = 64,
    ) -> None:
        self._rng = random.Random(seed)
        self._jitter = random.Random(seed + 1)  # retries: timing must not shift the mix
        self.rate = rate
        self._cases = [
            _Case(
                n=n,
                ajbh=f"阳城执〔2026〕{n:05d}号",
                bureau=ENFORCEMENT[n % len(ENFORCEMENT)],
                regulator=REGULATORS[(n // len(ENFORCEMENT)) % len(REGULATORS)],
                police=POLICE[n % len(POLICE)],
            )
            for n in range(cases)
        ]
        self._kinds = [k for k, _, _ in MIX]
        self._weights = [w for _, w, _ in MIX]
        self._builders = {k: b for k, _, b in MIX}
        self._policy = policy
        self._served = served
        self._base_url = dict(base_url)
        self._tokens = dict(tokens)
        self._pools: dict[str, Pool] = {}
        self._max_in_flight = max_in_flight
        self._case_locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._sequence: dict[tuple[str, str], int] = {}
        self.submissions: list[Submission] = []
        self.order: dict[tuple[str, str], list[str]] = {}
        """(sender, case) → message ids in acceptance order."""
        self.newly_accepted: list[Submission] = []
        """Accepted since the caller last emptied it."""
        self._tasks: set[asyncio.Task[None]] = set()
        self.give_up_at = float("inf")
        self.refused_samples: list[str] = []

    def _pool(self, sender: str) -> Pool:
        base = self._base_url[sender]
        pool = self._pools.get(base)
        if pool is None:
            url = urlsplit(base)
            pool = Pool(url.hostname or "127.0.0.1", url.port or 80, size=self._max_in_flight)
            self._pools[base] = pool
        return pool

    def make(self, seq: int, now_s: float) -> Submission:
        """The next submission of the mix (its document built now, its bytes fixed for retries)."""
        kind = self._rng.choices(self._kinds, self._weights)[0]
        case = self._rng.choice(self._cases)
        key = (kind, case.ajbh)
        n = self._sequence[key] = self._sequence.get(key, 0) + 1
        sender, named, doc = self._builders[kind](case, n)
        # An answer must name the message it answers (glbh) or its adapter refuses it: every
        # message of a case names the case's one thread here.
        doc.setdefault("glbh", str(uuid.uuid5(uuid.NAMESPACE_URL, f"casebus-soak/{case.ajbh}")))
        decision = self._policy.authorize(kind=kind, sender=sender, recipients=named)
        if not decision.allowed:  # a mistake in the mix, not in the bus: stop at once
            raise SystemExit(f"soak mix: {kind} {sender} -> {named} is not routable: {decision}")
        return Submission(
            seq=seq,
            kind=kind,
            sender=sender,
            case=case.ajbh,
            deliver_to=tuple(a for a in decision.deliver_to if a in self._served),
            body=json.dumps(doc, ensure_ascii=False).encode(),
            offered_s=now_s,
        )

    async def run(self, duration_s: float) -> None:
        """Offer submissions on schedule for ``duration_s``; each runs as a task of its own."""
        started = time.monotonic()
        issued = 0
        while True:
            now = time.monotonic()
            if now - started >= duration_s:
                break
            due = int((now - started) * self.rate) + 1
            while issued < due:
                sub = self.make(len(self.submissions), now)
                self.submissions.append(sub)
                task = asyncio.create_task(self._submit(sub))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                issued += 1
            await asyncio.sleep(max(0.0, started + due / self.rate - time.monotonic()))

    @property
    def outstanding(self) -> int:
        """Submissions still being tried."""
        return len(self._tasks)

    async def finish(self, timeout_s: float) -> None:
        """Let outstanding submissions keep retrying for up to ``timeout_s``, then give up."""
        self.give_up_at = time.monotonic() + timeout_s
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout_s + 35)
        for task in list(self._tasks):
            task.cancel()
        for pool in self._pools.values():
            await pool.close()

    async def _submit(self, sub: Submission) -> None:
        lock = self._case_locks.setdefault((sub.sender, sub.case), asyncio.Lock())
        async with lock:
            await self._post_until_accepted(sub)
            if sub.status == "accepted":
                self.order.setdefault((sub.sender, sub.case), []).append(sub.message_id)
                self.newly_accepted.append(sub)

    async def _post_until_accepted(self, sub: Submission) -> None:
        pool = self._pool(sub.sender)
        headers = {
            "Authorization": f"Bearer {self._tokens[sub.sender]}",
            "Idempotency-Key": sub.key,
            "Content-Type": "application/json",
        }
        delay = 0.2
        while True:
            sub.attempts += 1
            try:
                r = await pool.post("/v1/submissions", sub.body, headers)
            except HttpError as e:
                sub.error = str(e)
            else:
                if r.status in (200, 202):
                    message_id = json.loads(r.body)["message_id"]
                    if sub.message_id and message_id != sub.message_id:
                        sub.other_ids.append(message_id)
                    sub.message_id = sub.message_id or message_id
                    sub.sent_s = r.sent_s
                    sub.accepted_s = time.monotonic()
                    sub.status = "accepted"
                    return
                if 400 <= r.status < 500 and r.status not in (408, 429):
                    sub.status = "refused"
                    sub.error = f"{r.status}: {r.body[:500].decode(errors='replace')}"
                    if len(self.refused_samples) < 5:
                        self.refused_samples.append(f"{sub.kind} from {sub.sender}: {sub.error}")
                    return
                sub.error = f"HTTP {r.status}"
            if time.monotonic() >= self.give_up_at:
                sub.status = "gave_up"
                return
            await asyncio.sleep(delay / 2 + self._jitter.uniform(0, delay / 2))
            delay = min(5.0, delay * 2)
