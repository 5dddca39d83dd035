"""``casebus acl``: Kafka ACLs derived from the agency registry and the routing policy."""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer

from bus.acl import AclPlan, plan_acls, render_json, render_strimzi_users, render_text
from bus.agencies import load_registry
from bus.errors import ConfigError, TransportError
from bus.kafka_acl import AclChanges, apply_acls
from bus.routing import DEFAULT_POLICY_PATH, load_policy
from bus.settings import Settings, load_settings

app = typer.Typer(help="Kafka ACLs.", no_args_is_help=True)


async def reconcile(plan: AclPlan, settings: Settings, *, dry_run: bool = False) -> AclChanges:
    """Reconcile the cluster at ``settings`` with ``plan`` as the super user they name."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**settings.kafka_client_options())
    try:
        await admin.start()
        return await apply_acls(plan, admin=admin, dry_run=dry_run)
    finally:
        await admin.close()


def _plan(settings: Settings, policy_file: Path) -> AclPlan:
    """The ACL plan for the registry ``settings`` name and the policy in ``policy_file``."""
    registry = load_registry(settings.agencies_file)
    return plan_acls(
        registry,
        load_policy(policy_file, registry),
        prefix=settings.topic_prefix,
        submit_topics=settings.submit_topics,
    )


@app.command("plan")
def plan_cmd(
    policy_file: Path = typer.Option(
        DEFAULT_POLICY_PATH, "--policy", help="The routing policy file."
    ),
    fmt: str = typer.Option(
        "text", "--format", help="text | json | strimzi (KafkaUser manifests)."
    ),
    cluster: str = typer.Option("casebus", "--cluster", help="Strimzi Kafka cluster name."),
    namespace: str = typer.Option("casebus", "--namespace", help="Kubernetes namespace."),
) -> None:
    """Print every ACL binding, per principal; changes nothing."""
    if fmt not in ("text", "json", "strimzi"):
        typer.echo(f"--format {fmt!r}: choose text, json or strimzi", err=True)
        raise typer.Exit(2)
    settings = load_settings()
    try:
        plan = _plan(settings, policy_file)
    except ConfigError as e:
        typer.echo(str(e), err=True)
        raise typer.Exit(2) from e
    if fmt == "json":
        typer.echo(render_json(plan), nl=False)
    elif fmt == "strimzi":
        typer.echo(render_strimzi_users(plan, cluster=cluster, namespace=namespace), nl=False)
    else:
        typer.echo(render_text(plan), nl=False)


@app.command("apply")
def apply_cmd(
    policy_file: Path = typer.Option(
        DEFAULT_POLICY_PATH, "--policy", help="The routing policy file."
    ),
    protocol: str | None = typer.Option(
        None,
        "--security-protocol",
        help="PLAINTEXT | SASL_SSL (default CASEBUS_KAFKA_SECURITY_PROTOCOL when set, else "
        "SASL_SSL).",
    ),
    username: str | None = typer.Option(
        None, "--username", help="A super user (default CASEBUS_KAFKA_SASL_USERNAME)."
    ),
    password_file: Path | None = typer.Option(
        None,
        "--password-file",
        help="File holding that user's password (never pass a password itself); default "
        "CASEBUS_KAFKA_SASL_PASSWORD_FILE.",
    ),
    ca_file: Path | None = typer.Option(
        None, "--ca-file", help="CA that signed the broker (default CASEBUS_KAFKA_CA_FILE)."
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Print the bindings it would add (+) and remove (-); change none."
    ),
) -> None:
    """Make the cluster at CASEBUS_KAFKA_BOOTSTRAP say what the plan says: add its bindings,
    and remove the casebus-managed bindings it no longer has (a removed agency's, say)."""
    if protocol not in (None, "PLAINTEXT", "SASL_SSL"):
        typer.echo(f"--security-protocol {protocol!r}: choose PLAINTEXT or SASL_SSL", err=True)
        raise typer.Exit(2)
    try:
        # The options given override the settings, so both name one client. Changing ACLs
        # takes a super user over SASL_SSL unless the protocol is said to be otherwise.
        flags = {
            "kafka_security_protocol": protocol,
            "kafka_sasl_username": username,
            "kafka_sasl_password_file": password_file,
            "kafka_ca_file": ca_file,
        }
        given = {name: value for name, value in flags.items() if value is not None}
        if protocol is None and "kafka_security_protocol" not in load_settings().model_fields_set:
            given["kafka_security_protocol"] = "SASL_SSL"
        settings = load_settings(**given)
        plan = _plan(settings, policy_file)
        changes = asyncio.run(reconcile(plan, settings, dry_run=dry_run))
    except (ConfigError, TransportError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from e
    for line in changes.lines():
        typer.echo(line)
    counts = f"{len(changes.add)} added, {len(changes.remove)} removed, {changes.kept} unchanged"
    if dry_run:
        typer.echo(f"dry run: would apply {len(plan.bindings())} ACL bindings ({counts})")
    else:
        typer.echo(
            f"applied {len(plan.bindings())} ACL bindings for {len(plan.principals)} principals"
            f" ({counts})"
        )
