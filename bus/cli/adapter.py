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
from bus.settings import REPO_ROOT, load_settings

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


def _serve(spec: AdapterSpec, config: AdapterConfig, host: str, port: int) -> None:
    # As its own role: it may not register its agencies' keys (the router trusts them), so
    # the operator has (`casebus agency key add`); start() stops, naming that, if not.
    settings = load_settings().for_service(config.service)
    service = spec.build_service(settings, config)
    api = spec.create_app(service)
    uvicorn.Server(uvicorn.Config(api, host=host, port=port, log_config=None)).run()


def _command(spec: AdapterSpec) -> None:
    kind = spec.kind

    def run(
        agency: list[str] = typer.Option(..., "--agency", help="An agency served; repeatable."),
        key_dir: Path = typer.Option(
            REPO_ROOT / ".casebus" / "keys",
            "--key-dir",
            envvar="CASEBUS_ADAPTER_KEY_DIR",
            help="Holds <agency>.key.pem (and <agency>.webhook-secret for webhooks).",
        ),
        webhook: list[str] = typer.Option(
            [], "--webhook", help="AGENCY=URL: deliver by webhook (else the agency pulls)."
        ),
        host: str = typer.Option("127.0.0.1", "--host", envvar="CASEBUS_ADAPTER_HOST"),
        port: int = typer.Option(8080, "--port", envvar="CASEBUS_ADAPTER_PORT"),
        max_body_bytes: int = typer.Option(
            1024 * 1024, "--max-body-bytes", envvar="CASEBUS_ADAPTER_MAX_BODY_BYTES"
        ),
        max_wait_s: float = typer.Option(
            300.0,
            "--max-wait-s",
            envvar="CASEBUS_ADAPTER_MAX_WAIT_S",
            help="Alert when a message waits longer for its department.",
        ),
    ) -> None:
        try:
            config = _config(kind, agency, key_dir, webhook, max_body_bytes, max_wait_s)
            _serve(spec, config, host, port)
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
