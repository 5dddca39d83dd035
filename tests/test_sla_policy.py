"""Deadline policies as data: the shipped file, the loader's errors, and ``casebus sla``."""

from __future__ import annotations

import importlib
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import structlog
import typer
import yaml
from typer.testing import CliRunner

from bus.errors import ConfigError, PolicyInputError, UnknownPolicyError
from bus.sla.calendar import SHANGHAI, WorkCalendar
from bus.sla.fields import policy_field_problems
from bus.sla.policy import DEFAULT_POLICIES_PATH, KINDS, PolicySet, field_value, load_policies

CAL = WorkCalendar(None)
SHIPPED_IDS = {
    "criminal.transfer_after_approval",
    "criminal.receipt",
    "criminal.jurisdiction_forward",
    "criminal.filing_decision",
    "criminal.reconsideration_request",
    "criminal.reconsideration_decision",
    "criminal.evidence_handover",
    "supervision.explanation",
    "supervision.filing",
    "clue.receipt",
    "opinion.response",
    "penalty.feedback",
    "court.acceptance",
    "court.ruling",
    "court.execution_application",
}


@pytest.fixture(scope="module")
def shipped() -> PolicySet:
    return load_policies()


def sh(y: int, m: int, d: int, hh: int = 0, mm: int = 0, ss: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, ss, tzinfo=SHANGHAI)


def eod(y: int, m: int, d: int) -> datetime:
    return sh(y, m, d, 23, 59, 59)


# --- the shipped file --------------------------------------------------------------------------


def test_shipped_policy_file_loads_with_every_expected_id(shipped: PolicySet) -> None:
    assert set(shipped.ids) == SHIPPED_IDS
    assert shipped.source == DEFAULT_POLICIES_PATH


def test_shipped_policies_name_only_known_kinds_and_cite_a_legal_basis(
    shipped: PolicySet,
) -> None:
    for policy in shipped:
        kinds = list(policy.closes_on)
        if policy.opens_on:
            kinds.append(policy.opens_on.kind)
        if policy.moves_on:
            kinds.append(policy.moves_on.kind)
        assert set(kinds) <= set(KINDS), policy.id
        assert any("\u4e00" <= ch <= "\u9fff" for ch in policy.legal_basis), policy.id
        if policy.policy_default:
            assert "默认" in policy.legal_basis, policy.id


def test_every_day_counted_calendar_or_month_period_uses_holiday_extension(
    shipped: PolicySet,
) -> None:
    for policy in shipped:
        periods = [c.period for c in policy.conditional_periods]
        if policy.period:
            periods.append(policy.period)
        if policy.schedule or any(p.unit in ("calendar_days", "months") for p in periods):
            assert policy.holiday_extension, policy.id


def test_criminal_chain_duties_go_to_the_procuratorate(shipped: PolicySet) -> None:
    for policy in shipped:
        if policy.id.startswith("criminal.") and policy.obligation == "duty":
            assert policy.notify_procuratorate, policy.id


def test_shipped_policies_name_only_fields_and_values_the_payload_models_have(
    shipped: PolicySet,
) -> None:
    assert policy_field_problems(shipped) == []


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {"opens_on": {"kind": "supervision.notice", "when": {"demand": "EXPLAIN"}}},
            "supervision.notice has no field 'demand'",
        ),
        (
            {"opens_on": {"kind": "supervision.notice", "when": {"notice_type": "EXPLAIN"}}},
            "'EXPLAIN' is not one of ['EXPLAIN_REFUSAL', 'FILE_CASE']",
        ),
        (
            {"opens_on": {"kind": "court.acceptance", "when": {"hearing_required": "yes"}}},
            "'yes' is not a boolean",
        ),
        (
            {"opens_on": {"kind": "criminal.transfer", "start_field": "approved_at"}},
            "criminal.transfer has no field 'approved_at'",
        ),
        (
            {"opens_on": {"kind": "criminal.transfer", "start_field": "approval.approver"}},
            "field 'approval.approver' is not a timestamp",
        ),
        ({"from_field": "deadline"}, "clue.handover has no field 'deadline'"),
        (
            {
                "conditional_periods": [
                    {"when": {"urgent": True}, "period": {"unit": "hours", "amount": 4}}
                ]
            },
            "conditional_periods[0].when: clue.handover has no field 'urgent'",
        ),
        (
            {"moves_on": {"kind": "opinion.delegated", "due_field": "expected_on"}},
            "opinion.delegated has no field 'expected_on'",
        ),
        (
            {
                "opens_on": None,
                "period": None,
                "match_by": "period",
                "owner": "enforcement",
                "waiting": "regulator",
                "closes_on": ["penalty.feedback"],
                "schedule": {"every": "month", "due_day": 10, "period_field": "period"},
            },
            "penalty.feedback has no field 'period'",
        ),
    ],
)
def test_a_field_or_enum_value_the_model_lacks_is_a_problem(
    tmp_path: Path, changes: dict[str, Any], expected: str
) -> None:
    policies = load_policies(_write(tmp_path, _policy(**changes)))
    problems = policy_field_problems(policies)
    assert len(problems) == 1, problems
    assert problems[0].startswith("test.policy: ")
    assert expected in problems[0]


def test_dotted_field_names_reach_into_nested_records() -> None:
    payload = {"approval": {"approved_at": "2026-09-29T15:30:00+08:00"}, "note": None}
    assert field_value(payload, "approval.approved_at") == "2026-09-29T15:30:00+08:00"
    assert field_value(payload, "approval.approver") is None
    assert field_value(payload, "note.text") is None
    assert field_value(payload, "missing") is None


def test_transfer_deadline_runs_24_hours_from_approved_at(shipped: PolicySet) -> None:
    policy = shipped.get("criminal.transfer_after_approval")
    sent_at = datetime(2026, 9, 30, 4, tzinfo=UTC)
    payload = {"approval": {"approved_at": "2026-09-29T15:30:00+08:00"}}
    start = policy.start_from(sent_at=sent_at, payload=payload)
    assert start == sh(2026, 9, 29, 15, 30)
    assert policy.due_from(start, payload=payload, calendar=CAL) == sh(2026, 9, 30, 15, 30)
    with pytest.raises(PolicyInputError, match="approved_at"):
        policy.start_from(sent_at=sent_at, payload={})
    with pytest.raises(PolicyInputError, match="approved_at"):
        policy.start_from(
            sent_at=sent_at, payload={"approval": {"approved_at": "2026-09-29T15:30:00"}}
        )


def test_filing_decision_opens_evidence_handover_or_reconsideration_window_by_decision(
    shipped: PolicySet,
) -> None:
    filed = shipped.opened_by("criminal.filing_decision", {"decision": "FILED"})
    refused = shipped.opened_by("criminal.filing_decision", {"decision": "NOT_FILED"})
    assert [p.id for p in filed] == ["criminal.evidence_handover"]
    assert [p.id for p in refused] == ["criminal.reconsideration_request"]
    assert refused[0].obligation == "window"
    assert shipped.opened_by("criminal.filing_decision", {}) == []


def test_receipt_opens_the_filing_review_that_a_decision_or_a_forward_closes(
    shipped: PolicySet,
) -> None:
    [review] = shipped.opened_by("criminal.receipt", {})
    assert review.id == "criminal.filing_decision"
    assert review.start_from(
        sent_at=datetime(2026, 9, 30, 4, tzinfo=UTC),
        payload={"received_at": datetime(2026, 9, 29, 2, tzinfo=UTC)},
    ) == sh(2026, 9, 29, 10)
    assert review in shipped.closed_by("criminal.filing_decision")
    assert review in shipped.closed_by("criminal.jurisdiction_forward")


def test_supervision_notice_opens_by_notice_type_and_is_due_when_it_says(
    shipped: PolicySet,
) -> None:
    explain = shipped.opened_by("supervision.notice", {"notice_type": "EXPLAIN_REFUSAL"})
    file = shipped.opened_by("supervision.notice", {"notice_type": "FILE_CASE"})
    assert [p.id for p in explain] == ["supervision.explanation"]
    assert [p.id for p in file] == ["supervision.filing"]
    asked = sh(2026, 10, 9, 18)
    start = sh(2026, 9, 29, 10)
    assert explain[0].due_from(start, payload={"due_at": asked}, calendar=CAL) == asked
    assert explain[0].owner == "police" and file[0].owner == "police"


def test_only_an_accepted_application_opens_the_ruling_deadline(shipped: PolicySet) -> None:
    accepted = shipped.opened_by("court.acceptance", {"decision": "ACCEPTED"})
    refused = shipped.opened_by("court.acceptance", {"decision": "NOT_ACCEPTED"})
    assert [p.id for p in accepted] == ["court.ruling"]
    assert refused == []


def test_transfer_opens_transfer_and_receipt_deadlines(shipped: PolicySet) -> None:
    ids = {p.id for p in shipped.opened_by("criminal.transfer", {"approved_at": "x"})}
    assert ids == {"criminal.transfer_after_approval", "criminal.receipt"}
    receipt = shipped.get("criminal.receipt")
    start = datetime(2026, 9, 29, 17, 30, tzinfo=UTC)  # already 9/30 in Shanghai
    assert receipt.due_from(start, payload={}, calendar=CAL) == eod(2026, 10, 8)


def test_opinion_response_uses_request_due_at_else_ten_working_days(shipped: PolicySet) -> None:
    policy = shipped.get("opinion.response")
    start = sh(2026, 9, 29, 10)
    asked = sh(2026, 10, 20, 18)
    assert policy.due_from(start, payload={}, envelope_due_at=asked, calendar=CAL) == asked
    # 9/30, 10/8, 10/9, 10/10 (make-up), 10/12 ... 10/16, 10/19
    assert policy.due_from(start, payload={}, calendar=CAL) == eod(2026, 10, 19)


def test_opinion_delegated_moves_the_opinion_deadline_to_its_expected_at(
    shipped: PolicySet,
) -> None:
    [policy] = shipped.moved_by("opinion.delegated")
    assert policy.id == "opinion.response"
    moved = policy.moved_due({"expected_at": "2026-11-30T12:00:00+08:00"})
    assert moved == sh(2026, 11, 30, 12)
    assert policy.moved_due({"expected_at": date(2026, 11, 30)}) == eod(2026, 11, 30)
    with pytest.raises(PolicyInputError, match="expected_at"):
        policy.moved_due({})


def test_court_ruling_takes_30_days_only_when_a_hearing_is_required(shipped: PolicySet) -> None:
    policy = shipped.get("court.ruling")
    start = sh(2026, 9, 29, 10)
    assert policy.due_from(start, payload={}, calendar=CAL) == eod(2026, 10, 14)
    hearing = {"hearing_required": True}
    assert policy.due_from(start, payload=hearing, calendar=CAL) == eod(2026, 10, 29)
    # a count is not a flag
    assert policy.period_for({"hearing_required": 1}).unit == "working_days"


def test_execution_application_window_runs_three_months_from_compliance_deadline(
    shipped: PolicySet,
) -> None:
    policy = shipped.get("court.execution_application")
    payload = {"compliance_deadline": date(2026, 2, 1)}
    opened = shipped.opened_by("court.execution_application", payload)
    assert [p.id for p in opened] == ["court.execution_application", "court.acceptance"]
    assert policy.closed_by("court.execution_application")
    start = policy.start_from(sent_at=datetime(2026, 3, 1, tzinfo=UTC), payload=payload)
    assert start == eod(2026, 2, 1)
    assert policy.due_from(start, payload=payload, calendar=CAL) == eod(2026, 5, 6)


@pytest.mark.parametrize(
    ("month", "due"),
    [
        ((2026, 1), eod(2026, 2, 10)),
        ((2026, 4), eod(2026, 5, 11)),  # 5/10 is a Sunday (5/9 is the make-up Saturday)
        ((2026, 9), eod(2026, 10, 10)),  # a make-up Saturday is a working day
        ((2025, 12), eod(2026, 1, 12)),  # 1/10 Saturday, 1/11 Sunday
    ],
)
def test_penalty_feedback_is_due_on_the_tenth_of_the_following_month(
    shipped: PolicySet, month: tuple[int, int], due: datetime
) -> None:
    policy = shipped.get("penalty.feedback")
    assert policy.due_for_month(*month, calendar=CAL) == due


def test_policy_warning_instants(shipped: PolicySet) -> None:
    policy = shipped.get("court.acceptance")
    start = sh(2026, 9, 29, 10)
    due = policy.due_from(start, payload={}, calendar=CAL)
    assert policy.warning_instants(start, due, calendar=CAL) == [eod(2026, 10, 10)]


def test_unknown_policy_id_lists_the_known_ones(shipped: PolicySet) -> None:
    with pytest.raises(UnknownPolicyError) as caught:
        shipped.get("court.appeal")
    assert "court.acceptance" in str(caught.value)
    assert isinstance(caught.value, ValueError)


# --- broken files ------------------------------------------------------------------------------


def _policy(**changes: Any) -> dict[str, Any]:
    policy: dict[str, Any] = {
        "id": "test.policy",
        "opens_on": {"kind": "clue.handover"},
        "closes_on": ["clue.receipt"],
        "period": {"unit": "working_days", "amount": 2},
        "holiday_extension": False,
        "owner": "recipient",
        "waiting": "sender",
        "legal_basis": "测试",
    }
    policy.update(changes)
    return {key: value for key, value in policy.items() if value is not None}


def _write(tmp_path: Path, *policies: dict[str, Any]) -> Path:
    path = tmp_path / "policies.yaml"
    path.write_text(
        yaml.safe_dump({"version": 1, "policies": list(policies)}, allow_unicode=True),
        encoding="utf-8",
    )
    return path


def test_minimal_policy_file_loads(tmp_path: Path) -> None:
    assert load_policies(_write(tmp_path, _policy())).ids == ["test.policy"]


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"opens_on": {"kind": "clue.handed"}}, ["field opens_on.kind", "unknown kind"]),
        ({"closes_on": ["clue.receipt", "bus.ack"]}, ["field closes_on.1", "'bus.ack'"]),
        ({"legal_basis": None}, ["field legal_basis", "Field required"]),
        ({"period": {"unit": "weeks", "amount": 2}}, ["field period.unit"]),
        ({"period": {"unit": "hours", "amount": 0}}, ["field period.amount"]),
        ({"holiday_extention": True}, ["field holiday_extention", "Extra inputs"]),
        ({"warnings": [{"fraction": 1.5}]}, ["field warnings.0", "between 0 and 1"]),
        ({"owner": "mayor"}, ["field owner"]),
        ({"period": None}, ["period is required"]),
        ({"schedule": {"every": "month", "due_day": 10}}, ["exactly one of opens_on"]),
        ({"match_by": "period"}, ["only for scheduled"]),
    ],
)
def test_broken_policy_names_the_policy_and_the_field(
    tmp_path: Path, changes: dict[str, Any], expected: list[str]
) -> None:
    path = _write(tmp_path, _policy(id="ok.first"), _policy(**changes))
    with pytest.raises(ConfigError) as caught:
        load_policies(path)
    message = str(caught.value)
    assert str(path) in message
    assert "policy 'test.policy' (policies[1])" in message
    for part in expected:
        assert part in message


def test_duplicate_policy_ids_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"duplicate policy ids: test\.policy"):
        load_policies(_write(tmp_path, _policy(), _policy()))


def test_unreadable_or_empty_policy_file_is_a_config_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("policies: [\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="cannot read"):
        load_policies(broken)
    with pytest.raises(ConfigError, match="cannot read"):
        load_policies(tmp_path / "absent.yaml")
    empty = tmp_path / "empty.yaml"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(ConfigError, match="invalid SLA policy file"):
        load_policies(empty)


# --- casebus sla -------------------------------------------------------------------------------


@pytest.fixture
def cli() -> Iterator[CliRunner]:
    # The root callback configures structlog to write to the runner's (soon closed) stderr;
    # put the previous configuration back for the tests that run after.
    saved = structlog.get_config()
    yield CliRunner()
    structlog.configure(**saved)


@pytest.fixture(scope="module")
def root_app() -> typer.Typer:
    # Imported here, not at the top: the root app mounts every group, and a broken group of
    # another team should fail these CLI tests, not the whole policy module.
    app: typer.Typer = importlib.import_module("bus.cli._app").app
    return app


def test_cli_due_prints_the_issue_example(root_app: typer.Typer, cli: CliRunner) -> None:
    result = cli.invoke(
        root_app, ["sla", "due", "court.acceptance", "--start", "2026-09-29T10:00:00+08:00"]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == "2026-10-12T23:59:59+08:00\n"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["criminal.receipt", "--start", "2026-09-29T17:30:00Z"], "2026-10-08T23:59:59+08:00"),
        (
            ["criminal.transfer_after_approval", "--start", "2026-09-30T20:00:00+08:00"],
            "2026-10-01T20:00:00+08:00",
        ),
        (
            [
                "court.ruling",
                "--start",
                "2026-09-29T10:00:00+08:00",
                "--field",
                "hearing_required=true",
            ],
            "2026-10-29T23:59:59+08:00",
        ),
        (
            [
                "opinion.response",
                "--start",
                "2026-09-29T10:00:00+08:00",
                "--field",
                "due_at=2026-10-20T18:00:00+08:00",
            ],
            "2026-10-20T18:00:00+08:00",
        ),
        (["penalty.feedback", "--start", "2026-04-15T09:00:00+08:00"], "2026-05-11T23:59:59+08:00"),
    ],
)
def test_cli_due_prints_shanghai_iso_with_seconds(
    root_app: typer.Typer, cli: CliRunner, args: list[str], expected: str
) -> None:
    result = cli.invoke(root_app, ["sla", "due", *args])
    assert result.exit_code == 0, result.output
    assert result.stdout == expected + "\n"


def test_cli_unknown_policy_exits_2_listing_known_ids(
    root_app: typer.Typer, cli: CliRunner
) -> None:
    result = cli.invoke(root_app, ["sla", "due", "court.appeal", "--start", "2026-09-29T10:00Z"])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "unknown policy 'court.appeal'" in result.stderr
    for policy_id in SHIPPED_IDS:
        assert policy_id in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--start", "2026-09-29T10:00:00"], "no UTC offset"),
        (["--start", "29/09/2026"], "not ISO 8601"),
        (["--start", "2026-09-29T10:00:00+08:00", "--field", "hearing_required"], "key=value"),
    ],
)
def test_cli_refuses_bad_input_with_exit_2(
    root_app: typer.Typer, cli: CliRunner, args: list[str], message: str
) -> None:
    result = cli.invoke(root_app, ["sla", "due", "court.ruling", *args])
    assert result.exit_code == 2
    assert message in result.stderr
    assert result.stdout == ""


def test_cli_broken_policy_file_exits_2_naming_it(
    root_app: typer.Typer, cli: CliRunner, tmp_path: Path
) -> None:
    path = _write(tmp_path, _policy(owner="mayor"))
    result = cli.invoke(
        root_app,
        ["sla", "due", "test.policy", "--start", "2026-09-29T10:00Z", "--policies", str(path)],
    )
    assert result.exit_code == 2
    assert "policy 'test.policy'" in result.stderr and "owner" in result.stderr


def test_cli_policies_lists_every_id(root_app: typer.Typer, cli: CliRunner) -> None:
    result = cli.invoke(root_app, ["sla", "policies"])
    assert result.exit_code == 0, result.output
    assert {line.split("\t")[0] for line in result.stdout.splitlines()} == SHIPPED_IDS


def test_installed_casebus_command_runs_sla_due() -> None:
    casebus = Path(sys.executable).parent / "casebus"
    args = ["sla", "due", "court.acceptance", "--start", "2026-09-29T10:00:00+08:00"]
    done = subprocess.run([casebus, *args], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (0, "2026-10-12T23:59:59+08:00\n"), done.stderr
    naive = subprocess.run(
        [casebus, *args[:-1], "2026-09-29T10:00:00"], capture_output=True, text=True, timeout=60
    )
    assert naive.returncode == 2
    assert "no UTC offset" in naive.stderr
