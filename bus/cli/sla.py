"""``casebus sla``: run the SLA engine, see its deadlines, and compute due instants by hand.

``casebus sla due court.acceptance --start 2026-09-29T10:00:00+08:00`` prints
``2026-10-12T23:59:59+08:00``. ``casebus sla run`` runs the engine until SIGTERM;
``casebus sla status`` prints the open and breached deadlines with the time left, and with
``--met`` or ``--all`` the history too (how early or late each was closed), limited to those due
``--since``/``--until``. Exit status 2 means the input was refused (unknown policy, a start
without a UTC offset, a bad ``--field`` or date, a broken policy, holiday or key file, a bad
setting).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from bus.cli._app import any_casebus_variable
from bus.errors import CasebusError, UnknownPolicyError
from bus.sla.calendar import DEFAULT_HOLIDAYS_OVERRIDE_PATH, SHANGHAI, WorkCalendar
from bus.sla.clock import clock_from_setting
from bus.sla.deadline import SLA_AGENCY, Deadline
from bus.sla.policy import DEFAULT_POLICIES_PATH, load_policies

# The engine, the store, the metrics server (aiokafka, asyncpg, prometheus_client), asyncio and
# the settings (pydantic-settings) are imported inside the commands that use them: `casebus sla
# due` must start fast (tests/test_cli_startup.py lists what it may not import).

__all__ = ["app"]

app = typer.Typer(
    name="sla",
    help="Deadlines (SLA): run the engine, show deadlines, list policies, compute due instants.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

PoliciesOption = Annotated[
    Path | None,
    typer.Option(
        "--policies",
        help="The SLA policy file.",
        show_default="CASEBUS_SLA_POLICIES_FILE, else deploy/sla-policies.yaml",
    ),
]
HolidaysOption = Annotated[
    Path | None,
    typer.Option(
        "--holidays-override",
        help="Holiday override file for years chinesecalendar does not know (optional).",
        show_default="CASEBUS_SLA_HOLIDAYS_OVERRIDE_FILE, else deploy/holidays-override.yaml",
    ),
]


def _sla_files(policies: Path | None, holidays: Path | None) -> tuple[Path, Path | None]:
    """The flags, else CASEBUS_SLA_POLICIES_FILE and CASEBUS_SLA_HOLIDAYS_OVERRIDE_FILE. With
    no ``CASEBUS_*`` variable set those are the settings' defaults, known here without loading
    pydantic-settings (tests/test_cli_sla.py holds them equal)."""
    if policies is not None and holidays is not None:
        return policies, holidays
    if not any_casebus_variable():
        return policies or DEFAULT_POLICIES_PATH, holidays or DEFAULT_HOLIDAYS_OVERRIDE_PATH
    from bus.settings import load_settings

    try:
        settings = load_settings()
    except CasebusError as e:
        _refuse(str(e))
    return policies or settings.sla_policies_file, holidays or settings.sla_holidays_override_file


@app.callback()
def _group() -> None:
    """Deadlines (SLA): run the engine, show deadlines, list policies, compute due instants."""


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
    policies_file: PoliciesOption = None,
    holidays_file: HolidaysOption = None,
) -> None:
    """Print when POLICY_ID's deadline is due, as ISO 8601 in Asia/Shanghai (+08:00)."""
    start_at = _parse_start(start)
    payload = _parse_fields(field or [])
    policies_path, holidays_path = _sla_files(policies_file, holidays_file)
    try:
        policies = load_policies(policies_path)
        policy = policies.get(policy_id)
        calendar = WorkCalendar(holidays_path)
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
def policies(policies_file: PoliciesOption = None) -> None:
    """List the policy ids, one a line, with their period."""
    try:
        loaded = load_policies(_sla_files(policies_file, None)[0])
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


@app.command("run")
def run(
    key_file: Annotated[
        Path | None,
        typer.Option(
            "--key-file",
            help="The engine's Ed25519 private key (agency casebus.sla); make one with "
            "`casebus keys generate --agency casebus.sla --out .casebus/keys`.",
            show_default=f"CASEBUS_SLA_KEY_FILE, else .casebus/keys/{SLA_AGENCY}.key.pem in "
            "the checkout",
        ),
    ] = None,
    policies_file: PoliciesOption = None,
    holidays_file: HolidaysOption = None,
    metrics_port: Annotated[
        int | None,
        typer.Option("--metrics-port", help="Serve /metrics here (default CASEBUS_METRICS_PORT)."),
    ] = None,
) -> None:
    """Run the SLA engine (inbox, scheduler, outbox relay) until SIGTERM or SIGINT.

    Time comes from CASEBUS_CLOCK (``real``, or ``accelerated:<start>:<rate>`` for drills).
    """
    import asyncio

    from prometheus_client import start_http_server

    from bus.settings import load_settings
    from bus.sla.app import run_sla_engine

    try:
        settings = load_settings()
        clock = clock_from_setting(settings.clock)
    except CasebusError as e:
        _refuse(str(e))
    key_file = key_file or settings.sla_key_file
    if not key_file.exists():
        _refuse(
            f"--key-file {key_file} does not exist; make the engine's key with "
            f"`casebus keys generate --agency casebus.sla --out {key_file.parent}`"
        )
    port = metrics_port or settings.metrics_port
    if port:
        start_http_server(port, addr="127.0.0.1")
    try:
        asyncio.run(
            run_sla_engine(
                settings.for_service("sla"),  # its own role: CASEBUS_SLA_DATABASE_URL
                key_file=key_file,
                policies_file=policies_file or settings.sla_policies_file,
                holidays_file=holidays_file or settings.sla_holidays_override_file,
                clock=clock,
            )
        )
    except CasebusError as e:
        if getattr(e, "retriable", False):  # e.g. the database is down: a supervisor retries
            typer.echo(str(e), err=True)
            raise typer.Exit(1) from e
        _refuse(str(e))


def _span(delta: timedelta) -> str:
    minutes = int(abs(delta.total_seconds()) // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    return f"{days}d {hours:02d}h" if days else f"{hours}h {minutes:02d}m"


def _left(deadline: Deadline, now: datetime) -> str:
    if deadline.closed_at is not None:
        delta = deadline.due_at - deadline.closed_at
        when = deadline.closed_at.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")
        early = delta.total_seconds() >= 0
        return f"closed {when}, {_span(delta)} {'early' if early else 'late'}"
    delta = deadline.due_at - now
    if delta.total_seconds() >= 0:
        return _span(delta)
    return f"overdue {_span(delta)}"


def _bound(option: str, text: str | None, *, end: bool) -> datetime | None:
    """A ``--since``/``--until`` bound: a date (its whole day in Asia/Shanghai, ``--until``
    included) or an instant with a UTC offset."""
    if text is None:
        return None
    value = text.strip()
    try:
        if len(value) == 10:
            day = date.fromisoformat(value) + timedelta(days=1 if end else 0)
            return datetime(day.year, day.month, day.day, tzinfo=SHANGHAI)  # midnight
        instant = datetime.fromisoformat(value)
    except (ValueError, OverflowError):
        _refuse(
            f"{option} {text!r} is neither a date (2026-11-01) nor an instant with a UTC offset "
            "(2026-11-01T08:00:00+08:00)"
        )
    if instant.tzinfo is None or instant.utcoffset() is None:
        _refuse(f"{option} {text!r} has no UTC offset; write it like 2026-11-01T08:00:00+08:00")
    return instant


async def _listing(
    database_url: str,
    *,
    states: Sequence[str] | None,
    unclosed: bool,
    agency: str | None,
    due_from: datetime | None,
    due_before: datetime | None,
    limit: int,
) -> list[Deadline]:
    from bus.db import connect
    from bus.sla.store import DeadlineStore

    conn = await connect(database_url)
    try:
        return await DeadlineStore().listing(
            conn,
            states=states,
            unclosed=unclosed,
            agency=agency,
            due_from=due_from,
            due_before=due_before,
            limit=limit,
        )
    finally:
        await conn.close()


@app.command("status")
def status(
    agency: Annotated[
        str | None,
        typer.Option("--agency", help="Only deadlines this agency owes or waits for."),
    ] = None,
    breached: Annotated[
        bool, typer.Option("--breached", help="Only breached deadlines still not closed.")
    ] = False,
    met: Annotated[
        bool, typer.Option("--met", help="Only deadlines met (closed in time): the history.")
    ] = False,
    every: Annotated[
        bool,
        typer.Option(
            "--all", help="Every deadline: open, met, breached, lapsed windows, closed or not."
        ),
    ] = False,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            help="Only deadlines due at or after this date (Asia/Shanghai) or instant, e.g. "
            "2026-11-01 or 2026-11-01T08:00:00+08:00.",
        ),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(
            "--until",
            help="Only deadlines due before the end of this date (Asia/Shanghai, included) or "
            "before this instant.",
        ),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many rows.")] = 200,
) -> None:
    """Print deadlines, soonest due first, with the time left or when they were closed.

    By default the open and breached ones not yet closed; --met the met ones, --all every one.
    """
    chosen = [
        name for name, on in (("--breached", breached), ("--met", met), ("--all", every)) if on
    ]
    if len(chosen) > 1:
        _refuse(f"{' and '.join(chosen)} exclude each other: give one of them")
    due_from = _bound("--since", since, end=False)
    due_before = _bound("--until", until, end=True)
    if due_from is not None and due_before is not None and due_from >= due_before:
        _refuse(f"--since {since} is not before --until {until}")
    states: list[str] | None = ["open", "breached"]
    if breached:
        states = ["breached"]
    elif met:
        states = ["met"]
    elif every:
        states = None
    import asyncio

    from bus.settings import load_settings

    try:
        settings = load_settings()
        now = clock_from_setting(settings.clock).now()
        rows = asyncio.run(
            _listing(
                settings.database_url,
                states=states,
                unclosed=not (met or every),
                agency=agency,
                due_from=due_from,
                due_before=due_before,
                limit=limit,
            )
        )
    except CasebusError as e:
        _refuse(str(e))
    last = "LEFT / CLOSED" if met or every else "LEFT"
    header = ("DEADLINE", "POLICY", "CASE", "OWNER", "WAITING", "STATE", "DUE (+08:00)", last)
    table = [header]
    for d in rows:
        due = d.due_at.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")
        table.append(
            (
                str(d.id)[:8],
                d.policy_id,
                d.case_id,
                d.owner_agency,
                d.waiting_agency,
                d.state,
                due,
                _left(d, now),
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        typer.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    breached_n = sum(1 for d in rows if d.state == "breached")
    met_n = sum(1 for d in rows if d.state == "met")
    tail = f", {met_n} met" if met or every else ""
    typer.echo(f"{len(rows)} deadline(s), {breached_n} breached{tail}", err=True)
