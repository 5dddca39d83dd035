"""``casebus attachments``: case files kept by the bus, and their retention.

The bus (asyncpg, the stores) is imported inside the commands, so ``casebus --help`` does not
pay for it (tests/test_cli_startup.py).
"""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import typer

if TYPE_CHECKING:
    from bus.attachments import SweepReport, Swept

app = typer.Typer(help="Case files (attachments): retention.", no_args_is_help=True)


def _refuse(message: str) -> NoReturn:
    typer.echo(message, err=True)
    raise typer.Exit(2)


def _line(swept: Swept, *, dry_run: bool) -> str:
    v = swept.verdict
    size = "no bytes in the store" if swept.stored is None else f"{swept.stored.size_bytes} bytes"
    verb = "would delete" if dry_run else "deleted"
    return (
        f"{verb} {swept.sha256} ({size}): {v.describe()} expired "
        f"{v.expires_at.isoformat()}; {v.references} referring message(s)"
    )


def _print(report: SweepReport) -> None:
    for swept in report.deleted:
        typer.echo(_line(swept, dry_run=report.dry_run))
    for sha256 in report.busy:
        typer.echo(f"left {sha256}: a submission was referring to it; the next sweep decides")
    total = sum(s.stored.size_bytes for s in report.deleted if s.stored is not None)
    verb = "would delete" if report.dry_run else "deleted"
    typer.echo(
        f"{verb} {len(report.deleted)} file(s), {total} bytes, as of {report.as_of.isoformat()}"
        + (" (dry run: nothing changed)" if report.dry_run else "")
    )


@app.command("sweep")
def sweep_cmd(
    dry_run: bool = typer.Option(
        False, "--dry-run", help="List what the sweep would delete, and why; change nothing."
    ),
    operator: str | None = typer.Option(
        None,
        "--by",
        help="Who runs the sweep, recorded with each deletion (default: the login name).",
    ),
    policy_file: Path | None = typer.Option(
        None,
        "--policy",
        help="The retention policy file (default CASEBUS_ATTACHMENT_RETENTION_FILE, else "
        "deploy/attachment-retention.yaml).",
    ),
) -> None:
    """Delete the case files whose retention has run out, from the store and the records.

    A file is kept until the retention of every message referring to it has run out (each
    message by its kind's period) and the grace period of its last upload too. Each deletion
    is recorded in attachment_deletions; a download of a deleted file answers 410. Runs as the
    role owning the tables (CASEBUS_DATABASE_URL); time comes from CASEBUS_CLOCK.
    """
    import asyncio

    from bus.attachments import load_retention, store_from_settings, sweep_attachments
    from bus.db import create_pool
    from bus.errors import CasebusError
    from bus.settings import load_settings
    from bus.sla.clock import clock_from_setting

    try:
        settings = load_settings()
        policy = load_retention(policy_file or settings.attachment_retention_file)
        now = clock_from_setting(settings.clock).now()
    except CasebusError as e:
        _refuse(str(e))
    who = operator or getpass.getuser()

    async def run() -> SweepReport:
        # Two connections: the sweep's, holding a file's row lock, and the PostgreSQL store's.
        pool = await create_pool(settings.database_url, min_size=1, max_size=2)
        store = store_from_settings(settings, lambda: pool)
        try:
            return await sweep_attachments(
                pool, store, policy, now=now, operator=who, dry_run=dry_run
            )
        finally:
            await store.aclose()
            await pool.close()

    try:
        report = asyncio.run(run())
    except CasebusError as e:
        typer.echo(f"sweep failed: {e}", err=True)
        raise typer.Exit(1) from e
    _print(report)
