"""``casebus topics``: Kafka topic provisioning."""

from __future__ import annotations

import asyncio

import typer

from bus.agencies import load_registry
from bus.errors import ConfigError, TransportError
from bus.settings import load_settings
from bus.topics import ensure_topics

app = typer.Typer(help="Kafka topics.", no_args_is_help=True)


@app.command("ensure")
def ensure_cmd() -> None:
    """Create submit (one per sending agency with CASEBUS_SUBMIT_TOPICS=per_agency),
    dead-letter and one inbox topic per registered agency (idempotent)."""
    settings = load_settings()
    try:
        registry = load_registry(settings.agencies_file)
        plan = asyncio.run(ensure_topics(settings, registry))
    except (ConfigError, TransportError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from e
    for t in plan.created:
        typer.echo(f"created {t}")
    typer.echo(f"{len(plan.created)} created, {len(plan.existing)} already present")
