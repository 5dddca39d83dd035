"""The root typer app; command groups register here, one module each."""

from __future__ import annotations

import importlib

import typer

from bus.errors import ConfigError
from bus.logs import configure_logging
from bus.settings import load_settings

app = typer.Typer(
    name="casebus",
    help="casebus: case work between agencies, on Kafka, with a verifiable audit log.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

# Each module defines ``app`` (a typer.Typer) and is mounted under its group name.
# Keep this list sorted; one line per group.
_GROUPS: dict[str, str] = {
    "acl": "bus.cli.acl",
    "adapter": "bus.cli.adapter",
    "agency": "bus.cli.agency",
    "asyncapi": "bus.cli.asyncapi",
    "audit": "bus.cli.audit",
    "console": "bus.cli.console",
    "db": "bus.cli.db",
    "router": "bus.cli.router",
    "demo": "bus.cli.demo",
    "envelope": "bus.cli.envelope",
    "keys": "bus.cli.keys",
    "schemas": "bus.cli.schemas",
    "sla": "bus.cli.sla",
    "topics": "bus.cli.topics",
    "trace": "bus.cli.trace",
    "witness": "bus.cli.witness",
}


@app.callback()
def _root(
    dev: bool = typer.Option(False, "--dev", help="Human-readable console logs."),
) -> None:
    try:
        settings = load_settings()
    except ConfigError as e:
        typer.echo(str(e), err=True)
        raise typer.Exit(2) from e
    configure_logging(
        log_format="console" if dev else settings.log_format, level=settings.log_level
    )


for _name, _module in _GROUPS.items():
    app.add_typer(importlib.import_module(_module).app, name=_name)


def main() -> None:
    """Console-script entry point."""
    app()
