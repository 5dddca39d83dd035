"""A private secure stack (``deploy/local/up --secure``) for one test module.

Secure-mode tests must never touch the shared local broker and database: each module starts its
own Kafka and PostgreSQL in a state folder and on ports of its own, and stops them at the end.
Every ``java`` that ``up`` runs goes through a wrapper that records its command line, so a test
can prove no secret was ever passed as an argument (which any local user reads in ``ps``).
Java, Maven and openssl are required: without them the tests fail and say so.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from portkit import free_port_run

from bus.settings import REPO_ROOT

__all__ = ["SecureStack", "secure_stack", "self_signed_ca"]


@dataclass(frozen=True)
class SecureStack:
    """A running secure stack: where it lives and what ``up`` printed."""

    state: Path
    env: dict[str, str]
    """The environment ``up`` ran with (no CASEBUS_* of the caller's shell)."""
    exports: dict[str, str]
    """The ``export`` lines ``up`` printed."""
    output: str
    """Everything ``up`` wrote, stdout and stderr."""
    java_argv_log: Path
    """One line per ``java`` command ``up`` ran, with its arguments."""

    @property
    def users(self) -> Path:
        return Path(self.exports["CASEBUS_KAFKA_USERS_DIR"])

    @property
    def ca_file(self) -> Path:
        return Path(self.exports["CASEBUS_KAFKA_CA_FILE"])

    def password_file(self, user: str) -> Path:
        return self.users / f"{user}.password"

    def casebus_env(self, **extra: str) -> dict[str, str]:
        """The environment of a ``casebus`` command on this stack (the super user's)."""
        return {**self.env, **self.exports, **extra}


@contextmanager
def secure_stack() -> Iterator[SecureStack]:
    """Start ``up --secure`` in a fresh state folder, yield it, then ``down`` and delete it."""
    missing = [tool for tool in ("java", "mvn", "openssl") if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"the secure-stack tests need {', '.join(missing)} on PATH", pytrace=False)
    # `up` also starts a PostgreSQL, as user postgres when we are root: it must reach the folder.
    state = Path(tempfile.mkdtemp(prefix="casebus-secure-", dir="/tmp"))
    state.chmod(0o755)
    wrappers = state / "bin"
    wrappers.mkdir()
    argv_log = state / "java-argv.log"
    java = wrappers / "java"
    java.write_text(
        f'#!/bin/sh\nprintf "%s\\n" "$*" >> "{argv_log}"\nexec "{shutil.which("java")}" "$@"\n'
    )
    java.chmod(0o755)
    base = free_port_run(4)  # the broker's three, then PostgreSQL's
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASEBUS_")}
    env.update(
        PATH=f"{wrappers}:{env.get('PATH', '/usr/bin:/bin')}",
        CASEBUS_STATE_DIR=str(state),
        CASEBUS_KAFKA_PORT=str(base),
        CASEBUS_KAFKA_CONTROLLER_PORT=str(base + 1),
        CASEBUS_KAFKA_INTERNAL_PORT=str(base + 2),
        CASEBUS_PG_PORT=str(base + 3),
    )
    up = subprocess.run(
        [str(REPO_ROOT / "deploy" / "local" / "up"), "--secure"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    try:
        assert up.returncode == 0, up.stderr[-3000:]
        exports = dict(
            line.removeprefix("export ").split("=", 1)
            for line in up.stdout.splitlines()
            if line.startswith("export ")
        )
        yield SecureStack(
            state=state,
            env=env,
            exports=exports,
            output=up.stdout + up.stderr,
            java_argv_log=argv_log,
        )
    finally:
        subprocess.run(
            [str(REPO_ROOT / "deploy" / "local" / "down")],
            env=env,
            capture_output=True,
            timeout=120,
        )
        shutil.rmtree(state, ignore_errors=True)


def self_signed_ca(folder: Path, *, name: str = "test ca") -> Path:
    """A CA certificate (PEM, valid for a day) written to ``folder/ca.crt``, for TLS settings
    that only need a readable CA file, not a broker that presents it."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path = folder / "ca.crt"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path
