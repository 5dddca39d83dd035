"""A seeded fortnight of Yangzonghai case work, driven through the adapters' HTTP APIs.

Each flow is a coroutine that waits for its simulated day (:class:`Days`), acts as a department
would (submits in its own vocabulary, waits for what its system receives) and waits for the next
day. The day loop moves the SLA clock on once every flow is idle, so warnings and breaches fall
where the statute puts them.

The adapters stamp ``sent_at`` on the same simulated clock the SLA engine counts on (see
:mod:`bus.sim.clock`), so a step owed within three days is taken before the third simulated
day, and the one urgent opinion request, due three hours after it was sent, is answered days
late.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from adapters._framework.fake_department import FakeDepartment, RunningAdapter
from adapters.court.testing import acceptance, ruling
from adapters.enforcement.testing import (
    clue_receipt,
    opinion_request,
    penalty_decision,
    penalty_feedback,
)
from adapters.police.testing import filing_decision, jurisdiction_forward, receipt
from adapters.police.testing import reconsideration_decision as police_reconsideration
from adapters.procuratorate.testing import supervision_notice
from adapters.regulators.testing import clue_handover, opinion_delegated, opinion_response
from bus.errors import SimulationError
from bus.sim import documents as docs
from bus.sim.world import BUREAU, COURT, ECO, POLICE, PROCURATORATE, World
from bus.sla.calendar import SHANGHAI

__all__ = ["Days", "Expected", "Fortnight"]


class Days:
    """Simulated days: flows wait for theirs; the loop moves on once no flow is busy."""

    def __init__(self) -> None:
        self.today = 0
        self._reached: dict[int, asyncio.Event] = {}
        self._waiting: dict[int, int] = {}
        self._busy = 0
        self._changed = asyncio.Event()

    async def on(self, day: int) -> None:
        """Wait (idle) until simulated ``day`` has begun."""
        if day <= self.today:
            return
        if day not in self._reached:
            self._reached[day] = asyncio.Event()
        self._waiting[day] = self._waiting.get(day, 0) + 1
        self._busy -= 1
        self._changed.set()
        await self._reached[day].wait()

    def begin(self, day: int) -> None:
        """Start ``day``: wake the flows waiting for it (busy from now, so :meth:`idle` waits
        for them even before they run)."""
        self.today = day
        for d, event in self._reached.items():
            if d <= day and not event.is_set():
                self._busy += self._waiting.pop(d, 0)
                event.set()

    def spawn(self, flow: Awaitable[None]) -> asyncio.Task[None]:
        """Run a flow, busy until it waits for a day or ends."""
        self._busy += 1

        async def run() -> None:
            try:
                await flow
            finally:
                self._busy -= 1
                self._changed.set()

        return asyncio.create_task(run())

    async def idle(self, timeout_s: float) -> None:
        """Until no flow is busy (SimulationError after ``timeout_s``)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self._busy > 0:
            self._changed.clear()
            left = deadline - loop.time()
            if left <= 0:
                raise SimulationError(f"day {self.today}: flows still busy after {timeout_s}s")
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except TimeoutError:
                continue


@dataclass
class Expected:
    """What the fortnight must show at the end."""

    breaches: list[tuple[str, str, str]] = field(default_factory=list)
    """(policy, owner agency, case) that must end breached."""
    planted_case: str = ""
    """The 以罚代刑 case the screening must find."""
    transferred_suspect: str = ""
    """A suspected crime that was transferred: the screening must not list it."""
    flows: dict[str, str] = field(default_factory=dict)
    """Flow name → one case it ran on (for ``casebus trace``)."""


class Fortnight:
    """The flows of the simulated fortnight, on a running :class:`World`."""

    def __init__(self, world: World, *, seed: int, days: int = 14) -> None:
        self.world = world
        self.rng = random.Random(seed)
        self.days = Days()
        self.length = days
        self.expected = Expected()
        self.run_tag = uuid.uuid4().hex[:4]
        """Keeps this run's case numbers apart from an earlier run's in the same database."""
        self._serial = 0

    # -- helpers --------------------------------------------------------------------------------

    def now(self) -> datetime:
        """The simulated instant."""
        return self.world.clock.now()

    def dated(self, doc: dict[str, Any], *fields: str, hours: float = 0) -> dict[str, Any]:
        """``doc`` with its ``fields`` (the adapters' sample documents stamp them with the wall
        clock) set to the simulated instant, ``hours`` from now."""
        at = (self.now() + timedelta(hours=hours)).isoformat()
        return doc | dict.fromkeys(fields, at)

    def case_no(self, prefix: str = "阳城执") -> str:
        self._serial += 1
        return f"{prefix}〔2026〕{self.run_tag}-{self._serial:03d}号"

    async def submit(self, adapter: RunningAdapter, agency: str, doc: dict[str, Any]) -> str:
        """Submit as ``agency``'s department; the message id."""
        r = await adapter.department(agency).submit(doc)
        if r.status_code != 202:
            raise SimulationError(f"{agency} {doc['ywlx']} refused ({r.status_code}): {r.text}")
        return str(r.json()["message_id"])

    async def arrives(
        self,
        fake: FakeDepartment,
        code: str,
        match: Callable[[dict[str, Any]], bool],
        timeout_s: float = 30,
    ) -> dict[str, Any]:
        """The first document of ``code`` matching ``match`` that ``fake`` received."""
        for _ in range(int(timeout_s * 20)):
            for d in fake.received:
                if d.get("ywlx") == code and match(d):
                    return d
            await asyncio.sleep(0.05)
        raise SimulationError(f"{fake.name} never received {code}")

    async def pulled(self, agency: str, code: str, case: str, timeout_s: float = 30) -> None:
        """Wait for the procuratorate's pull inbox to hold ``code`` of ``case``."""
        dept = self.world.proc.department(agency)
        for _ in range(int(timeout_s * 10)):
            items = (await dept.pull(limit=500))["items"]
            if any(i["document"]["ywlx"] == code and i["document"]["ajbh"] == case for i in items):
                return
            await asyncio.sleep(0.1)
        raise SimulationError(f"{agency} never pulled {code} of {case}")

    # -- regulators: clues and opinions ---------------------------------------------------------

    async def clue(self, regulator: str, day: int, *, signed: bool, accept: bool) -> None:
        """线索移交 → 线索签收 (or, once, never signed: the bureau breaches)."""
        await self.days.on(day)
        case, xsbh = self.case_no(), f"线索-{self.run_tag}-{self._serial:03d}"
        w = self.world
        clue_id = await self.submit(
            w.reg,
            regulator,
            self.dated(clue_handover(ajbh=case, xsbh=xsbh, jsdw=[BUREAU]), "fxsj", hours=-48),
        )
        await self.arrives(w.bureau, "线索移交", lambda d: d["xxbh"] == clue_id)
        if not signed:
            self.expected.breaches.append(("clue.receipt", BUREAU, case))
            self.expected.flows.setdefault("clue never signed", case)
            return
        self.expected.flows.setdefault("clue handover", case)
        doc = self.dated(
            clue_receipt(ajbh=case, xsbh=xsbh, jsdw=[regulator], accept=accept, glbh=clue_id),
            "qssj",
        )
        await self.submit(w.enf, BUREAU, doc)
        await self.arrives(w.regulators[regulator], "线索签收", lambda d: d["ajbh"] == case)

    async def opinion(
        self, regulator: str, day: int, *, answer_on: int, due_in_days: int, delegate_on: int = -1
    ) -> None:
        """意见征询 → (委托机构办理) → 意见答复, in time."""
        await self.days.on(day)
        w = self.world
        case, qqbh = self.case_no(), f"征询-{self.run_tag}-{self._serial:03d}"
        doc = opinion_request(ajbh=case, qqbh=qqbh, jsdw=[regulator])
        doc["dfqx"] = (self.now() + timedelta(days=due_in_days)).isoformat()
        request = await self.submit(w.enf, BUREAU, doc)
        await self.arrives(w.regulators[regulator], "意见征询", lambda d: d["xxbh"] == request)
        if delegate_on >= 0:
            self.expected.flows.setdefault("opinion delegated", case)
            await self.days.on(delegate_on)
            moved = self.dated(
                opinion_delegated(ajbh=case, qqbh=qqbh, jsdw=[BUREAU], glbh=request), "wtsj"
            )
            moved["yjwcsj"] = (self.now() + timedelta(days=answer_on - delegate_on + 2)).isoformat()
            await self.submit(w.reg, regulator, moved)
            await self.arrives(w.bureau, "委托机构办理", lambda d: d["ajbh"] == case)
        else:
            self.expected.flows.setdefault("opinion answered", case)
        await self.days.on(answer_on)
        await self._answer_opinion(regulator, case, qqbh, request)

    async def _answer_opinion(self, regulator: str, case: str, qqbh: str, request: str) -> None:
        """``regulator`` answers the request ``qqbh``; the bureau receives the 意见答复."""
        answer = self.dated(
            opinion_response(
                ajbh=case, qqbh=qqbh, dfbh=f"答复-{qqbh}", jsdw=[BUREAU], glbh=request
            ),
            "dfsj",
        )
        await self.submit(self.world.reg, regulator, answer)
        await self.arrives(self.world.bureau, "意见答复", lambda d: d["ajbh"] == case)

    async def urgent_opinion_answered_late(self, regulator: str, answer_on: int) -> None:
        """An urgent request (due three hours after it is sent) answered days later."""
        await self.days.on(0)
        w = self.world
        case, qqbh = self.case_no(), f"加急征询-{self.run_tag}"
        due = self.now() + timedelta(hours=3)
        doc = opinion_request(ajbh=case, qqbh=qqbh, jsdw=[regulator], yjlx="检测")
        doc["dfqx"] = due.isoformat()
        request = await self.submit(w.enf, BUREAU, doc)
        self.expected.breaches.append(("opinion.response", regulator, case))
        self.expected.flows["opinion answered late"] = case
        await self.days.on(answer_on)
        await self.arrives(w.bureau, "超期通报", lambda d: d["ajbh"] == case, timeout_s=60)
        await self._answer_opinion(regulator, case, qqbh, request)

    # -- enforcement: monthly penalty feedback, with the planted 以罚代刑 case -------------------

    async def penalty_feedback(self, day: int, regulators: list[str]) -> None:
        """处罚情况反馈 for last month to every regulator; one entry is a suspected crime the
        bureau never transferred (以罚代刑), one a suspected crime it did transfer."""
        await self.days.on(day)
        w = self.world
        planted = self.case_no("阳城执罚")
        self.expected.planted_case = planted
        for n, regulator in enumerate(regulators):
            decisions = [
                penalty_decision(self.case_no("阳城执罚"), 100 * n + k, amount_fen=amount)
                for k, amount in enumerate(
                    self.rng.choice([50_000, 200_000, 500_000, 2_000_000])
                    for _ in range(self.rng.randint(1, 4))
                )
            ]
            if regulator == "ygh.regulator.land":
                suspect = penalty_decision(planted, 990)
                suspect["sxfz"] = True
                decisions.append(suspect)
                if self.expected.transferred_suspect:
                    known = penalty_decision(self.expected.transferred_suspect, 991)
                    known["sxfz"] = True
                    decisions.append(known)
            today = self.now().astimezone(SHANGHAI).date()
            report = penalty_feedback(
                ajbh=f"反馈-{self.run_tag}-{n}",
                bgbh=f"阳城执反〔2026〕{self.run_tag}-{n}",
                jsdw=[regulator],
                decisions=[d | {"jdrq": today.isoformat()} for d in decisions],
            )
            report |= {"qsrq": today.replace(day=1).isoformat(), "jzrq": today.isoformat()}
            await self.submit(w.enf, BUREAU, report)
        self.expected.flows["penalty feedback"] = f"反馈-{self.run_tag}-0"

    # -- the criminal-transfer chain -----------------------------------------------------------

    async def _transferred(self, day: int) -> tuple[str, str, str]:
        """Transfer a case to the police, who sign the receipt: (case, letter no, transfer id)."""
        await self.days.on(day)
        w = self.world
        case = self.case_no()
        letter = f"阳城执移〔2026〕{self.run_tag}-{self._serial:03d}号"
        tid = await self.submit(
            w.enf, BUREAU, docs.transfer(ajbh=case, ysshh=letter, jsdw=[POLICE], now=self.now())
        )
        await self.arrives(w.police, "涉嫌犯罪案件移送", lambda d: d["xxbh"] == tid)
        signed = receipt(ajbh=case, ysshh=letter, jsdw=[BUREAU], glbh=tid)
        signed["jssj"] = self.now().isoformat()
        await self.submit(w.pol, POLICE, signed)
        await self.arrives(w.bureau, "移送回执", lambda d: d["ajbh"] == case)
        return case, letter, tid

    async def _decide(
        self, agency: str, case: str, letter: str, tid: str, *, filed: bool, n: int
    ) -> dict[str, Any]:
        w = self.world
        reasons = None if filed else ["涉案面积未达立案追诉标准"]
        prefix = "昆公经" if agency == ECO else "阳公"
        jdsh = f"{prefix}{'立' if filed else '不立'}〔2026〕{self.run_tag}-{n}号"
        doc = filing_decision(
            ajbh=case,
            ysshh=letter,
            jsdw=[BUREAU],
            filed=filed,
            jdsh=jdsh,
            glbh=tid,
            reasons=reasons,
        )
        doc = self.dated(doc, "jdsj")
        await self.submit(w.pol, agency, doc)
        return await self.arrives(
            w.bureau, "立案决定", lambda d: d["ajbh"] == case and d["jdsh"] == jdsh
        )

    async def _hand_over(self, agency: str, case: str, letter: str, tid: str, xsajbh: str) -> None:
        w = self.world
        doc = docs.evidence_handover(
            ajbh=case, ysshh=letter, xsajbh=xsajbh, jsdw=[agency], now=self.now(), glbh=tid
        )
        await self.submit(w.enf, BUREAU, doc)
        fake = w.eco if agency == ECO else w.police
        await self.arrives(fake, "移交涉案物品", lambda d: d["ajbh"] == case)

    async def transfer_filed(self, day: int, *, evidence: bool) -> None:
        """移送 → 回执 → 立案 → 移交涉案物品 (or the items never handed over: a breach)."""
        case, letter, tid = await self._transferred(day)
        await self.days.on(day + 1)
        filed = await self._decide(POLICE, case, letter, tid, filed=True, n=self._serial)
        if not evidence:
            self.expected.breaches.append(("criminal.evidence_handover", BUREAU, case))
            self.expected.flows["transfer: evidence never handed over"] = case
            return
        self.expected.flows.setdefault("transfer: filed and evidence", case)
        self.expected.transferred_suspect = self.expected.transferred_suspect or case
        await self.days.on(day + 2)
        await self._hand_over(POLICE, case, letter, tid, filed["xsajbh"])

    async def transfer_refused_then_supervised(self, day: int) -> None:
        """不予立案 → 复议 (维持) → 立案监督 → 通知立案 → 立案 → 移交涉案物品."""
        w = self.world
        case, letter, tid = await self._transferred(day)
        self.expected.flows["transfer: refused, reconsidered, supervised, filed"] = case
        await self.days.on(day + 1)
        refused = await self._decide(POLICE, case, letter, tid, filed=False, n=self._serial)
        await self.days.on(day + 2)
        fysqh = f"复议-{self.run_tag}"
        await self.submit(
            w.enf,
            BUREAU,
            docs.reconsideration_request(
                ajbh=case,
                ysshh=letter,
                fysqh=fysqh,
                jdsh=refused["jdsh"],
                jsdw=[POLICE],
                now=self.now(),
                glbh=tid,
            ),
        )
        await self.arrives(w.police, "提请复议", lambda d: d["ajbh"] == case)
        kept = police_reconsideration(
            ajbh=case,
            ysshh=letter,
            jsdw=[BUREAU],
            fysqh=fysqh,
            file_case=False,
            jdsh=f"阳公复〔2026〕{self.run_tag}号",
            glbh=tid,
        )
        await self.submit(w.pol, POLICE, self.dated(kept, "jdsj"))
        await self.arrives(w.bureau, "复议决定", lambda d: d["ajbh"] == case)
        request = docs.supervision_request(
            ajbh=case,
            ysshh=letter,
            jdsh=refused["jdsh"],
            gajg=POLICE,
            jsdw=[PROCURATORATE],
            now=self.now(),
            refusal_id=refused["xxbh"],
            glbh=tid,
        )
        await self.submit(w.enf, BUREAU, request)
        await self.pulled(PROCURATORATE, "提请立案监督", case)
        notice = supervision_notice(
            ajbh=case,
            ysshh=letter,
            jsdw=[POLICE, BUREAU],
            gajg=POLICE,
            tzsh=f"阳检立监〔2026〕{self.run_tag}号",
            file_case=True,
            glbh=tid,
        )
        notice = self.dated(notice, "qfsj") | self.dated({}, "xq", hours=15 * 24)
        await self.submit(w.proc, PROCURATORATE, notice)
        await self.arrives(w.police, "立案监督通知", lambda d: d["ajbh"] == case)
        filed = await self._decide(POLICE, case, letter, tid, filed=True, n=self._serial + 500)
        await self._hand_over(POLICE, case, letter, tid, filed["xsajbh"])

    async def transfer_forwarded(self, day: int) -> None:
        """回执 → 移送管辖 to the competent bureau (notice to the sender) → 立案 → 移交物品."""
        w = self.world
        case, letter, tid = await self._transferred(day)
        self.expected.flows["transfer: wrong bureau, forwarded"] = case
        await self.days.on(day + 1)
        forward = jurisdiction_forward(
            ajbh=case, ysshh=letter, jsdw=[BUREAU, ECO], gxdw=ECO, glbh=tid
        )
        await self.submit(w.pol, POLICE, self.dated(forward, "zssj"))
        await self.arrives(w.eco, "移送管辖", lambda d: d["ajbh"] == case)
        await self.arrives(w.bureau, "移送管辖", lambda d: d["ajbh"] == case)
        await self.days.on(day + 2)
        filed = await self._decide(ECO, case, letter, tid, filed=True, n=self._serial)
        await self._hand_over(ECO, case, letter, tid, filed["xsajbh"])

    async def transfer_never_decided(self, day: int, report_on: int) -> None:
        """回执, then silence: the filing review breaches; the bureau reports the obstruction."""
        w = self.world
        case, letter, _ = await self._transferred(day)
        self.expected.breaches.append(("criminal.filing_decision", POLICE, case))
        self.expected.flows["transfer: never decided"] = case
        await self.days.on(report_on)
        await self.arrives(
            w.bureau,
            "超期通报",
            lambda d: d["ajbh"] == case and d.get("clbh") == "criminal.filing_decision",
            timeout_s=60,
        )
        report = docs.obstruction_report(
            ajbh=case, ysshh=letter, jsdw=[PROCURATORATE], zadw=POLICE, now=self.now()
        )
        await self.submit(w.enf, BUREAU, report)

    # -- court --------------------------------------------------------------------------------

    async def court_execution(self, day: int, accept_on: int, rule_on: int) -> None:
        """强制执行申请 → 受理 → 执行裁定."""
        await self.days.on(day)
        w = self.world
        case, sqh = self.case_no(), f"阳城执申〔2026〕{self.run_tag}号"
        app = docs.court_application(
            ajbh=case,
            sqh=sqh,
            jsdw=[COURT],
            today=self.now().astimezone(SHANGHAI).date(),
            now=self.now(),
        )
        app_id = await self.submit(w.enf, BUREAU, app)
        self.expected.flows["court execution"] = case
        await self.arrives(w.court, "强制执行申请", lambda d: d["xxbh"] == app_id)
        await self.days.on(accept_on)
        fyah = f"(2026)云0191行审{self.run_tag}号"
        doc = acceptance(ajbh=case, sqh=sqh, jsdw=[BUREAU], accepted=True, fyah=fyah, glbh=app_id)
        await self.submit(w.crt, COURT, self.dated(doc, "jdsj"))
        await self.arrives(w.bureau, "受理决定", lambda d: d["ajbh"] == case)
        await self.days.on(rule_on)
        decided = ruling(ajbh=case, sqh=sqh, fyah=fyah, jsdw=[BUREAU])
        decided = self.dated(decided, "cdsj") | {"glbh": app_id}
        await self.submit(w.crt, COURT, decided)
        await self.arrives(w.bureau, "执行裁定", lambda d: d["ajbh"] == case)

    # -- the plan -----------------------------------------------------------------------------

    def plan(self, regulators: list[str]) -> list[Awaitable[None]]:
        """Every flow of the fortnight, its days drawn from the seed within statutory limits."""
        rng = self.rng
        last = self.length - 1

        def by(day: int) -> int:
            return min(day, last)

        regs = list(regulators)
        rng.shuffle(regs)
        flows: list[Awaitable[None]] = []
        clue_senders = regs[: rng.randint(4, 6)]
        unsigned = rng.randrange(len(clue_senders))
        for i, regulator in enumerate(clue_senders):
            flows.append(
                self.clue(
                    regulator,
                    rng.randint(0, 1),
                    signed=i != unsigned,
                    accept=rng.random() > 0.2,
                )
            )
        asked = regs[-4:]
        for regulator in asked[:2]:
            day = rng.randint(0, 6)
            flows.append(
                self.opinion(
                    regulator,
                    day,
                    answer_on=by(day + rng.randint(1, 4)),
                    due_in_days=rng.randint(5, 7),
                )
            )
        flows.append(self.opinion(asked[2], 1, answer_on=by(9), due_in_days=5, delegate_on=2))
        flows.append(self.urgent_opinion_answered_late(asked[3], answer_on=rng.randint(2, 4)))
        flows.append(self.transfer_filed(0, evidence=True))
        flows.append(self.transfer_filed(rng.randint(0, 1), evidence=True))
        flows.append(self.transfer_filed(0, evidence=False))
        flows.append(self.transfer_refused_then_supervised(0))
        flows.append(self.transfer_forwarded(rng.randint(0, 1)))
        flows.append(self.transfer_never_decided(0, report_on=5))
        flows.append(self.court_execution(0, accept_on=rng.randint(1, 3), rule_on=6))
        flows.append(self.penalty_feedback(by(8), list(regulators)))
        return flows
