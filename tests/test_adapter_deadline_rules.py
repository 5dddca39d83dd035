"""The adapters count deadlines from the files their settings name, as the SLA engine does.

They used to cache the shipped ``deploy/sla-policies.yaml``: an operator's
``CASEBUS_SLA_POLICIES_FILE`` changed the engine's deadlines but not the enforcement adapter's
check of a court application's window, nor the deadlines the procuratorate's timeline expects.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from buskit import Bus

from adapters import enforcement
from adapters._framework.checks import DeadlineRules
from adapters._framework.fake_department import running_adapter
from adapters.enforcement.criminal import check_court_application
from adapters.procuratorate.views import expected_deadlines
from bus.settings import REPO_ROOT, Settings
from bus.sim.documents import court_application

BUREAU = "ygh.enforcement.bureau"
COURT = "ygh.court"
SHIPPED_WINDOW = "period: {unit: months, amount: 3}"
WINDOW = "court.execution_application"


def one_month_window(tmp_path: Path) -> Path:
    """The shipped policies, but a court application is due a month after the compliance
    deadline instead of three."""
    text = (REPO_ROOT / "deploy" / "sla-policies.yaml").read_text(encoding="utf-8")
    block = text.index("  - id: court.execution_application")
    end = text.index("  - id: ", block + 1)
    assert text.count(SHIPPED_WINDOW, block, end) == 1
    edited = (
        text[:block]
        + text[block:end].replace(SHIPPED_WINDOW, "period: {unit: months, amount: 1}")
        + text[end:]
    )
    path = tmp_path / "sla-policies.yaml"
    path.write_text(edited, encoding="utf-8")
    return path


def operator(tmp_path: Path, settings: Settings | None = None) -> Settings:
    return (settings or Settings()).model_copy(
        update={"sla_policies_file": one_month_window(tmp_path)}
    )


def test_deadline_rules_come_from_the_settings_files(tmp_path: Path) -> None:
    rules = DeadlineRules.from_settings(operator(tmp_path))
    period = rules.policies.get("court.execution_application").period_for({})
    assert (period.unit, period.amount) == ("months", 1)
    shipped = DeadlineRules.from_settings(Settings()).policies
    assert shipped.get("court.execution_application").period_for({}).amount == 3


def test_an_operator_window_changes_the_court_application_check(tmp_path: Path) -> None:
    # Two months after the compliance deadline: inside the shipped three months, outside one.
    payload = {"reminder_served_on": "2026-01-05", "compliance_deadline": "2026-01-10"}
    made = datetime(2026, 3, 10, 2, tzinfo=UTC)
    assert check_court_application({}, payload, DeadlineRules.from_settings(Settings()), made) == []
    rules = DeadlineRules.from_settings(operator(tmp_path))
    [problem] = check_court_application({}, payload, rules, made)
    assert problem.rule == "application_window_passed" and "1 months" in problem.message


def test_an_operator_window_changes_the_procuratorate_timeline(tmp_path: Path) -> None:
    sent = datetime(2026, 3, 10, 2, tzinfo=UTC)
    step = {
        "message_id": uuid.uuid4(),
        "kind": "court.execution_application",
        "sent_at": sent,
        "payload": {"compliance_deadline": "2026-01-10"},
    }

    def window(settings: Settings) -> dict[str, Any]:
        opened = expected_deadlines([step], sent, DeadlineRules.from_settings(settings))
        [found] = [d for d in opened[str(step["message_id"])] if d["policy_id"] == WINDOW]
        return found

    shipped, mine = window(Settings()), window(operator(tmp_path))
    assert shipped["state"] == "met" and mine["state"] == "breached"
    assert mine["due_at"] < shipped["due_at"]


async def test_the_enforcement_adapter_refuses_by_the_operator_policy_file(
    bus: Bus, tmp_path: Path
) -> None:
    # Filed 62 days after the compliance deadline: inside the shipped three months, not one.
    doc = court_application(
        ajbh=f"阳城执〔2026〕{uuid.uuid4().hex[:8]}号",
        sqh="阳城执申〔2026〕9号",
        jsdw=[COURT],
        today=date.today() - timedelta(days=42),
        now=datetime.now(UTC),
    )
    async with running_adapter(
        enforcement.build_service,
        operator(tmp_path, bus.settings),
        key_dir=tmp_path / "keys",
        webhooks={BUREAU: None},
    ) as enf:
        r = await enf.department(BUREAU).submit(doc)
    assert r.status_code == 422, r.text
    assert [p["rule"] for p in r.json()["problems"]] == ["application_window_passed"]
    async with running_adapter(
        enforcement.build_service, bus.settings, key_dir=tmp_path / "keys", webhooks={BUREAU: None}
    ) as enf:
        r = await enf.department(BUREAU).submit(doc)
    assert r.status_code == 202, r.text
