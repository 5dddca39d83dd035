"""``casebus router``: run one router replica."""

from __future__ import annotations

import asyncio

import typer
from prometheus_client import start_http_server

from bus.errors import ConfigError
from bus.router.app import run_router
from bus.settings import load_settings

app = typer.Typer(help="The bus router.", invoke_without_command=True)


@app.callback()
def router(
    router_id: str | None = typer.Option(
        None, "--id", help="Replica id (default CASEBUS_ROUTER_ID or router-0)."
    ),
    metrics_port: int | None = typer.Option(
        None, "--metrics-port", help="Serve /metrics here (default CASEBUS_METRICS_PORT)."
    ),
) -> None:
    """Consume the submit topic(s); validate, authorize, audit and deliver until SIGTERM."""
    overrides: dict[str, object] = {}
    if router_id is not None:
        overrides["router_id"] = router_id
    settings = load_settings(**overrides)
    port = metrics_port or settings.metrics_port
    if port:
        start_http_server(port, addr="127.0.0.1")
    try:
        # As its own role (CASEBUS_ROUTER_DATABASE_URL), which may not alter the audit log.
        asyncio.run(run_router(settings.for_service("router"), freeze_gc=True))
    except ConfigError as e:  # e.g. the bus key is not registered: names the command that does
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from e
