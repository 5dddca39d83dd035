"""``casebus audit``: proofs for the procuratorate, offline verification, full replays."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import typer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from prometheus_client import start_http_server

from bus.attachments import check_attachment_files
from bus.audit.checkpoint import (
    CheckpointSigner,
    VerifierKey,
    sm2_verifier_key_string,
    verifier_key_string,
    verify_signed_checkpoint,
)
from bus.audit.checkpointer import Checkpointer
from bus.audit.cosignature import parse_cosigner_key
from bus.audit.evidence import build_bundle, load_bundle, verify_bundle
from bus.audit.log import AuditLog
from bus.audit.monitor import (
    DatabaseProofSource,
    registry_sm2_keys,
    registry_sm2_since_ms,
    run_monitor,
)
from bus.audit.verify import HeldCheckpoint, verify_log
from bus.audit.witnessing import WitnessEndpoint, request_cosignatures
from bus.db import create_pool
from bus.errors import BundleError, CasebusError, ConfigError, EntryNotFoundError, ProofError
from bus.settings import Settings, load_settings
from bus.signing import SM2_SM3, Ed25519Signer, Sm2Signer, load_signer, public_key_from_pem

app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode("ascii")


def bus_signer(settings: Settings) -> Ed25519Signer | Sm2Signer:
    """The bus's own signer (agency ``casebus``), from ``CASEBUS_BUS_KEY_FILE``: Ed25519, or
    SM2 under the 国密 profile."""
    return load_signer(settings.bus_key_file, agency_id="casebus")


def checkpoint_signer(settings: Settings) -> CheckpointSigner:
    """What signs checkpoints, as the router has it: the log key (``CASEBUS_AUDIT_LOG_KEY_FILE``,
    else the bus key) and, when the bus key is SM2, the bus key's own line."""
    return CheckpointSigner.load(bus_signer(settings), settings.audit_log_key_file)


def _public_key(path: Path | None, settings: Settings) -> Ed25519PublicKey:
    if path is None:
        return checkpoint_signer(settings).log_key.public_key()
    key = serialization.load_pem_public_key(path.read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"{path} is not an Ed25519 public key")
    return key


def _bus_sm2_key(path: Path | None) -> tuple[bytes, ...] | None:
    """The bus's SM2 point from ``--bus-key`` (a public key PEM), or None when not given."""
    if path is None:
        return None
    algorithm, raw = public_key_from_pem(path.read_bytes())
    if algorithm != SM2_SM3:
        raise ConfigError(f"--bus-key {path} is an {algorithm} key, not the bus's SM2 key")
    return (raw,)


_BUS_KEY_HELP = (
    "The bus's SM2 public key (PEM) under the 国密 profile: every checkpoint must then carry "
    "its SM2 line beside the log's Ed25519 one."
)


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(message, err=True)
    return typer.Exit(code)


_WITNESS_KEYS = typer.Option(
    None,
    "--witness",
    help="A witness's cosigner vkey (`casebus witness vkey`); repeatable. Then a quorum of "
    "these witnesses must have cosigned the checkpoints. Default CASEBUS_AUDIT_WITNESS_KEYS, "
    "separated by spaces.",
)
_QUORUM = typer.Option(
    None, "--quorum", help="How many witnesses; default CASEBUS_AUDIT_QUORUM, else all."
)


def _witnesses_held_to(
    settings: Settings, vkeys: list[str] | None, quorum: int | None
) -> tuple[tuple[VerifierKey, ...], int | None]:
    """The witnesses (--witness, else CASEBUS_AUDIT_WITNESS_KEYS) and how many of them must
    have cosigned (--quorum, else CASEBUS_AUDIT_QUORUM)."""
    vkeys = vkeys or settings.audit_witness_keys.split()
    quorum = settings.audit_quorum if quorum is None else quorum
    try:
        witnesses = tuple(parse_cosigner_key(v) for v in vkeys)
    except ProofError as e:
        raise _fail(f"FAILED: --witness: {e}") from e
    if quorum is not None and not 1 <= quorum <= len(witnesses):
        raise _fail(f"FAILED: --quorum {quorum} is not between 1 and {len(witnesses)} witnesses")
    return witnesses, quorum


@app.command("witness")
def witness_cmd(
    witnesses: list[str] | None = typer.Option(
        None,
        "--witness",
        help="<submission prefix URL>=<cosigner vkey> of a witness to ask; repeatable. "
        "Default CASEBUS_AUDIT_WITNESSES, separated by spaces.",
    ),
) -> None:
    """Ask each witness to cosign the latest checkpoint; exit 1 if any refused."""
    settings = load_settings()
    witnesses = witnesses or settings.audit_witnesses.split()
    if not witnesses:
        raise _fail("Missing option '--witness' (or CASEBUS_AUDIT_WITNESSES).", code=2)
    endpoints = [WitnessEndpoint.parse(w) for w in witnesses]

    async def go() -> list[str]:
        pool = await create_pool(settings.database_url, max_size=2)
        try:
            outcomes = await request_cosignatures(pool, endpoints)
        finally:
            await pool.close()
        if not outcomes:
            raise _fail("no checkpoint to witness yet")
        lines = [
            f"{o.witness}: "
            + ("cosigned" if o.cosigned else f"refused {o.status} {o.detail}")
            + f" (size {o.tree_size})"
            for o in outcomes
        ]
        if not all(o.cosigned for o in outcomes):
            raise _fail("\n".join(lines))
        return lines

    typer.echo("\n".join(asyncio.run(go())))


@app.command("checkpoint")
def checkpoint_cmd() -> None:
    """Sign a checkpoint of the log now, if it grew since the last one."""
    settings = load_settings()

    async def go() -> None:
        pool = await create_pool(settings.database_url, max_size=2)
        try:
            cp = await Checkpointer(
                pool,
                origin=settings.audit_origin,
                # Checkpointer is typed for an Ed25519 key; sign_checkpoint takes either.
                private_key=checkpoint_signer(settings),
            ).checkpoint()
        finally:
            await pool.close()
        typer.echo(cp.note if cp else "log did not grow; no new checkpoint")

    asyncio.run(go())


@app.command("prove")
def prove_cmd(
    message_id: uuid.UUID = typer.Argument(..., help="The message to prove."),
    event: str = typer.Option("accepted", help="Which event of the message."),
    checkpoint: int | None = typer.Option(None, "--checkpoint", help="Prove against this size."),
) -> None:
    """Print the evidence bundle (JSON) of one audited event."""
    settings = load_settings()

    async def go() -> dict[str, Any]:
        pool = await create_pool(settings.database_url, max_size=2)
        try:
            return await build_bundle(
                pool, message_id, event_kind=event, checkpoint_size=checkpoint
            )
        finally:
            await pool.close()

    try:
        bundle = asyncio.run(go())
    except EntryNotFoundError as e:
        raise _fail(str(e)) from e
    typer.echo(json.dumps(bundle, indent=2, ensure_ascii=False))


@app.command("consistency")
def consistency_cmd(old_size: int, new_size: int) -> None:
    """Print the consistency proof between two checkpoints, with both checkpoints (JSON)."""
    settings = load_settings()

    async def go() -> dict[str, Any]:
        log = AuditLog()
        pool = await create_pool(settings.database_url, max_size=2)
        try:
            old = await log.checkpoint(pool, old_size)
            new = await log.checkpoint(pool, new_size)
            if old is None or new is None:
                missing = old_size if old is None else new_size
                raise EntryNotFoundError(f"no checkpoint of size {missing}")
            proof = await log.consistency_proof(pool, old_size, new_size)
        finally:
            await pool.close()
        return {
            "old_size": old_size,
            "new_size": new_size,
            "proof": [_b64(p) for p in proof],
            "old_checkpoint": old.note,
            "new_checkpoint": new.note,
        }

    try:
        out = asyncio.run(go())
    except (EntryNotFoundError, CasebusError) as e:
        raise _fail(str(e)) from e
    typer.echo(json.dumps(out, indent=2))


@app.command("verify-bundle")
def verify_bundle_cmd(
    bundle_file: Path = typer.Argument(..., exists=True, dir_okay=False),
    log_key: Path = typer.Option(
        ..., "--log-key", exists=True, dir_okay=False, help="The log's Ed25519 public key (PEM)."
    ),
    origin: str | None = typer.Option(None, help="Require this log origin."),
    bus_key: Path | None = typer.Option(
        None, "--bus-key", exists=True, dir_okay=False, help=_BUS_KEY_HELP
    ),
    witness: list[str] | None = _WITNESS_KEYS,
    quorum: int | None = _QUORUM,
    attachments: Path | None = typer.Option(
        None,
        "--attachments",
        exists=True,
        file_okay=False,
        help="A folder of the message's case files (named as attached, or by SHA-256): each "
        "must hash to what the signed envelope says.",
    ),
) -> None:
    """Check a bundle offline (no database, no network): exit 0 with a verdict, or 1."""
    settings = load_settings()
    key = _public_key(log_key, settings)
    sm2_keys = _bus_sm2_key(bus_key) or ()
    witnesses, quorum = _witnesses_held_to(settings, witness, quorum)
    try:
        bundle = load_bundle(bundle_file.read_text())
        verdict = asyncio.run(
            verify_bundle(
                bundle,
                log_key=key,
                origin=origin,
                witnesses=witnesses,
                quorum=quorum,
                sm2_keys=sm2_keys,
            )
        )
    except BundleError as e:
        raise _fail(f"FAILED: {e}") from e
    typer.echo(verdict.line())
    if attachments is not None:
        files = check_attachment_files(bundle, attachments)
        for checked in files:
            typer.echo(checked.line())
        if any(f.state != "ok" for f in files):
            raise _fail("FAILED: the case files are not the ones the message refers to")


def _held_checkpoints(
    files: list[Path], key: Ed25519PublicKey, origin: str, sm2_keys: tuple[bytes, ...] = ()
) -> tuple[HeldCheckpoint, ...]:
    """Each file's signed checkpoint, its signature checked with the log's key (and the bus's
    SM2 key, given one); exit 1 naming the file when one is not a checkpoint of this log."""
    held = []
    for path in files:
        try:
            cp = verify_signed_checkpoint(
                path.read_text(encoding="utf-8"), origin, key, origin=origin, sm2_keys=sm2_keys
            )
        except (OSError, UnicodeDecodeError, ProofError) as e:
            raise _fail(f"FAILED: {path}: {e}") from e
        held.append(HeldCheckpoint(str(path), cp))
    return tuple(held)


@app.command("verify")
def verify_cmd(
    log_key: Path | None = typer.Option(
        None, "--log-key", exists=True, dir_okay=False, help="Default: the bus key's public half."
    ),
    checkpoint: list[Path] = typer.Option(
        [],
        "--checkpoint",
        exists=True,
        dir_okay=False,
        help="A signed checkpoint note kept outside the database (e.g. the procuratorate's "
        "copy); repeatable. The log must reach its size with its root, and the database must "
        "still hold a signed checkpoint as large.",
    ),
    bus_key: Path | None = typer.Option(
        None,
        "--bus-key",
        exists=True,
        dir_okay=False,
        help=_BUS_KEY_HELP + " Default: every sm2-sm3 key the registry holds for casebus.",
    ),
    witness: list[str] | None = _WITNESS_KEYS,
    quorum: int | None = _QUORUM,
    witness_grace_s: float | None = typer.Option(
        None,
        "--witness-grace-s",
        help="A checkpoint older than this must be covered by a cosigned one (default "
        "CASEBUS_AUDIT_WITNESS_GRACE_S, else 60).",
    ),
) -> None:
    """Replay the whole log from the database; exit 1 naming what is wrong. Without
    --checkpoint this proves internal consistency only: the database's owner can rewrite a
    log that is consistent with itself."""
    settings = load_settings()
    key = _public_key(log_key, settings)
    given_sm2 = _bus_sm2_key(bus_key)
    witnesses, quorum = _witnesses_held_to(settings, witness, quorum)
    grace_s = settings.audit_witness_grace_s if witness_grace_s is None else witness_grace_s

    async def go() -> str:
        # Read-only: whoever checks the log needs no power to change it.
        pool = await create_pool(settings.for_service("procuratorate").database_url, max_size=2)
        since_ms: int | None = None
        try:
            sm2_keys = given_sm2 if given_sm2 is not None else await registry_sm2_keys(pool)
            held = _held_checkpoints(checkpoint, key, settings.audit_origin, sm2_keys)
            report = await verify_log(
                pool,
                log_key=key,
                origin=settings.audit_origin,
                held=held,
                witnesses=witnesses,
                quorum=quorum,
                witness_grace_s=grace_s,
            )
            sm2_problem = None
            # Keys given on the command line are required of every checkpoint; the registry's
            # from when its first SM2 key of casebus became valid (older checkpoints predate
            # the move to the 国密 profile).
            since_ms = None if given_sm2 is not None else await registry_sm2_since_ms(pool)
            if report.ok and sm2_keys:
                sm2_problem = await _sm2_line_problem(
                    pool, key, settings.audit_origin, sm2_keys, since_ms=since_ms
                )
        finally:
            await pool.close()
        if not report.ok:
            raise _fail(report.line())
        if sm2_problem is not None:
            raise _fail(f"FAILED: {sm2_problem}")
        if sm2_keys and since_ms is not None:
            since = datetime.fromtimestamp(since_ms / 1000, UTC).isoformat(timespec="seconds")
            return (
                f"{report.line()}; every checkpoint since {since} (the first SM2 key of casebus) "
                "carries the bus's SM2 signature"
            )
        if sm2_keys:
            return f"{report.line()}; every checkpoint carries the bus's SM2 signature"
        return report.line()

    typer.echo(asyncio.run(go()))


async def _sm2_line_problem(
    pool: asyncpg.Pool,
    log_key: Ed25519PublicKey,
    origin: str,
    sm2_keys: tuple[bytes, ...],
    *,
    since_ms: int | None = None,
) -> str | None:
    """What is wrong with the SM2 lines of the stored checkpoints (the replay checked their
    Ed25519 lines), or None: under the 国密 profile each must carry a valid one, from
    ``since_ms`` on when given."""
    async with pool.acquire() as conn:
        stored = await AuditLog().checkpoints(conn)
    for cp in stored:
        if since_ms is not None and cp.timestamp_ms < since_ms:
            continue
        try:
            verify_signed_checkpoint(cp.note, origin, log_key, sm2_keys=sm2_keys)
        except ProofError as e:
            return f"checkpoint {cp.tree_size}: {e}"
    return None


@app.command("log-key")
def log_key_cmd(
    pem: bool = typer.Option(False, "--pem", help="Print the public key as PEM."),
    sm2: bool = typer.Option(
        False,
        "--sm2",
        help="Print the bus's SM2 key instead, whose line checkpoints carry under the 国密 "
        "profile (casebus's own vkey form, 0xff || OID || point; or PEM with --pem).",
    ),
) -> None:
    """Print the log's verifier key (C2SP vkey), or its public key PEM."""
    settings = load_settings()
    if sm2:
        bus = bus_signer(settings)
        if not isinstance(bus, Sm2Signer):
            raise _fail("the bus key (CASEBUS_BUS_KEY_FILE) is not an SM2 key")
        if pem:
            from bus.sm2 import Sm2PublicKey

            sys.stdout.write(Sm2PublicKey.from_raw(bus.public_key).pem().decode())
        else:
            typer.echo(sm2_verifier_key_string(settings.audit_origin, bus.public_key))
        return
    public = checkpoint_signer(settings).log_key.public_key()
    if pem:
        sys.stdout.write(
            public.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ).decode()
        )
    else:
        typer.echo(verifier_key_string(settings.audit_origin, public))


@app.command("monitor")
def monitor_cmd(
    log_key: Path | None = typer.Option(
        None,
        "--log-key",
        exists=True,
        dir_okay=False,
        help="The log's public key (PEM); default: the bus key.",
    ),
    bus_key: Path | None = typer.Option(
        None,
        "--bus-key",
        exists=True,
        dir_okay=False,
        help=_BUS_KEY_HELP + " Default: the registry's sm2-sm3 keys of casebus, read at each head.",
    ),
    agency: str = typer.Option("ygh.procuratorate", help="Whose inbox carries the tree heads."),
    metrics_port: int | None = typer.Option(None, "--metrics-port"),
    witness: list[str] | None = _WITNESS_KEYS,
    quorum: int | None = _QUORUM,
) -> None:
    """Follow audit.tree_head messages and check each against the ones seen before; a split
    view or a rewritten history raises an alarm (log event, metric, monitor_alarms row)."""
    settings = load_settings()
    key = _public_key(log_key, settings)
    sm2_keys = _bus_sm2_key(bus_key)
    witnesses, quorum = _witnesses_held_to(settings, witness, quorum)
    port = metrics_port or settings.metrics_port
    if port:
        start_http_server(port, addr="127.0.0.1")

    async def go() -> None:
        pool = await create_pool(settings.for_service("monitor").database_url, max_size=4)
        reader = await create_pool(settings.for_service("procuratorate").database_url, max_size=2)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            await run_monitor(
                settings,
                pool=pool,
                log_key=key,
                proofs=DatabaseProofSource(reader),
                agency_id=agency,
                stop_event=stop,
                witnesses=witnesses,
                quorum=quorum,
                sm2_keys=sm2_keys,
            )
        finally:
            await reader.close()
            await pool.close()

    asyncio.run(go())
