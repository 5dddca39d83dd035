"""``casebus keys``: make an agency's signing key pair.

A key is generated on the machine that will sign with it, so the private half never travels; only
the public PEM and the printed key id go to whoever keeps the agency registry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bus.errors import ConfigError
from bus.signing import write_keypair

__all__ = ["app"]

app = typer.Typer(
    name="keys",
    help="Signing keys: generate an agency's Ed25519 key pair.",
    no_args_is_help=True,
)


@app.callback()
def _keys() -> None:
    """Signing keys of agencies."""


@app.command()
def generate(
    agency: Annotated[str, typer.Option("--agency", help="Agency id the key signs for.")],
    out: Annotated[Path, typer.Option("--out", help="Folder to write the two PEM files into.")],
    force: Annotated[bool, typer.Option("--force", help="Replace an existing key pair.")] = False,
) -> None:
    """Write <agency>.key.pem (PKCS#8, mode 0600) and <agency>.pub.pem; print the key id."""
    try:
        files = write_keypair(agency, out, overwrite=force)
    except ConfigError as e:
        typer.echo(str(e), err=True)
        raise typer.Exit(2) from e
    except FileExistsError as e:
        typer.echo(f"{e.filename} exists; pass --force to replace the key pair", err=True)
        raise typer.Exit(1) from e
    typer.echo(f"private key: {files.private_key}", err=True)
    typer.echo(f"public key:  {files.public_key}", err=True)
    typer.echo(files.key_id)
