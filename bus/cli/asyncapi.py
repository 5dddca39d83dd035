"""``casebus asyncapi``: print the bus's AsyncAPI 3.0 document, generated from the schemas and
the routing policy, for integrators and API catalogues (see :mod:`bus.asyncapi`)."""

from __future__ import annotations

import json
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Annotated, Literal

import typer

__all__ = ["app"]

app = typer.Typer(
    help="Print the AsyncAPI 3.0 document of the bus (topics, kinds, who may send what).",
    invoke_without_command=True,
)


@app.callback()
def asyncapi(
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write it to this file instead of stdout."),
    ] = None,
    fmt: Annotated[
        Literal["yaml", "json"] | None,
        typer.Option("--format", help="yaml or json (default: json for a .json --output)."),
    ] = None,
) -> None:
    """Channels are the topics of this deployment (CASEBUS_TOPIC_PREFIX, CASEBUS_SUBMIT_TOPICS),
    messages the kinds with their Avro schemas, operations what each agency may send and read."""
    import yaml

    from bus.agencies import load_registry
    from bus.asyncapi import build_document
    from bus.errors import ConfigError
    from bus.routing import DEFAULT_POLICY_PATH, load_policy
    from bus.schema_index import default_index
    from bus.settings import load_settings

    try:
        settings = load_settings()
        registry = load_registry(settings.agencies_file)
        policy = load_policy(DEFAULT_POLICY_PATH, registry)
        index = default_index()
    except ConfigError as e:
        typer.echo(str(e), err=True)
        raise typer.Exit(2) from e
    try:
        version = package_version("casebus")
    except PackageNotFoundError:  # run from a checkout that was never installed
        version = "0.0.0"
    document = build_document(
        settings=settings, registry=registry, policy=policy, index=index, version=version
    )
    if fmt is None:
        fmt = "json" if output is not None and output.suffix == ".json" else "yaml"
    if fmt == "json":
        text = json.dumps(document, ensure_ascii=False, indent=2) + "\n"
    else:
        text = yaml.safe_dump(document, allow_unicode=True, sort_keys=False, width=100)
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {output}", err=True)
