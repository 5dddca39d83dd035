"""``casebus keys``: make an agency's signing key pair.

A key is generated on the machine that will sign with it, so the private half never travels; only
the public PEM and the printed key id go to whoever keeps the agency registry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bus.errors import ConfigError
from bus.signing import algorithm_of_profile, write_keypair

__all__ = ["app"]

app = typer.Typer(
    name="keys",
    help="Signing keys: generate an agency's key pair (Ed25519, or SM2 for the 国密 profile).",
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
    alg: Annotated[
        str | None,
        typer.Option(
            "--alg",
            help="ed25519 or sm2 (SM2 with SM3, GB/T 32918); default the deployment's crypto "
            "profile (CASEBUS_CRYPTO_PROFILE, else ed25519).",
        ),
    ] = None,
) -> None:
    """Write <agency>.key.pem (PKCS#8, mode 0600) and <agency>.pub.pem; print the key id.

    Both files are PEM, the form OpenSSL reads: ``openssl pkey -in <agency>.key.pem -text``.
    """
    try:
        algorithm = algorithm_of_profile(alg or _profile())
        files = write_keypair(agency, out, overwrite=force, algorithm=algorithm)
    except ConfigError as e:
        typer.echo(str(e), err=True)
        raise typer.Exit(2) from e
    except FileExistsError as e:
        typer.echo(f"{e.filename} exists; pass --force to replace the key pair", err=True)
        raise typer.Exit(1) from e
    typer.echo(f"private key: {files.private_key}", err=True)
    typer.echo(f"public key:  {files.public_key}", err=True)
    typer.echo(files.key_id)


def _profile() -> str:
    from bus.settings import load_settings

    return load_settings().crypto_profile
