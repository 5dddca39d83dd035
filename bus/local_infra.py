"""Where the local Kafka broker and PostgreSQL answer, found (or started) in one way.

The tests, the benchmarks and the soak all need the same two addresses: the ones the
``CASEBUS_*`` environment names when a developer (``source .casebus/env``) or CI has set them,
else the ones ``deploy/local/up`` prints once it has started both (it returns at once when they
already run). Written once here, so that a change to what ``up`` prints is followed once.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from bus.errors import ConfigError
from bus.settings import REPO_ROOT

__all__ = [
    "LocalInfra",
    "infra_from_env",
    "local_database_url",
    "local_infra",
    "parse_exports",
    "start_local",
]

UP = REPO_ROOT / "deploy" / "local" / "up"
"""The script that starts the local broker and PostgreSQL and prints their ``export`` lines."""


@dataclass(frozen=True)
class LocalInfra:
    """Where the broker and the database answer."""

    kafka_bootstrap: str
    database_url: str
    """A DSN of a role that may create databases (the owner's)."""
    topic_replication: int = 1
    """Replication of new topics: 3 on a cluster (``up --brokers 3``)."""


def _quiet(text: str) -> None:
    del text


def _replication(env: Mapping[str, str]) -> int:
    text = env.get("CASEBUS_TOPIC_REPLICATION", "1")
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"CASEBUS_TOPIC_REPLICATION={text!r} is not a number") from None


def infra_from_env(env: Mapping[str, str] | None = None) -> LocalInfra | None:
    """The addresses ``CASEBUS_KAFKA_BOOTSTRAP`` and ``CASEBUS_DATABASE_URL`` name, when both
    are set (in ``env``, else this process's environment); None when either is not."""
    env = os.environ if env is None else env
    bootstrap = env.get("CASEBUS_KAFKA_BOOTSTRAP")
    dsn = env.get("CASEBUS_DATABASE_URL")
    if not (bootstrap and dsn):
        return None
    return LocalInfra(bootstrap, dsn, _replication(env))


def parse_exports(text: str) -> dict[str, str]:
    """The ``export NAME=value`` lines of ``up``'s output, quotes around a value removed."""
    exports: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.removeprefix("export ").partition("=")
        if line.startswith("export ") and sep:
            exports[name] = value.strip("'\"")
    return exports


def start_local(*, say: Callable[[str], None] = _quiet, timeout_s: float = 600) -> LocalInfra:
    """Run ``deploy/local/up`` (with this process's ``CASEBUS_STATE_DIR`` and ports) and
    return what it printed; ConfigError if it printed no broker or database address."""
    say(f"running {UP}")
    out = subprocess.run(
        [str(UP)], check=True, stdout=subprocess.PIPE, text=True, timeout=timeout_s
    ).stdout
    found = infra_from_env(parse_exports(out))
    if found is None:
        raise ConfigError(f"{UP} printed no CASEBUS_KAFKA_BOOTSTRAP or CASEBUS_DATABASE_URL")
    return found


def local_infra(*, say: Callable[[str], None] = _quiet) -> LocalInfra:
    """The broker and database the environment names, else the ones ``up`` starts."""
    found = infra_from_env()
    if found is not None:
        return found
    say("CASEBUS_KAFKA_BOOTSTRAP or CASEBUS_DATABASE_URL is unset")
    return start_local(say=say)


def local_database_url(*, say: Callable[[str], None] = _quiet) -> str:
    """For what needs PostgreSQL alone: ``CASEBUS_DATABASE_URL`` when set, else the address
    ``up`` prints."""
    dsn = os.environ.get("CASEBUS_DATABASE_URL")
    if dsn:
        return dsn
    say("CASEBUS_DATABASE_URL is unset")
    return start_local(say=say).database_url
