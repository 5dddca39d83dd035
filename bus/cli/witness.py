"""``casebus witness``: run a C2SP tlog-witness that vouches for casebus's audit log (or any
C2SP log): the procuratorate and the court each run one, with their own key and store."""

from __future__ import annotations

from pathlib import Path

import typer
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bus.audit.checkpoint import CheckpointError, parse_verifier_key
from bus.audit.cosignature import cosigner_vkey
from bus.errors import ConfigError
from bus.secret_files import read_secret_file
from bus.witness import SqliteWitnessStore, Witness, create_app, logs_by_origin

__all__ = ["app", "load_witness_key"]

app = typer.Typer(help="A C2SP witness for the audit log.", no_args_is_help=True)

_NAME = typer.Option(
    ...,
    "--name",
    envvar="CASEBUS_WITNESS_NAME",
    help="The witness's name in its cosignature lines, URL-like (ygh.procuratorate/witness).",
)
_KEY = typer.Option(
    ...,
    "--key-file",
    envvar="CASEBUS_WITNESS_KEY_FILE",
    help="The witness's Ed25519 private key (PKCS#8 PEM, mode 0600).",
)


def load_witness_key(path: Path, name: str) -> Ed25519PrivateKey:
    """The witness's private key; ConfigError naming the file if it is not a private
    Ed25519 key readable by its owner alone."""
    pem = read_secret_file(
        path, what="witness key file", leak=f"a leaked key lets anyone cosign as {name}"
    )
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{path} is not a readable PKCS#8 PEM private key: {e}") from e
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path} is not an Ed25519 private key")
    return key


@app.command("vkey")
def vkey_cmd(name: str = _NAME, key_file: Path = _KEY) -> None:
    """Print the witness's cosigner verifier key (vkey), for the log's verifiers."""
    typer.echo(cosigner_vkey(name, load_witness_key(key_file, name).public_key()))


@app.command("serve")
def serve_cmd(
    name: str = _NAME,
    key_file: Path = _KEY,
    log_keys: list[str] = typer.Option(
        ...,
        "--log",
        envvar="CASEBUS_WITNESS_LOGS",
        help="A log's verifier key (vkey, `casebus audit log-key`); its name is the log's "
        "origin. Repeatable; in the environment, separated by spaces.",
    ),
    db: Path = typer.Option(
        Path("witness.sqlite"),
        "--db",
        envvar="CASEBUS_WITNESS_DB",
        help="The witness's own store (SQLite): the latest cosigned checkpoint per log. "
        "Never the bus's database: the witness guards against whoever owns that one.",
    ),
    host: str = typer.Option("127.0.0.1", "--host", envvar="CASEBUS_WITNESS_HOST"),
    port: int = typer.Option(7380, "--port", envvar="CASEBUS_WITNESS_PORT"),
) -> None:
    """Serve POST /add-checkpoint (c2sp.org/tlog-witness) until stopped."""
    try:
        keys = [parse_verifier_key(k) for k in log_keys]
    except CheckpointError as e:
        raise ConfigError(f"CASEBUS_WITNESS_LOGS / --log: {e}") from e
    witness = Witness(
        name=name,
        private_key=load_witness_key(key_file, name),
        logs=logs_by_origin(keys),
        store=SqliteWitnessStore(db),
    )
    typer.echo(f"casebus witness {witness.vkey} on http://{host}:{port}/", err=True)
    uvicorn.run(create_app(witness), host=host, port=port, log_level="warning")
