"""The demo's witnesses: the procuratorate and the court each run one, as deployed.

Without them the demo would show a log that only its owner vouches for. Each witness is the
real :func:`bus.witness.create_app`, served by uvicorn inside the demo's process on a port of
its own, so the router asks it over HTTP exactly as it asks a ``casebus witness serve``
elsewhere. Each has its own Ed25519 key (kept under the key directory: a witness's identity
must outlive a run for as long as the log it cosigned does) and its own SQLite store under the
state directory, never the bus's database, whose owner is the party a witness guards against.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from bus.audit.checkpoint import VerifierKey
from bus.audit.cosignature import parse_cosigner_key
from bus.cli.witness import load_witness_key
from bus.settings import Settings
from bus.signing import write_keypair
from bus.witness import SqliteWitnessStore, Witness, create_app, logs_by_origin

__all__ = ["DemoWitness", "running_witnesses", "witness_name", "witness_policy"]

_STARTUP_S = 10.0


def witness_name(agency: str) -> str:
    """The name in an agency's cosignature lines: ``<agency>/witness``."""
    return f"{agency}/witness"


@dataclass(frozen=True, slots=True)
class DemoWitness:
    """A running witness: whose it is, where it answers, and the key that checks its lines."""

    agency: str
    url: str
    vkey: str

    @property
    def key(self) -> VerifierKey:
        """Its cosigner key, as a verifier holds it."""
        return parse_cosigner_key(self.vkey)


def witness_policy(settings: Settings, witnesses: Sequence[DemoWitness]) -> Settings:
    """``settings`` with the router's publication policy: every witness must cosign (n of n).

    All of them, not fewer: the demo has one witness per party that checks the log, and a tree
    head that either of them did not vouch for is one that party would not keep as evidence.
    """
    return settings.model_copy(
        update={
            "audit_witnesses": " ".join(f"{w.url}={w.vkey}" for w in witnesses),
            "audit_witness_quorum": len(witnesses),
        }
    )


def _key_file(key_dir: Path, agency: str) -> Path:
    folder = key_dir / "witnesses"
    path = folder / f"{agency}.witness.key.pem"
    if not path.exists():
        write_keypair(f"{agency}.witness", folder)
    return path


def _witnesses(
    agencies: Sequence[str], *, log_vkey: VerifierKey, key_dir: Path, state_dir: Path
) -> list[Witness]:
    state_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for agency in agencies:
        name = witness_name(agency)
        out.append(
            Witness(
                name=name,
                private_key=load_witness_key(_key_file(key_dir, agency), name),
                logs=logs_by_origin([log_vkey]),
                store=SqliteWitnessStore(state_dir / f"{agency}.sqlite"),
            )
        )
    return out


@contextlib.asynccontextmanager
async def running_witnesses(
    agencies: Sequence[str], *, log_vkey: VerifierKey, key_dir: Path, state_dir: Path
) -> AsyncIterator[list[DemoWitness]]:
    """Serve one witness per agency on 127.0.0.1, trusting the log ``log_vkey`` only; stop them
    on exit."""
    made = _witnesses(agencies, log_vkey=log_vkey, key_dir=key_dir, state_dir=state_dir)
    servers: list[uvicorn.Server] = []
    tasks: list[asyncio.Task[None]] = []
    running: list[DemoWitness] = []
    try:
        for agency, witness in zip(agencies, made, strict=True):
            name = witness.name
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
            server = uvicorn.Server(
                uvicorn.Config(create_app(witness), log_level="warning", lifespan="off")
            )
            servers.append(server)
            tasks.append(asyncio.create_task(server.serve(sockets=[sock]), name=f"demo.{name}"))
            async with asyncio.timeout(_STARTUP_S):
                while not server.started:
                    if tasks[-1].done():
                        await tasks[-1]
                        raise RuntimeError(f"witness {name} stopped while starting")
                    await asyncio.sleep(0.02)
            running.append(DemoWitness(agency, f"http://127.0.0.1:{port}", witness.vkey))
        yield running
    finally:
        for server in servers:
            server.should_exit = True
        await asyncio.gather(*tasks, return_exceptions=True)
