"""The court adapter end to end: an application for compulsory execution, its acceptance and the
ruling, and the Administrative Compulsion Law's timing rules refused at the enforcement adapter."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from adapterkit import BUREAU, case_no, wait_kind
from buskit import Bus

from adapters import court, enforcement
from adapters._framework.checks import DeadlineRules
from adapters._framework.fake_department import running_adapter
from adapters.court.testing import FakeCourt, acceptance, ruling
from adapters.enforcement.criminal import check_court_application
from adapters.enforcement.testing import FakeBureau
from bus.samples import sample_payload
from bus.sim import documents as docs
from bus.sla.calendar import DEFAULT_HOLIDAYS_OVERRIDE_PATH, WorkCalendar
from bus.sla.policy import load_policies

COURT = "ygh.court"
SHIPPED = DeadlineRules(load_policies(), WorkCalendar(DEFAULT_HOLIDAYS_OVERRIDE_PATH))
"""The deadline rules of the shipped policy and holiday files."""


def application(
    *, ajbh: str, sqh: str, reminder_served: date, compliance_deadline: date
) -> dict[str, Any]:
    """The simulation's 强制执行申请, with the reminder served and the deadline given."""
    doc = docs.court_application(
        ajbh=ajbh, sqh=sqh, jsdw=[COURT], today=date.today(), now=datetime.now(UTC)
    )
    return doc | {
        "jdrq": (compliance_deadline - timedelta(days=15)).isoformat(),
        "lxqx": compliance_deadline.isoformat(),
        "cgsdrq": reminder_served.isoformat(),
    }


def test_the_ten_days_after_the_reminder_are_working_days() -> None:
    # Served on Friday 25 September 2026: the National Day holiday (1-8 October) and the
    # weekends do not count, so 10 working days end only in mid-October.
    served = {"reminder_served_on": "2026-09-25", "compliance_deadline": "2026-09-20"}
    early = datetime(2026, 10, 9, 10, tzinfo=UTC)  # 10 calendar days would have allowed it
    [problem] = check_court_application({}, served, SHIPPED, early)
    assert problem.rule == "reminder_period_not_elapsed" and problem.path == "cgsdrq"
    assert "第五十四条" in (problem.message_zh or "")
    assert check_court_application({}, served, SHIPPED, datetime(2026, 10, 21, 2, tzinfo=UTC)) == []


def test_three_months_after_the_compliance_deadline_the_window_is_closed() -> None:
    payload = {"reminder_served_on": "2026-01-05", "compliance_deadline": "2026-01-10"}
    [problem] = check_court_application({}, payload, SHIPPED, datetime(2026, 4, 20, 2, tzinfo=UTC))
    assert problem.rule == "application_window_passed" and "第五十三条" in (
        problem.message_zh or ""
    )
    assert check_court_application({}, payload, SHIPPED, datetime(2026, 4, 9, 2, tzinfo=UTC)) == []


@pytest.mark.integration
@pytest.mark.slow
async def test_application_accepted_with_hearing_then_ruled(bus: Bus, tmp_path: Path) -> None:
    ajbh, sqh = case_no(), "阳城执申〔2026〕3号"
    today = date.today()
    async with (
        FakeBureau(secret=b"bureau") as bureau,
        FakeCourt(secret=b"court") as court_fake,
        bus.router(),
        running_adapter(
            enforcement.build_service,
            bus.settings,
            key_dir=tmp_path / "keys",
            webhooks={BUREAU: bureau},
        ) as enf,
        running_adapter(
            court.build_service,
            bus.settings,
            key_dir=tmp_path / "keys",
            webhooks={COURT: court_fake},
        ) as crt,
    ):
        # Inside the ten working days after the reminder: refused, naming the rule.
        early = application(
            ajbh=ajbh,
            sqh=sqh,
            reminder_served=today - timedelta(days=3),
            compliance_deadline=today - timedelta(days=20),
        )
        r = await enf.department(BUREAU).submit(early)
        assert r.status_code == 422, r.text
        [problem] = r.json()["problems"]
        assert problem["rule"] == "reminder_period_not_elapsed" and problem["field"] == "cgsdrq"
        assert "行政强制法" in problem["message_zh"]

        late = application(
            ajbh=ajbh,
            sqh=sqh,
            reminder_served=today - timedelta(days=200),
            compliance_deadline=today - timedelta(days=150),
        )
        r = await enf.department(BUREAU).submit(late)
        assert r.status_code == 422
        assert [p["rule"] for p in r.json()["problems"]] == ["application_window_passed"]

        good = application(
            ajbh=ajbh,
            sqh=sqh,
            reminder_served=today - timedelta(days=30),
            compliance_deadline=today - timedelta(days=20),
        )
        r = await enf.department(BUREAU).submit(good)
        assert r.status_code == 202, r.text
        answering = {"glbh": r.json()["message_id"]}  # the court's answers name it
        [got] = await wait_kind(court_fake, "强制执行申请")
        assert got["sqh"] == sqh and got["bzxr"]["zjlx"] == "统一社会信用代码"

        accepted = (
            acceptance(
                ajbh=ajbh,
                sqh=sqh,
                jsdw=[BUREAU],
                accepted=True,
                fyah="(2026)云0191行审12号",
                hearing=True,
            )
            | answering
        )
        r = await crt.department(COURT).submit(accepted)
        assert r.status_code == 202, r.text
        [told] = await wait_kind(bureau, "受理决定")
        assert told["jd"] == "受理" and told["xtz"] is True

        refusal = acceptance(ajbh=ajbh, sqh=sqh, jsdw=[BUREAU], accepted=False) | answering
        refusal.pop("ly")
        r = await crt.department(COURT).submit(refusal)
        assert r.status_code == 422
        assert {p["field"] for p in r.json()["problems"]} == {"ly"}

        r = await crt.department(COURT).submit(
            ruling(ajbh=ajbh, sqh=sqh, fyah="(2026)云0191行审12号", jsdw=[BUREAU]) | answering
        )
        assert r.status_code == 202, r.text
        [ruled] = await wait_kind(bureau, "执行裁定")
        assert ruled["cd"] == "准予执行"


@pytest.mark.parametrize("kind", court.SENDS + court.RECEIVES)
def test_every_kind_round_trips_through_the_court_vocabulary(kind: str) -> None:
    payload = sample_payload(kind, random.Random(kind)).model_dump(mode="json")
    doc = court.VOCABULARY.document({"kind": kind}, payload)
    assert doc["ywlx"] == court.VOCABULARY.code(kind) != kind
    _, back, problems = court.VOCABULARY.split_submission(kind, doc)
    assert problems == [] and back == payload
