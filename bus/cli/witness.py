"""``casebus witness``: run a C2SP tlog-witness that vouches for casebus's audit log (or any
C2SP log): the procuratorate and the court each run one, with their own key and store."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import typer
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bus.audit.checkpoint import parse_verifier_key
from bus.audit.cosignature import cosigner_vkey
from bus.errors import CheckpointError, ConfigError
from bus.secret_files import read_secret_file
from bus.settings import Settings, load_settings
from bus.witness import SqliteWitnessStore, Witness, create_app, logs_by_origin

__all__ = ["app", "load_witness_key"]

_T = TypeVar("_T")

app = typer.Typer(help="A C2SP witness for the audit log.", no_args_is_help=True)

_NAME = typer.Option(
    None,
    "--name",
    help="The witness's name in its cosignature lines, URL-like (ygh.procuratorate/witness); "
    "default CASEBUS_WITNESS_NAME.",
)
_KEY = typer.Option(
    None,
    "--key-file",
    help="The witness's Ed25519 private key (PKCS#8 PEM, mode 0600); default "
    "CASEBUS_WITNESS_KEY_FILE.",
)


def _required(flag: _T | None, setting: _T | None, option: str, variable: str) -> _T:
    """The flag, else its setting; neither given ends the command as a missing option would."""
    value = flag if flag is not None else setting
    if value is None:
        typer.echo(f"Missing option '{option}' (or {variable}).", err=True)
        raise typer.Exit(2)
    return value


def _identity(name: str | None, key_file: Path | None) -> tuple[Settings, str, Path]:
    settings = load_settings()
    name = _required(name, settings.witness_name, "--name", "CASEBUS_WITNESS_NAME")
    key_file = _required(
        key_file, settings.witness_key_file, "--key-file", "CASEBUS_WITNESS_KEY_FILE"
    )
    return settings, name, key_file


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
def vkey_cmd(name: str | None = _NAME, key_file: Path | None = _KEY) -> None:
    """Print the witness's cosigner verifier key (vkey), for the log's verifiers."""
    _, name, key_file = _identity(name, key_file)
    typer.echo(cosigner_vkey(name, load_witness_key(key_file, name).public_key()))


@app.command("serve")
def serve_cmd(
    name: str | None = _NAME,
    key_file: Path | None = _KEY,
    log_keys: list[str] | None = typer.Option(
        None,
        "--log",
        help="A log's verifier key (vkey, `casebus audit log-key`); its name is the log's "
        "origin. Repeatable; default CASEBUS_WITNESS_LOGS, separated by spaces.",
    ),
    db: Path | None = typer.Option(
        None,
        "--db",
        help="The witness's own store (SQLite): the latest cosigned checkpoint per log. "
        "Never the bus's database: the witness guards against whoever owns that one. "
        "Default CASEBUS_WITNESS_DB, else witness.sqlite.",
    ),
    host: str | None = typer.Option(
        None, "--host", help="Default CASEBUS_WITNESS_HOST, else 127.0.0.1."
    ),
    port: int | None = typer.Option(
        None, "--port", help="Default CASEBUS_WITNESS_PORT, else 7380."
    ),
) -> None:
    """Serve POST /add-checkpoint (c2sp.org/tlog-witness) until stopped."""
    settings, name, key_file = _identity(name, key_file)
    log_keys = _required(
        log_keys or None, settings.witness_logs.split() or None, "--log", "CASEBUS_WITNESS_LOGS"
    )
    db = settings.witness_db if db is None else db
    host = settings.witness_host if host is None else host
    port = settings.witness_port if port is None else port
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
