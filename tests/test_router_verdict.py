"""The router's verdicts (bus.router.verdict): the closed set of codes it refuses with is the
set on the wire, and turning one verdict into another keeps what it said of its record."""

from __future__ import annotations

import re

from plankit import POLICE, accepted, refused

from bus.errors import Problem
from bus.models import NACK_CODES
from bus.router.verdict import (
    ROUTER_NACK_CODES,
    UNWITNESSED,
    Accepted,
    Refused,
    readmit,
    refuse,
    undeliverable,
)
from bus.settings import REPO_ROOT


def test_the_router_refuses_with_exactly_the_wire_codes_but_the_departments_own() -> None:
    assert len(set(ROUTER_NACK_CODES)) == len(ROUTER_NACK_CODES)
    assert set(ROUTER_NACK_CODES) == set(NACK_CODES) - {"rejected_by_department"}


def test_every_router_code_is_documented_in_the_wire_format() -> None:
    table = (REPO_ROOT / "docs" / "wire-format.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `([a-z_]+)`(?: / `([a-z_]+)`)? \|", table, re.M))
    codes = {c for pair in documented for c in pair if c}
    assert set(ROUTER_NACK_CODES) <= codes


def test_a_refusal_keeps_what_the_verdict_said_of_its_record() -> None:
    a = accepted(0, 0, 1, 5)
    problem = Problem("message_id", "conflicting_duplicate", "seen with other bytes")
    r = refuse(a, "conflicting_duplicate", [problem])
    assert (r.outcome, r.code, r.problems) == ("reject", "conflicting_duplicate", (problem,))
    assert (r.record, r.value_sha256, r.envelope, r.deliver_to, r.reply_to) == (
        a.record,
        a.value_sha256,
        a.envelope,
        a.deliver_to,
        POLICE,
    )
    assert (a.outcome, a.code, a.problems, a.digest_only) == ("accept", None, (), False)


def test_a_readmitted_refusal_is_accepted_for_the_recipients_it_was_classified_for() -> None:
    r = refused(1, 0, 0, 2, UNWITNESSED)
    assert r.envelope is not None
    a = readmit(r, r.envelope)
    assert isinstance(a, Accepted)
    assert (a.record, a.deliver_to, a.reply_to) == (r.record, r.deliver_to, r.reply_to)


def test_an_undeliverable_submission_is_nacked_once_then_dead_lettered_without_a_nack() -> None:
    a = accepted(0, 0, 0, 0)
    once = undeliverable(a, ["t.inbox.x: MessageSizeTooLargeError"])
    assert isinstance(once, Refused)
    assert (once.outcome, once.code, once.reply_to, once.digest_only) == (
        "reject",
        "undeliverable",
        POLICE,
        True,
    )
    assert once.deliver_to == () and once.problems[0].value == "t.inbox.x: MessageSizeTooLargeError"
    twice = undeliverable(a, ["t.inbox.x: A", "t.inbox.police: B"])
    assert (twice.outcome, twice.reply_to) == ("dead", None)
    assert twice.problems[0].value == "t.inbox.police: B"
