"""``casebus db``: the database schema."""

from __future__ import annotations

import asyncio

import typer

from bus.db import migrate
from bus.settings import load_settings

app = typer.Typer(help="Database schema.", no_args_is_help=True)


@app.command("migrate")
def migrate_cmd() -> None:
    """Apply the SQL migrations not applied yet (idempotent)."""
    settings = load_settings()
    applied = asyncio.run(migrate(settings.database_url))
    if applied:
        for m in applied:
            typer.echo(f"applied {m.version:04d}_{m.name}")
    else:
        typer.echo("database is up to date")
