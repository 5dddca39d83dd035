"""``casebus router``: run one router replica."""

from __future__ import annotations

import asyncio

import typer
import uvloop
from prometheus_client import start_http_server

from bus.errors import ConfigError
from bus.router.app import run_router
from bus.settings import load_settings

app = typer.Typer(help="The bus router.", invoke_without_command=True)


@app.callback()
def router(
    ctx: typer.Context,
    router_id: str | None = typer.Option(
        None, "--id", help="Replica id (default CASEBUS_ROUTER_ID or router-0)."
    ),
    metrics_port: int | None = typer.Option(
        None, "--metrics-port", help="Serve /metrics here (default CASEBUS_METRICS_PORT)."
    ),
) -> None:
    """Consume the submit topic(s); validate, authorize, audit and deliver until SIGTERM."""
    if ctx.invoked_subcommand is not None:
        return
    overrides: dict[str, object] = {}
    if router_id is not None:
        overrides["router_id"] = router_id
    settings = load_settings(**overrides)
    port = metrics_port or settings.metrics_port
    if port:
        start_http_server(port, addr="127.0.0.1")
    try:
        # As its own role (CASEBUS_ROUTER_DATABASE_URL), which may not alter the audit log. On
        # uvloop, as the adapters run: a router's event loop and socket writes cost about a
        # tenth of its CPU on asyncio's own loop (deploy/CAPACITY.md §8.9).
        uvloop.run(run_router(settings.for_service("router"), freeze_gc=True))
    except ConfigError as e:  # e.g. the bus key is not registered: names the command that does
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from e


@app.command("settle-offsets")
def settle_offsets_cmd(
    outcome: str = typer.Option(
        ...,
        "--outcome",
        help="commit: the hanging transaction's batch was delivered (a router.delivered line, "
        "one per batch, names those offsets in its offsets field); abort: it was not.",
    ),
    router_id: str | None = typer.Option(
        None, "--id", help="The replica whose producer id holds it (default CASEBUS_ROUTER_ID)."
    ),
) -> None:
    """End a hanging transaction on the router group's offsets with the outcome you name.

    For what a router cannot settle itself (router.hanging_offsets_fate_unknown, alert
    CasebusRouterOffsetsStuck): Kafka's kafka-transactions.sh can only abort, which routes a
    delivered batch again. Takes over the replica's transactional id (a replica running under
    it starts a new producer on its next batch) and writes the group's marker with OUTCOME."""
    from bus.router.hanging import settle_offsets

    if outcome not in ("commit", "abort"):
        typer.echo(f"error: --outcome {outcome!r}: commit or abort", err=True)
        raise typer.Exit(2)
    overrides: dict[str, object] = {}
    if router_id is not None:
        overrides["router_id"] = router_id
    settings = load_settings(**overrides)
    transactional_id = f"{settings.topic_prefix}.router.{settings.router_id}"
    group_id = f"{settings.topic_prefix}.router"
    producer_id, epoch = asyncio.run(
        settle_offsets(
            transactional_id=transactional_id,
            group_id=group_id,
            outcome=outcome,  # type: ignore[arg-type]
            client_options=settings.kafka_client_options(),
        )
    )
    typer.echo(
        f"{outcome}: group {group_id}, transactional id {transactional_id}, "
        f"producer id {producer_id} epoch {epoch}"
    )
