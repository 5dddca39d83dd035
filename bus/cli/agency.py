"""``casebus agency``: the agency and key registry in PostgreSQL, and revoking an agency
everywhere (keys, adapter tokens, Kafka ACLs and SCRAM user) once the registry drops it."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import typer

from bus.acl import plan_acls
from bus.agencies import load_registry
from bus.agency_db import (
    add_key,
    agency_keys,
    expire_agency_keys,
    list_agencies,
    revoke_agency,
    revoke_key,
    sync_agencies,
)
from bus.cli.acl import reconcile
from bus.db import connect
from bus.errors import ConfigError, TransportError
from bus.kafka_acl import delete_scram_users
from bus.routing import DEFAULT_POLICY_PATH, load_policy
from bus.settings import Settings, load_settings
from bus.signing import PublicKeyRecord, algorithm_of_profile, write_keypair

app = typer.Typer(help="Agencies and their signing keys.", no_args_is_help=True)
key_app = typer.Typer(help="Public keys of an agency.", no_args_is_help=True)
app.add_typer(key_app, name="key")


def _when(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as e:
        raise typer.BadParameter(f"{value!r} is not ISO 8601", param_hint=option) from e
    if parsed.tzinfo is None:
        raise typer.BadParameter("give a UTC offset, e.g. +08:00", param_hint=option)
    return parsed


def _run(coro: object) -> object:
    try:
        return asyncio.run(coro)  # type: ignore[arg-type]
    except (ConfigError, TransportError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from e


@app.command("sync")
def sync_cmd() -> None:
    """Load the agency registry file into the database (idempotent)."""
    settings = load_settings()
    registry = load_registry(settings.agencies_file)

    async def go() -> None:
        conn = await connect(settings.database_url)
        try:
            r = await sync_agencies(conn, registry)
        finally:
            await conn.close()
        for a in r.inserted:
            typer.echo(f"added   {a}")
        for a in r.updated:
            typer.echo(f"updated {a}")
        for a in r.not_in_file:
            typer.echo(f"kept    {a} (no longer in {settings.agencies_file.name})")
        typer.echo(f"{len(r.inserted)} added, {len(r.updated)} updated, {len(r.unchanged)} same")

    _run(go())


@app.command("list")
def list_cmd() -> None:
    """Every registered agency and how many keys it can sign with now."""
    settings = load_settings()

    async def go() -> None:
        conn = await connect(settings.database_url)
        try:
            rows = await list_agencies(conn, at=datetime.now(UTC))
        finally:
            await conn.close()
        width = max((len(r.agency_id) for r in rows), default=10)
        for r in rows:
            typer.echo(f"{r.agency_id:<{width}}  {r.kind:<13}  keys={r.active_keys}  {r.name}")

    _run(go())


@key_app.command("add")
def key_add_cmd(
    agency: str = typer.Option(..., "--agency", help="Agency id."),
    public_key: Path = typer.Option(..., "--public-key", exists=True, dir_okay=False),
    valid_from: str | None = typer.Option(None, help="ISO 8601 with offset; default now."),
    valid_to: str | None = typer.Option(None, help="ISO 8601 with offset; default open-ended."),
    sm2_id: str | None = typer.Option(
        None,
        "--sm2-id",
        help="For an SM2 key: the signer's distinguishing id, when it is not GM/T 0009's "
        "default 1234567812345678.",
    ),
) -> None:
    """Register a public key (PEM, Ed25519 or SM2: the key says which) for an agency."""
    settings = load_settings()
    try:
        record = PublicKeyRecord.from_pem(
            public_key.read_bytes(),
            agency_id=agency,
            valid_from=_when(valid_from, "--valid-from") or datetime.now(UTC),
            valid_to=_when(valid_to, "--valid-to"),
        )
        if sm2_id is not None:
            record = dataclasses.replace(record, sm2_id=sm2_id.encode("utf-8"))
    except (ConfigError, ValueError) as e:
        typer.echo(str(e), err=True)
        raise typer.Exit(2) from e

    async def go() -> None:
        conn = await connect(settings.database_url)
        try:
            await add_key(conn, record)
        finally:
            await conn.close()
        typer.echo(record.key_id)

    _run(go())


@key_app.command("list")
def key_list_cmd(agency: str = typer.Option(..., "--agency")) -> None:
    """Every key of an agency with its validity."""
    settings = load_settings()

    async def go() -> None:
        conn = await connect(settings.database_url)
        try:
            keys = await agency_keys(conn, agency)
        finally:
            await conn.close()
        for k in keys:
            until = k.valid_to.isoformat() if k.valid_to else "open"
            revoked = f" revoked {k.revoked_at.isoformat()}" if k.revoked_at else ""
            typer.echo(f"{k.key_id}  {k.algorithm}  {k.valid_from.isoformat()} .. {until}{revoked}")

    _run(go())


@key_app.command("revoke")
def key_revoke_cmd(
    key_id: str = typer.Argument(...),
    at: str | None = typer.Option(None, help="ISO 8601 with offset; default now."),
) -> None:
    """Revoke a key: signatures checked from then on are refused with reason revoked_key."""
    settings = load_settings()
    when = _when(at, "--at") or datetime.now(UTC)

    async def go() -> None:
        conn = await connect(settings.database_url)
        try:
            record = await revoke_key(conn, key_id, at=when)
        finally:
            await conn.close()
        assert record.revoked_at is not None
        typer.echo(f"revoked {record.key_id} at {record.revoked_at.isoformat()}")

    _run(go())


@key_app.command("rotate")
def key_rotate_cmd(
    agency: str = typer.Option(..., "--agency"),
    out: Path = typer.Option(..., "--out", help="Folder for the new key pair."),
    overlap_days: float = typer.Option(7.0, min=0, help="How long the old keys still verify."),
    alg: str | None = typer.Option(
        None, "--alg", help="ed25519 or sm2; default the crypto profile (CASEBUS_CRYPTO_PROFILE)."
    ),
) -> None:
    """Make a new key pair, register it, and end the agency's older keys after an overlap.

    Rotating to ``--alg sm2`` is how an agency moves to the 国密 profile: its Ed25519 keys keep
    verifying what they signed until the overlap ends."""
    settings = load_settings()
    try:
        algorithm = algorithm_of_profile(alg or settings.crypto_profile)
    except ConfigError as e:
        typer.echo(str(e), err=True)
        raise typer.Exit(2) from e
    now = datetime.now(UTC)
    # Generate beside the live key and move it in only once registered: a failed rotation
    # leaves the service's current key file untouched.
    staging = out / f".rotate-{now.strftime('%Y%m%dT%H%M%S%f')}"
    files = write_keypair(agency, staging, algorithm=algorithm)
    record = PublicKeyRecord.from_pem(
        files.public_key.read_bytes(), agency_id=agency, valid_from=now
    )

    async def go() -> None:
        conn = await connect(settings.database_url)
        try:
            async with conn.transaction():
                await add_key(conn, record)
                ended = await expire_agency_keys(
                    conn, agency, valid_to=now + timedelta(days=overlap_days), keep=record.key_id
                )
        finally:
            await conn.close()
        for f in (files.private_key, files.public_key):
            os.replace(f, out / f.name)
        staging.rmdir()
        typer.echo(f"new key {record.key_id} in {out / files.private_key.name}")
        for k in ended:
            typer.echo(f"old key {k} verifies until {(now + timedelta(days=overlap_days))}")

    _run(go())


@app.command("revoke")
def revoke_cmd(
    agency: str = typer.Argument(..., help="The agency id, already removed from the registry."),
    kafka: bool = typer.Option(
        True,
        "--kafka/--no-kafka",
        help="Also reconcile the Kafka ACLs and delete the agency's SCRAM user, as the super "
        "user CASEBUS_KAFKA_* name (--no-kafka where Strimzi KafkaUsers hold them).",
    ),
    policy_file: Path = typer.Option(
        DEFAULT_POLICY_PATH, "--policy", help="The routing policy file."
    ),
) -> None:
    """Shut every door of an agency the registry file no longer lists: its keys are revoked
    (its signatures refused), its adapter API tokens revoked, its Kafka ACLs removed and its
    SCRAM user deleted. Safe to run again."""
    settings = load_settings()
    registry = load_registry(settings.agencies_file)
    if registry.get(agency) is not None:
        typer.echo(
            f"error: {agency} is still in {settings.agencies_file}: access ends when the "
            "registry says so; remove it there first, then run this again",
            err=True,
        )
        raise typer.Exit(1)

    async def go() -> None:
        conn = await connect(settings.database_url)
        try:
            done = await revoke_agency(conn, agency, at=datetime.now(UTC))
        finally:
            await conn.close()
        typer.echo(f"keys revoked: {len(done.keys)} {' '.join(done.keys)}".rstrip())
        typer.echo(f"adapter tokens revoked: {done.tokens}")
        if not kafka:
            return
        plan = plan_acls(
            registry,
            load_policy(policy_file, registry),
            prefix=settings.topic_prefix,
            submit_topics=settings.submit_topics,
        )
        changes = await reconcile(plan, settings)
        for line in changes.lines():
            typer.echo(line)
        typer.echo(f"Kafka ACL bindings removed: {len(changes.remove)}")
        users = await _delete_user(settings, agency)
        typer.echo(f"Kafka SCRAM user deleted: {agency if users else 'none was left'}")

    _run(go())


async def _delete_user(settings: Settings, agency: str) -> list[str]:
    """Delete ``agency``'s SCRAM user as the super user ``settings`` name."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**settings.kafka_client_options())
    try:
        await admin.start()
        return await delete_scram_users(admin, [agency], mechanism=settings.kafka_sasl_mechanism)
    finally:
        await admin.close()
