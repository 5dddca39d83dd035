"""The root typer app; command groups register here, one module each, and load lazily.

A command group's module is imported only when that group runs, and the module keeps its heavy
imports (FastAPI, uvicorn, aiokafka, the adapters) inside the commands that need them, so
``casebus --help`` and light commands such as ``casebus sla due`` start in a fraction of a
second instead of importing the whole bus (tests/test_cli_startup.py holds us to it,
bench/cli_startup.py measures it). For the same reason the root callback sets up logging without
importing structlog (it is configured when something imports it) and reads the settings with
pydantic-settings only when a ``CASEBUS_*`` variable is set.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import TYPE_CHECKING, NamedTuple

import typer
from typer.core import TyperGroup

if TYPE_CHECKING:  # typer 0.2x carries its own click; these are the types TyperGroup uses
    from typer._click import Command, Context, HelpFormatter

    from bus.logs import LogFormat, LogLevel

__all__ = ["GROUPS", "any_casebus_variable", "app", "main"]


class Group(NamedTuple):
    """A command group: the module defining its ``app`` and the line ``--help`` shows."""

    module: str
    help: str


# Keep this table sorted; one line per group. Each help line is the module's own
# ``typer.Typer(help=...)`` (tests/test_cli_startup.py checks they agree), so ``casebus --help``
# can list the groups without importing them.
GROUPS: dict[str, Group] = {
    "acl": Group("bus.cli.acl", "Kafka ACLs."),
    "adapter": Group(
        "bus.cli.adapter", "Department adapters (HTTP APIs in each department's vocabulary)."
    ),
    "agency": Group("bus.cli.agency", "Agencies and their signing keys."),
    "asyncapi": Group(
        "bus.cli.asyncapi",
        "Print the AsyncAPI 3.0 document of the bus (topics, kinds, who may send what).",
    ),
    "attachments": Group("bus.cli.attachments", "Case files (attachments): retention."),
    "audit": Group("bus.cli.audit", "The tamper-evident audit log."),
    "console": Group("bus.cli.console", "The ops console (HTML)."),
    "db": Group("bus.cli.db", "Database schema."),
    "demo": Group("bus.cli.demo", "Run the demo: a simulated fortnight end to end."),
    "envelope": Group("bus.cli.envelope", "Encode and decode Kafka values by hand."),
    "keys": Group(
        "bus.cli.keys",
        "Signing keys: generate an agency's key pair (Ed25519, or SM2 for the 国密 profile).",
    ),
    "router": Group("bus.cli.router", "The bus router."),
    "schemas": Group("bus.cli.schemas", "Avro schemas of the message kinds."),
    "sla": Group(
        "bus.cli.sla",
        "Deadlines (SLA): run the engine, show deadlines, list policies, compute due instants.",
    ),
    "topics": Group("bus.cli.topics", "Kafka topics."),
    "trace": Group("bus.cli.trace", "A case's timeline from the audit log."),
    "witness": Group("bus.cli.witness", "A C2SP witness for the audit log."),
}


def load_group(name: str) -> Command:
    """Import one group's module and build its click command (named as mounted)."""
    sub: typer.Typer = importlib.import_module(GROUPS[name].module).app
    command = typer.main.get_group(sub)
    command.name = name
    return command


class _LazyGroup(TyperGroup):
    """Lists the groups from :data:`GROUPS`; imports one only when it is about to run."""

    _listing = False

    def list_commands(self, ctx: Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *GROUPS})

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        if cmd_name not in GROUPS:
            return super().get_command(ctx, cmd_name)
        if self._listing:  # the help page needs a name and a line, not the module
            return TyperGroup(name=cmd_name, help=GROUPS[cmd_name].help)
        command = self.commands.get(cmd_name)
        if command is None:
            command = self.commands[cmd_name] = load_group(cmd_name)
        return command

    def format_help(self, ctx: Context, formatter: HelpFormatter) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False


app = typer.Typer(
    name="casebus",
    cls=_LazyGroup,
    help="casebus: case work between agencies, on Kafka, with a verifiable audit log.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(
    dev: bool = typer.Option(False, "--dev", help="Human-readable console logs."),
    log_format: str | None = typer.Option(
        None,
        "--log-format",
        help="json or console (default CASEBUS_LOG_FORMAT, else console showing warnings and "
        "worse on a terminal, JSON lines at info otherwise).",
    ),
) -> None:
    from bus.errors import ConfigError
    from bus.logs import choose_logging, configure_logging_on_import

    try:
        setting_format, setting_level = _log_settings()
        choice = choose_logging(
            flag="console" if dev else log_format,
            setting_format=setting_format,
            setting_level=setting_level,
            is_terminal=sys.stderr.isatty(),
        )
    except ConfigError as e:
        typer.echo(str(e), err=True)
        raise typer.Exit(2) from e
    configure_logging_on_import(log_format=choice.log_format, level=choice.level)


def _log_settings() -> tuple[LogFormat | None, LogLevel | None]:
    """CASEBUS_LOG_FORMAT and CASEBUS_LOG_LEVEL when set (None when left at their defaults),
    after checking every ``CASEBUS_*`` setting: a bad one stops any command (ConfigError).

    With no ``CASEBUS_*`` variable set, every setting is its default, which is valid and sets
    neither: the answer is known without loading pydantic-settings (about a third of a light
    command's start-up).
    """
    if not any_casebus_variable():
        return None, None
    from bus.settings import load_settings

    settings = load_settings()
    given = settings.model_fields_set  # what CASEBUS_* set, as opposed to defaults
    return (
        settings.log_format if "log_format" in given else None,
        settings.log_level if "log_level" in given else None,
    )


def any_casebus_variable() -> bool:
    """Whether a ``CASEBUS_*`` variable is set: if not, every setting is its default, which a
    light command may know without loading pydantic-settings."""
    # pydantic-settings matches the variables' names ignoring case, and reads no other source.
    return any(name.upper().startswith("CASEBUS_") for name in os.environ)


def main() -> None:
    """Console-script entry point."""
    app()
