"""``casebus adapter``: run a department adapter, and issue its API tokens.

``casebus adapter regulators --agency ygh.regulator.planning --agency ygh.regulator.land``
serves both regulators' systems from one process; ``casebus adapter token --agency ID`` prints a
new API token for a department (only its SHA-256 is stored).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer
import uvicorn

from adapters._framework.auth import create_token
from adapters._framework.config import AdapterConfig, AgencyEndpoint
from adapters._framework.spec import AdapterSpec
from adapters.specs import SPECS
from bus.db import connect
from bus.errors import ConfigError
from bus.secret_files import read_secret_file
from bus.settings import Settings, load_settings

app = typer.Typer(help="Department adapters (HTTP APIs in each department's vocabulary).")


def _webhooks(values: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for value in values:
        agency, sep, url = value.partition("=")
        if not sep or not agency or not url.startswith(("http://", "https://")):
            raise typer.BadParameter(f"{value!r} is not AGENCY=URL", param_hint="--webhook")
        out[agency] = url
    return out


def _config(
    kind: str,
    agencies: list[str],
    key_dir: Path,
    webhooks: list[str],
    max_body_bytes: int,
    max_wait_s: float,
) -> AdapterConfig:
    urls = _webhooks(webhooks)
    unknown = set(urls) - set(agencies)
    if unknown:
        raise typer.BadParameter(f"webhooks for agencies not served: {sorted(unknown)}")
    endpoints = []
    for agency in agencies:
        secret = b""
        if agency in urls:
            secret = read_secret_file(
                key_dir / f"{agency}.webhook-secret",
                what="webhook HMAC secret",
                leak=f"a leaked secret lets anyone post webhooks to {agency} as the bus",
                agency=agency,
            ).strip()
        endpoints.append(
            AgencyEndpoint(
                agency_id=agency,
                key_file=key_dir / f"{agency}.key.pem",
                webhook_url=urls.get(agency),
                webhook_secret=secret,
            )
        )
    return AdapterConfig(
        adapter_kind=kind,
        agencies=tuple(endpoints),
        max_body_bytes=max_body_bytes,
        max_wait_s=max_wait_s,
    )


def _serve(
    spec: AdapterSpec, settings: Settings, config: AdapterConfig, host: str, port: int
) -> None:
    # As its own role: it may not register its agencies' keys (the router trusts them), so
    # the operator has (`casebus agency key add`); start() stops, naming that, if not.
    service = spec.build_service(settings.for_service(config.service), config)
    api = spec.create_app(service)
    # httptools and uvloop are dependencies: name them, so a missing one fails at start instead
    # of uvicorn falling back to its pure-Python parser and loop (several times the CPU).
    served = uvicorn.Config(
        api, host=host, port=port, log_config=None, http="httptools", loop="uvloop"
    )
    uvicorn.Server(served).run()


def _command(spec: AdapterSpec) -> None:
    kind = spec.kind

    def run(
        agency: list[str] = typer.Option(..., "--agency", help="An agency served; repeatable."),
        key_dir: Path | None = typer.Option(
            None,
            "--key-dir",
            help="Holds <agency>.key.pem (and <agency>.webhook-secret for webhooks); default "
            "CASEBUS_ADAPTER_KEY_DIR, else .casebus/keys.",
        ),
        webhook: list[str] = typer.Option(
            [], "--webhook", help="AGENCY=URL: deliver by webhook (else the agency pulls)."
        ),
        host: str | None = typer.Option(
            None, "--host", help="Listen here (default CASEBUS_ADAPTER_HOST, else 127.0.0.1)."
        ),
        port: int | None = typer.Option(
            None, "--port", help="Listen here (default CASEBUS_ADAPTER_PORT, else 8080)."
        ),
        max_body_bytes: int | None = typer.Option(
            None,
            "--max-body-bytes",
            help="Largest request body (default CASEBUS_ADAPTER_MAX_BODY_BYTES, else 1 MiB).",
        ),
        max_wait_s: float | None = typer.Option(
            None,
            "--max-wait-s",
            help="Alert when a message waits longer for its department (default "
            "CASEBUS_ADAPTER_MAX_WAIT_S, else 300).",
        ),
    ) -> None:
        try:
            s = load_settings()
            config = _config(
                kind,
                agency,
                s.adapter_key_dir if key_dir is None else key_dir,
                webhook,
                s.adapter_max_body_bytes if max_body_bytes is None else max_body_bytes,
                s.adapter_max_wait_s if max_wait_s is None else max_wait_s,
            )
            _serve(
                spec,
                s,
                config,
                s.adapter_host if host is None else host,
                s.adapter_port if port is None else port,
            )
        except ConfigError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(1) from e

    run.__doc__ = f"Run the {kind} adapter's HTTP API, outbox relay and deliveries. {spec.summary}"
    app.command(kind)(run)


for _spec in SPECS:
    _command(_spec)


@app.command("token")
def token_cmd(
    agency: str = typer.Option(..., "--agency", help="The agency the token acts for."),
    label: str = typer.Option("", "--label", help="A note on who holds it."),
) -> None:
    """Issue an API token for one agency and print it (it cannot be shown again)."""
    settings = load_settings()

    async def go() -> str:
        conn = await connect(settings.database_url)
        try:
            return await create_token(conn, agency, label=label)
        finally:
            await conn.close()

    try:
        typer.echo(asyncio.run(go()))
    except Exception as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from e
