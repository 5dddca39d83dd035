"""``casebus schemas``: the message contract's schema files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bus.compat import check_schemas
from bus.settings import load_settings

app = typer.Typer(help="Avro schemas of the message kinds.", no_args_is_help=True)


@app.callback()
def _group() -> None:
    # Keeps ``check`` a sub-command even while it is the group's only command.
    pass


@app.command("check")
def check_cmd(
    schema_dir: Annotated[
        Path | None,
        typer.Option(
            "--schema-dir",
            help="Folder of <kind>/v<N>.avsc files; default CASEBUS_SCHEMA_DIR, else the "
            "installed schemas/.",
            file_okay=False,
            exists=True,
        ),
    ] = None,
) -> None:
    """Prove every kind's versions FULL_TRANSITIVE compatible; exit 1 listing each problem."""
    if schema_dir is None:
        schema_dir = load_settings().schema_dir
        if schema_dir is not None and not schema_dir.is_dir():
            typer.echo(f"CASEBUS_SCHEMA_DIR={str(schema_dir)!r} is not a folder", err=True)
            raise typer.Exit(2)
    results = check_schemas(schema_dir)
    failed = 0
    for result in results:
        pair = f"v{result.writer_version} → v{result.reader_version}"
        if result.writer_version == result.reader_version:
            pair = f"v{result.writer_version} (single version)"
        typer.echo(f"{'ok' if result.ok else 'FAIL':4}  {result.kind}  {pair}")
        for problem in result.problems:
            failed += 1
            typer.echo(f"      {problem}")
    if failed:
        typer.echo(f"{failed} compatibility problem(s) in {len(results)} pair(s) checked")
        raise typer.Exit(1)
    typer.echo(f"all {len(results)} pair(s) compatible")
