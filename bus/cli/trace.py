"""``casebus trace CASE_ID``: a case's whole timeline from the audit log, with its deadlines."""

from __future__ import annotations

import asyncio

import typer

from bus.db import create_pool
from bus.settings import load_settings
from bus.trace import CaseTrace, case_trace, render_trace

__all__ = ["app"]

app = typer.Typer(help="A case's timeline from the audit log.", invoke_without_command=True)


@app.callback()
def trace(
    case_id: str = typer.Argument(..., help="The case number (the envelope's case_id)."),
) -> None:
    """Every audited message of the case (sender → recipients, kind, audit index, time) and
    every deadline the SLA engine opened on it with its outcome. Exit 1 for an unknown case."""
    settings = load_settings()

    async def go() -> CaseTrace:
        pool = await create_pool(settings.database_url, max_size=2)
        try:
            return await case_trace(pool, case_id)
        finally:
            await pool.close()

    found = asyncio.run(go())
    if not found.messages and not found.deadlines:
        typer.echo(f"case {case_id}: nothing in the audit log", err=True)
        raise typer.Exit(1)
    typer.echo(render_trace(found))
