"""Every deadline the domain brief names has a policy, and the jurisdiction forward's 24 hours
(Decree 310) are counted from the receipt, opened and closed by the forward itself."""

from __future__ import annotations

import random
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest
from slakit import BUREAU, POLICE, POLICIES, START, FixedClock, bus_payload, make_engine, send
from typer.testing import CliRunner

from bus.cli.sla import app as sla_app
from bus.errors import ConfigError
from bus.party import make_party
from bus.settings import Settings
from bus.sla.policy import load_policies

ECO = "kmg.police.eco"

# /work/shared/domain.md, "The four flows" and "Statutory deadlines": each step that owes an
# answer within a period, and the policy that counts it.
DOMAIN_FLOWS: dict[str, str] = {
    "clue handover: enforcement acknowledges the clue": "clue.receipt",
    "opinion request: the regulator answers within the set time": "opinion.response",
    "penalty feedback: enforcement reports regularly to the regulators": "penalty.feedback",
    "transfer to the police within 24 hours of approval": "criminal.transfer_after_approval",
    "the police sign the receipt of a transfer": "criminal.receipt",
    "a case outside their jurisdiction forwarded in 24 hours": "criminal.jurisdiction_forward",
    "the police decide whether to file within 3 days": "criminal.filing_decision",
    "the sender may ask for reconsideration within 3 days": "criminal.reconsideration_request",
    "the police decide on reconsideration within 3 days": "criminal.reconsideration_decision",
    "seized items handed over within 3 days of a filing notice": "criminal.evidence_handover",
    "the police explain a refusal on supervision (7 days)": "supervision.explanation",
    "the police file on the procuratorate's notice (15 days)": "supervision.filing",
    "apply to the court within 3 months of the deadline": "court.execution_application",
    "the court decides on acceptance within 5 days": "court.acceptance",
    "the court rules within 7 days (30 with a hearing)": "court.ruling",
}
# Periods of the brief no message on the bus can start: said here, so that a reader sees they
# were weighed, not forgotten.
NO_BUS_EVENT: dict[str, str] = {
    "the head of enforcement approves a transfer within 3 days of the report": (
        "the report is internal to the enforcement agency; no kind carries it"
    ),
    "a written reminder (催告) served at least 10 days before applying to the court": (
        "a precondition the enforcement agency meets before applying, not a step another party owes"
    ),
}


def test_every_deadline_of_the_domain_brief_has_a_shipped_policy() -> None:
    shipped = load_policies()
    missing = {flow: pid for flow, pid in DOMAIN_FLOWS.items() if pid not in shipped}
    assert not missing, missing
    # ... and nothing is shipped that the brief does not name (a new policy names its flow).
    assert set(shipped.ids) == set(DOMAIN_FLOWS.values())
    assert not set(NO_BUS_EVENT) & set(DOMAIN_FLOWS)


def test_casebus_sla_due_knows_the_jurisdiction_forward_period() -> None:
    result = CliRunner().invoke(
        sla_app,
        ["due", "criminal.jurisdiction_forward", "--start", "2026-10-01T10:00:00+08:00"],
    )
    # 24 hours, through the National Day holiday: hours are not extended.
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "2026-10-02T10:00:00+08:00"


def test_start_of_must_name_another_policy_and_excludes_start_field(tmp_path: Path) -> None:
    base = (
        "version: 1\npolicies:\n  - id: a.b\n    opens_on: {kind: criminal.transfer}\n"
        "    closes_on: [criminal.receipt]\n    period: {unit: hours, amount: 1}\n"
        "    holiday_extension: false\n    owner: sender\n    waiting: recipient\n"
        "    legal_basis: x\n"
        "  - id: c.d\n    opens_on: {kind: criminal.receipt, %s}\n"
        "    closes_on: [criminal.receipt]\n    period: {unit: hours, amount: 1}\n"
        "    holiday_extension: false\n    owner: sender\n    waiting: recipient\n"
        "    legal_basis: x\n"
    )
    path = tmp_path / "p.yaml"
    path.write_text(base % "start_of: a.b", encoding="utf-8")
    assert load_policies(path).get("c.d").opens_on.start_of == "a.b"  # type: ignore[union-attr]
    path.write_text(base % "start_of: no.such", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"start_of 'no\.such' is not another policy"):
        load_policies(path)
    path.write_text(base % "start_of: a.b, start_field: received_at", encoding="utf-8")
    with pytest.raises(ConfigError, match="at most one of start_field and start_of"):
        load_policies(path)


@pytest.mark.parametrize(("after_h", "state"), [(20, "met"), (30, "breached")])
async def test_a_forward_counts_24_hours_from_the_receipt_and_closes_its_own_deadline(
    settings: Settings,
    sla_key: Path,
    pool: asyncpg.Pool,
    tmp_path: Path,
    after_h: int,
    state: str,
) -> None:
    bureau = make_party(BUREAU, tmp_path / "keys")
    police = make_party(POLICE, tmp_path / "keys")
    clock = FixedClock(START)
    engine = make_engine(settings, sla_key, clock)
    rng = random.Random(after_h)
    transfer = send(bureau, "criminal.transfer", rng, clock)
    thread = {"correlation_id": transfer.correlation_id, "case_id": transfer.case_id}
    clock.at = START + timedelta(hours=1)
    receipt = send(police, "criminal.receipt", rng, clock, **thread)
    received_at = bus_payload(receipt)["received_at"]
    clock.at = received_at + timedelta(hours=after_h)
    forward = send(
        police, "criminal.jurisdiction_forward", rng, clock, recipients=[BUREAU, ECO], **thread
    )
    async with pool.acquire() as conn, conn.transaction():
        for envelope in (transfer, receipt):
            await engine.apply(conn, envelope)
        done = await engine.apply(conn, forward)
    [opened] = [d for d in done.opened if d.policy_id == "criminal.jurisdiction_forward"]
    assert opened.start_at == received_at
    assert opened.due_at == received_at + timedelta(hours=24)
    assert (opened.owner_agency, opened.waiting_agency) == (POLICE, BUREAU)
    closed = {d.policy_id: d.state for d in done.closed}
    assert closed["criminal.jurisdiction_forward"] == state
    kinds = {e.kind for e in done.emitted}
    assert ("sla.met" if state == "met" else "sla.breach") in kinds


async def test_a_forward_without_a_receipt_in_its_thread_opens_nothing(
    settings: Settings, sla_key: Path, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    police = make_party(POLICE, tmp_path / "keys")
    clock = FixedClock(START)
    engine = make_engine(settings, sla_key, clock)
    forward = send(
        police, "criminal.jurisdiction_forward", random.Random(3), clock, recipients=[BUREAU, ECO]
    )
    async with pool.acquire() as conn, conn.transaction():
        done = await engine.apply(conn, forward)
    assert done.opened == []
    assert "criminal.jurisdiction_forward" in POLICIES
