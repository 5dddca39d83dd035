"""``casebus console``: the ops console over the bus's database and broker."""

from __future__ import annotations

import typer
import uvicorn

from bus.console import create_app
from bus.settings import load_settings

__all__ = ["app"]

app = typer.Typer(help="The ops console (HTML).", invoke_without_command=True)


@app.callback()
def console(
    port: int | None = typer.Option(
        None, "--port", help="Listen here (default CASEBUS_CONSOLE_PORT, else 8088)."
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="Listen on this address."),
    refresh_s: int = typer.Option(5, "--refresh-s", help="Seconds between page refreshes."),
) -> None:
    """Serve open deadlines, warnings and breaches by agency and flow, delivery health, response
    times and case timelines until Ctrl-C: the overview to the procuratorate's token, a case to
    its parties' tokens too."""
    settings = load_settings()
    port = settings.console_port if port is None else port
    typer.echo(
        f"casebus console on http://{host}:{port}/ — sign in with an agency's API token as the "
        "password (`casebus adapter token --agency ygh.procuratorate` for the overview); the "
        "pages are in Chinese, in English with ?lang=en or an English-preferring browser"
    )
    uvicorn.run(
        create_app(settings, refresh_s=refresh_s), host=host, port=port, log_level="warning"
    )
