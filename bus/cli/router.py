"""``casebus router``: run one router replica."""

from __future__ import annotations

import asyncio

import typer
from prometheus_client import start_http_server

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
    asyncio.run(run_router(settings, freeze_gc=True))
