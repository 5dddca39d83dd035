"""``casebus sla``: look at deadline policies and compute due instants by hand.

``casebus sla due court.acceptance --start 2026-09-29T10:00:00+08:00`` prints
``2026-10-12T23:59:59+08:00``. Exit status 2 means the input was refused (unknown policy, a
start without a UTC offset, a bad ``--field``, a broken policy or holiday file).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from bus.errors import CasebusError
from bus.sla.calendar import DEFAULT_HOLIDAYS_OVERRIDE_PATH, SHANGHAI, WorkCalendar
from bus.sla.policy import DEFAULT_POLICIES_PATH, UnknownPolicyError, load_policies

__all__ = ["app"]

app = typer.Typer(
    name="sla",
    help="Deadline (SLA) policies: list them, compute due instants.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

PoliciesOption = Annotated[
    Path,
    typer.Option(
        "--policies",
        envvar="CASEBUS_SLA_POLICIES_FILE",
        help="The SLA policy file.",
        show_default=True,
    ),
]
HolidaysOption = Annotated[
    Path,
    typer.Option(
        "--holidays-override",
        envvar="CASEBUS_SLA_HOLIDAYS_OVERRIDE_FILE",
        help="Holiday override file for years chinesecalendar does not know (optional).",
        show_default=True,
    ),
]


@app.callback()
def _group() -> None:
    """Deadline (SLA) policies: list them, compute due instants."""


def _refuse(message: str) -> NoReturn:
    typer.echo(message, err=True)
    raise typer.Exit(2)


def _parse_start(text: str) -> datetime:
    try:
        start = datetime.fromisoformat(text.strip())
    except ValueError:
        _refuse(f"--start {text!r} is not ISO 8601; write it like 2026-09-29T10:00:00+08:00")
    if start.tzinfo is None or start.utcoffset() is None:
        _refuse(
            f"--start {text!r} has no UTC offset; a deadline needs an instant, "
            "write it like 2026-09-29T10:00:00+08:00"
        )
    return start


def _parse_value(text: str) -> Any:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if text.lstrip("-").isdigit():
        return int(text)
    return text


def _parse_fields(pairs: list[str]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            _refuse(f"--field {pair!r} is not key=value")
        fields[key.strip()] = _parse_value(value.strip())
    return fields


@app.command("due")
def due(
    policy_id: Annotated[str, typer.Argument(metavar="POLICY_ID", help="e.g. court.acceptance")],
    start: Annotated[
        str,
        typer.Option(
            "--start",
            help="When the deadline starts, ISO 8601 with a UTC offset "
            "(e.g. 2026-09-29T10:00:00+08:00). For a monthly policy, any instant in the "
            "reporting month.",
        ),
    ],
    field: Annotated[
        list[str] | None,
        typer.Option(
            "--field",
            help="An opening-payload field as key=value (repeatable), e.g. "
            "hearing_required=true or due_at=2026-10-20T18:00:00+08:00.",
        ),
    ] = None,
    policies_file: PoliciesOption = DEFAULT_POLICIES_PATH,
    holidays_file: HolidaysOption = DEFAULT_HOLIDAYS_OVERRIDE_PATH,
) -> None:
    """Print when POLICY_ID's deadline is due, as ISO 8601 in Asia/Shanghai (+08:00)."""
    start_at = _parse_start(start)
    payload = _parse_fields(field or [])
    try:
        policies = load_policies(policies_file)
        policy = policies.get(policy_id)
        calendar = WorkCalendar(holidays_file)
        if policy.schedule is not None:
            local = start_at.astimezone(SHANGHAI)
            due_instant = policy.due_for_month(local.year, local.month, calendar=calendar)
        else:
            due_instant = policy.due_from(start_at, payload=payload, calendar=calendar)
    except UnknownPolicyError as e:
        _refuse(f"unknown policy {e.policy_id!r}; known policies:\n  " + "\n  ".join(e.known))
    except CasebusError as e:
        _refuse(str(e))
    typer.echo(due_instant.astimezone(SHANGHAI).isoformat(timespec="seconds"))


@app.command("policies")
def policies(policies_file: PoliciesOption = DEFAULT_POLICIES_PATH) -> None:
    """List the policy ids, one a line, with their period."""
    try:
        loaded = load_policies(policies_file)
    except CasebusError as e:
        _refuse(str(e))
    for policy in loaded:
        if policy.schedule is not None:
            what = f"monthly, due day {policy.schedule.due_day} of the following month"
        else:
            assert policy.period is not None  # the loader guarantees it for opened policies
            what = f"{policy.period.amount} {policy.period.unit}"
            if policy.from_field:
                what = f"{policy.from_field}, else {what}"
        typer.echo(f"{policy.id}\t{what}")
