"""One settings object for every casebus service, read from ``CASEBUS_*`` variables."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bus.errors import ConfigError
from bus.secret_files import read_secret_file

__all__ = [
    "KAFKA_FETCH_MAX_WAIT_MS",
    "REPO_ROOT",
    "ROUTER_LINGER_BELOW",
    "SaslMechanism",
    "SecurityProtocol",
    "Service",
    "Settings",
    "SubmitTopics",
    "load_settings",
]

REPO_ROOT = Path(__file__).resolve().parents[1]
"""The checkout this package runs from; default data files live under ``deploy/`` here."""

SecurityProtocol = Literal["PLAINTEXT", "SASL_SSL"]
"""How clients reach Kafka: plaintext (the local development broker) or SASL over TLS."""
SaslMechanism = Literal["SCRAM-SHA-512", "SCRAM-SHA-256"]
"""The SASL mechanisms casebus supports; the deployments use SCRAM-SHA-512."""
SubmitTopics = Literal["shared", "per_agency"]
"""One ``<prefix>.submit`` for every party, or one ``<prefix>.submit.<agency>`` per party."""
Service = Literal["router", "sla", "adapter", "procuratorate_adapter", "monitor", "procuratorate"]
"""A kind of process with a PostgreSQL role of its own (``CASEBUS_<SERVICE>_DATABASE_URL``)."""

KAFKA_FETCH_MAX_WAIT_MS = 5000
"""How long the broker holds an inbox reader's fetch when nothing new is there (aiokafka's
default is 500). A record, or a transaction's commit marker, answers the fetch at once, so only
an idle reader's requests drop: from ~2 a second to one in five seconds. Not for a consumer that
seeks (the router rewinding): its next fetch waits for the one in flight."""

ROUTER_LINGER_BELOW = 8
"""A router batch of fewer records than this (a lightly loaded bus) makes the router linger
``router_linger_ms`` before its next fetch."""

# Which variable each SASL_SSL requirement is, in the order an operator would set them.
_SASL_NEEDS = ("kafka_sasl_username", "kafka_sasl_password_file", "kafka_ca_file")

_TOPIC_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


class Settings(BaseSettings):
    """Every knob of casebus. Each field is the env var ``CASEBUS_<FIELD NAME>``."""

    model_config = SettingsConfigDict(env_prefix="CASEBUS_", extra="ignore", frozen=True)

    kafka_bootstrap: str = Field(
        "127.0.0.1:19092", description="Kafka bootstrap servers, comma-separated host:port."
    )
    database_url: str = Field(
        "postgresql://casebus@127.0.0.1:15432/casebus",
        description="PostgreSQL DSN of the role that owns the tables: migrations and operator "
        "commands. A service uses its own DSN below when one is set.",
    )
    router_database_url: str | None = Field(
        None, description="The router's DSN: a login in role casebus_router (migration 0009)."
    )
    sla_database_url: str | None = Field(
        None, description="The SLA engine's DSN: a login in role casebus_sla."
    )
    adapter_database_url: str | None = Field(
        None,
        description="The department adapters' DSN: a login in role casebus_adapter. Their "
        "agencies' keys are the operator's to register (`casebus agency key add`).",
    )
    procuratorate_adapter_database_url: str | None = Field(
        None,
        description="The procuratorate adapter's DSN: a login in role "
        "casebus_procuratorate_adapter (casebus_adapter's grants, and it reads and appends "
        "to the audit log).",
    )
    monitor_database_url: str | None = Field(
        None, description="The audit monitor's DSN: a login in role casebus_monitor."
    )
    procuratorate_database_url: str | None = Field(
        None,
        description="Read-only DSN (role casebus_procuratorate_ro) for checking the audit "
        "log: `casebus audit verify` uses it.",
    )
    topic_prefix: str = Field(
        "casebus", description="Prefix of every topic: <prefix>.submit, .dead, .inbox.<agency>."
    )
    topic_partitions: int = Field(6, ge=1, le=1000, description="Partitions of each new topic.")
    topic_replication: int = Field(1, ge=1, le=16, description="Replication factor of new topics.")
    agencies_file: Path = Field(
        REPO_ROOT / "deploy" / "agencies.yaml", description="The agency registry file."
    )
    log_format: Literal["json", "console"] = Field("json", description="Log rendering.")
    log_level: Literal["debug", "info", "warning", "error"] = Field("info")
    checkpoint_interval_s: float = Field(5.0, gt=0, description="Seconds between checkpoints.")
    audit_origin: str = Field(
        "casebus.local/audit",
        description="The audit log's C2SP origin line, also the name of its signing key.",
    )
    audit_witnesses: str = Field(
        "",
        description="Witnesses that must cosign a checkpoint before the router publishes it, "
        "space-separated '<submission URL>=<cosigner vkey>' (c2sp.org/tlog-witness); empty: "
        "checkpoints are published unwitnessed.",
    )
    audit_witness_quorum: int | None = Field(
        None, ge=1, description="How many of CASEBUS_AUDIT_WITNESSES must cosign; default all."
    )
    audit_witness_fail_closed_after_s: float | None = Field(
        None,
        gt=0,
        description="Refuse new submissions (nack log_unwitnessed) once checkpoints have waited "
        "this long for a quorum of CASEBUS_AUDIT_WITNESSES; default never (fail open, alerted: "
        "see bus/router/witnessed.py for why).",
    )
    bus_key_file: Path = Field(
        REPO_ROOT / ".casebus" / "keys" / "casebus.key.pem",
        description="The bus's own private key (agency 'casebus'): receipts and checkpoints; "
        "Ed25519 or SM2 as the PEM says.",
    )
    audit_log_key_file: Path | None = Field(
        None,
        description="The audit log's Ed25519 key, which signs its C2SP checkpoints (the note "
        "signature witnesses and Go's note package check); default: the bus key, which must then "
        "be Ed25519. Required when the bus key is SM2 (the sm2 profile): checkpoints then carry "
        "this key's line and a second, SM2 line made with the bus key.",
    )
    crypto_profile: Literal["ed25519", "sm2"] = Field(
        "ed25519",
        description="The deployment's crypto profile: the algorithm of the keys casebus makes "
        "(agency keys, the bus's own, the demo's): ed25519, or sm2 for SM2 signatures over SM3 "
        "(GB/T 32918, GB/T 32905). Keys already registered keep their own algorithm; each key "
        "in the registry names it.",
    )
    router_id: str = Field(
        "router-0", description="This router replica's stable id (its Kafka transactional id)."
    )
    router_max_batch: int = Field(500, ge=1, le=10_000, description="Records per router batch.")
    router_linger_ms: int = Field(
        50,
        ge=0,
        le=1_000,
        description=f"After a batch of fewer than {ROUTER_LINGER_BELOW} records (a lightly "
        "loaded bus), how long the router lets records gather before it fetches the next; "
        "busier, batches are larger "
        "and nothing waits. Each batch costs a Kafka transaction and "
        "an audit-log transaction whatever its size; at a light load, batches of one or two "
        "records made those most of the router's CPU, and Kafka's (deploy/CAPACITY.md §8.7). "
        "It adds up to this much to a message's latency when the bus is lightly loaded. 0: "
        "fetch at once.",
    )
    router_transaction_timeout_s: float = Field(
        15.0,
        ge=1,
        le=900,
        description="How long the broker keeps a router's transaction open before aborting it. "
        "A router killed mid-batch that does not come back under its id holds its partitions' "
        "read_committed readers this long (Kafka's default is 60 s).",
    )
    router_hanging_offsets_after_s: float = Field(
        30.0,
        ge=0.5,
        le=3600,
        description="How long a submit partition's committed offset may stay pending, with no "
        "transaction of this router's own ending, before the router settles a hanging "
        "transaction of its own producer id there (bus.router.hanging). Longer than the "
        "transaction timeout, so that no live transaction is still open by then.",
    )
    router_retry_backoff_ms: int = Field(
        20,
        ge=1,
        le=10_000,
        description="The router's Kafka producer's retry backoff. A transaction begun right "
        "after the last one committed is refused (CONCURRENT_TRANSACTIONS) until the broker "
        "has written the last one's markers, and waits this long before asking again; "
        "aiokafka's default of 100 ms put the router's p99 latency at 150-250 ms.",
    )
    router_txn_start_retry_ms: float = Field(
        5,
        gt=0,
        le=1_000,
        description="How soon the router asks again when the first partition of a new "
        "transaction is refused because the last one's markers are still being written. "
        "aiokafka waits a fixed 20 ms there (not the retry backoff); at 500 msgs/s that wait "
        "was the rest of the router's p99.",
    )
    router_max_record_bytes: int = Field(
        768 * 1024,
        ge=4096,
        le=1_000_000,
        description="The largest submitted record (key, value and headers) the router routes. "
        "A larger one is refused up front with `too_large` naming this limit: it is audited "
        "and dead-lettered as its SHA-256, its size and a prefix, its full bytes kept in "
        "PostgreSQL (dead_letter_bodies). The limit leaves room under Kafka's 1 MiB default "
        "for the headers the router adds; above it a delivery could not be written at all.",
    )
    attachment_max_bytes: int = Field(
        512 * 1024 * 1024,
        ge=1,
        le=2**40,
        description="The largest attachment an adapter takes (POST /v1/attachments); a larger "
        "upload is refused with 413 and leaves nothing stored.",
    )
    attachment_chunk_bytes: int = Field(
        1024 * 1024,
        ge=4096,
        le=64 * 1024 * 1024,
        description="Size of the chunks the PostgreSQL attachment store keeps a file in: "
        "what an upload or a download holds in memory at a time.",
    )
    attachment_store: Literal["postgres", "s3"] = Field(
        "postgres",
        description="Where case files are kept: 'postgres' (chunks in the bus's database, the "
        "default) or 's3' (any S3-compatible object store; CASEBUS_ATTACHMENT_S3_*).",
    )
    attachment_s3_endpoint: str | None = Field(
        None, description="The S3 endpoint URL, e.g. https://s3.example:9000 (path-style)."
    )
    attachment_s3_bucket: str = Field("casebus-attachments", description="The S3 bucket.")
    attachment_s3_region: str = Field("us-east-1", description="The S3 region (SigV4 scope).")
    attachment_s3_access_key: str | None = Field(None, description="The S3 access key id.")
    attachment_s3_secret_key_file: Path | None = Field(
        None,
        description="File holding the S3 secret key, read at start; never a setting itself.",
    )
    attachment_retention_file: Path = Field(
        REPO_ROOT / "deploy" / "attachment-retention.yaml",
        description="The attachment retention policy: how long a case file is kept after a "
        "message of each kind referred to it, and the grace period of an upload no message "
        "referred to (`casebus attachments sweep` deletes what it no longer protects).",
    )
    metrics_port: int | None = Field(
        None, ge=1, le=65535, description="Serve Prometheus metrics on this port, if set."
    )
    clock: str = Field(
        "real", description="'real', or 'accelerated:<start ISO 8601>:<rate>' for drills."
    )
    kafka_security_protocol: SecurityProtocol = Field(
        "PLAINTEXT", description="PLAINTEXT (local development) or SASL_SSL."
    )
    kafka_sasl_mechanism: SaslMechanism = Field(
        "SCRAM-SHA-512", description="The SASL mechanism of SASL_SSL."
    )
    kafka_sasl_username: str | None = Field(
        None, description="This service's Kafka user (its principal); SASL_SSL only."
    )
    kafka_sasl_password_file: Path | None = Field(
        None,
        description="File holding that user's password, read when a client is made; the "
        "password itself is never a setting, so it shows in no repr and no log.",
    )
    kafka_ca_file: Path | None = Field(
        None, description="PEM file of the CA that signed the brokers' certificates (SASL_SSL)."
    )
    submit_topics: SubmitTopics = Field(
        "shared",
        description="'shared': every party writes <prefix>.submit. 'per_agency': each writes "
        "<prefix>.submit.<agency>, which Kafka ACLs let only that agency's principal write, "
        "so the router can hold the envelope's sender to the principal that sent it.",
    )
    routing_policy_file: Path = Field(
        REPO_ROOT / "deploy" / "routing.yaml",
        description="The routing policy: who may send which message kind to whom.",
    )
    sla_policies_file: Path = Field(
        REPO_ROOT / "deploy" / "sla-policies.yaml",
        description="The deadline policies: read by the SLA engine and by the adapters that "
        "check the same deadlines at submission, so both always count from one file.",
    )
    sla_holidays_override_file: Path | None = Field(
        REPO_ROOT / "deploy" / "holidays-override.yaml",
        description="Holidays for years chinesecalendar does not know (a missing file: none).",
    )
    sla_key_file: Path = Field(
        REPO_ROOT / ".casebus" / "keys" / "casebus.sla.key.pem",
        description="The SLA engine's Ed25519 private key (agency casebus.sla).",
    )
    # What only one command reads: each is also that command's flag, which overrides it.
    state_dir: Path = Field(
        REPO_ROOT / ".casebus",
        description="The local state folder (deploy/local's); `casebus demo` keeps its "
        "witnesses' SQLite stores under <state_dir>/witnesses.",
    )
    schema_dir: Path | None = Field(
        None,
        description="Folder of <kind>/v<N>.avsc files `casebus schemas check` checks; "
        "default: the installed schemas/.",
    )
    console_port: int = Field(8088, ge=0, le=65535, description="The ops console's port.")
    audit_witness_keys: str = Field(
        "",
        description="Cosigner vkeys of the witnesses `casebus audit verify` and `monitor` hold "
        "the log to, space-separated; empty: none.",
    )
    audit_quorum: int | None = Field(
        None, ge=1, description="How many of CASEBUS_AUDIT_WITNESS_KEYS must cosign; default all."
    )
    audit_witness_grace_s: float = Field(
        60.0,
        ge=0,
        description="`casebus audit verify`: a checkpoint older than this must be covered by "
        "a cosigned one.",
    )
    witness_name: str | None = Field(
        None, description="`casebus witness`: its name in cosignatures (ygh.court/witness)."
    )
    witness_key_file: Path | None = Field(
        None, description="`casebus witness`: its Ed25519 private key (PKCS#8 PEM, mode 0600)."
    )
    witness_logs: str = Field(
        "",
        description="`casebus witness serve`: the verifier keys of the logs it witnesses, "
        "space-separated.",
    )
    witness_db: Path = Field(
        Path("witness.sqlite"), description="`casebus witness serve`: its own SQLite store."
    )
    witness_host: str = Field("127.0.0.1", description="`casebus witness serve` listens here.")
    witness_port: int = Field(
        7380, ge=0, le=65535, description="`casebus witness serve` listens on this port."
    )
    adapter_key_dir: Path = Field(
        REPO_ROOT / ".casebus" / "keys",
        description="`casebus adapter`: holds <agency>.key.pem (and <agency>.webhook-secret).",
    )
    adapter_host: str = Field("127.0.0.1", description="`casebus adapter` listens here.")
    adapter_port: int = Field(
        8080, ge=0, le=65535, description="`casebus adapter` listens on this port."
    )
    adapter_max_body_bytes: int = Field(
        1024 * 1024, ge=1, description="The largest request body an adapter reads."
    )
    adapter_max_wait_s: float = Field(
        300.0, gt=0, description="An adapter alerts when a message waits longer for its department."
    )

    @field_validator("topic_prefix")
    @classmethod
    def _legal_topic_prefix(cls, value: str) -> str:
        if not value or not set(value) <= _TOPIC_CHARS:
            raise ValueError("must be non-empty and use only letters, digits, '.', '_' and '-'")
        return value

    @field_validator("kafka_bootstrap")
    @classmethod
    def _host_ports(cls, value: str) -> str:
        for part in value.split(","):
            host, sep, port = part.strip().rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ValueError(f"{part!r} is not host:port")
        return value

    @field_validator(
        "database_url",
        "router_database_url",
        "sla_database_url",
        "adapter_database_url",
        "procuratorate_adapter_database_url",
        "monitor_database_url",
        "procuratorate_database_url",
    )
    @classmethod
    def _postgres_dsn(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("must start with postgresql://")
        return value

    def for_service(self, service: Service) -> Self:
        """These settings as ``service`` connects: ``database_url`` becomes its own DSN when
        ``CASEBUS_<SERVICE>_DATABASE_URL`` is set (a role that may not alter or truncate any
        table), else stays the owner's."""
        own: str | None = getattr(self, f"{service}_database_url")
        return self if own is None else self.model_copy(update={"database_url": own})

    @model_validator(mode="after")
    def _s3_complete(self) -> Self:
        if self.attachment_store == "s3":
            names = [
                "attachment_s3_endpoint",
                "attachment_s3_access_key",
                "attachment_s3_secret_key_file",
            ]
            missing = [f"CASEBUS_{n.upper()}" for n in names if not getattr(self, n)]
            if missing:
                raise ValueError(f"CASEBUS_ATTACHMENT_STORE=s3 needs {', '.join(missing)}")
        return self

    @model_validator(mode="after")
    def _sasl_complete(self) -> Self:
        problem = self._sasl_missing() or self._sasl_without_protocol()
        if problem:
            raise ValueError(problem)
        return self

    def _sasl_without_protocol(self) -> str | None:
        """A SASL or TLS setting under PLAINTEXT: a half-configured client must not quietly
        connect in plaintext, so the variables that were set are named with the one missing."""
        if self.kafka_security_protocol != "PLAINTEXT":
            return None
        given = [n for n in _SASL_NEEDS if getattr(self, n) is not None]
        if "kafka_sasl_mechanism" in self.model_fields_set:
            given.append("kafka_sasl_mechanism")
        if not given:
            return None
        names = ", ".join(f"CASEBUS_{n.upper()}" for n in given)
        return (
            f"{names} set but CASEBUS_KAFKA_SECURITY_PROTOCOL is PLAINTEXT (unset or so set): "
            "set CASEBUS_KAFKA_SECURITY_PROTOCOL=SASL_SSL, or unset them; casebus never falls "
            "back to plaintext"
        )

    def _sasl_missing(self) -> str | None:
        if self.kafka_security_protocol != "SASL_SSL":
            return None
        missing = [f"CASEBUS_{n.upper()}" for n in _SASL_NEEDS if not getattr(self, n)]
        if not missing:
            return None
        return f"CASEBUS_KAFKA_SECURITY_PROTOCOL=SASL_SSL needs {', '.join(missing)}"

    def to_env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """The ``CASEBUS_*`` variables under which :func:`load_settings` in a child process
        gives settings equal to these; with ``base`` (``os.environ``), its other variables
        too, its own ``CASEBUS_*`` dropped. Every setting is a scalar, a file's path rather
        than a secret, so its text is its value; one left unset (None) is not written."""
        env = {k: v for k, v in (base or {}).items() if not k.upper().startswith("CASEBUS_")}
        for name, field in type(self).model_fields.items():
            value = getattr(self, name)
            # Only what was set or differs: a variable given is not a default (for example
            # CASEBUS_KAFKA_SASL_MECHANISM under PLAINTEXT is refused, and the CLI lets an
            # unset CASEBUS_LOG_FORMAT choose by the terminal).
            if value is None or (name not in self.model_fields_set and value == field.default):
                continue
            env[f"CASEBUS_{name.upper()}"] = str(value)
        return env

    def topic_submit(self, sender: str | None = None) -> str:
        """The topic ``sender`` writes to: ``<prefix>.submit``, or with per-agency submit
        topics ``<prefix>.submit.<sender>`` (then ``sender`` is required)."""
        if self.submit_topics == "shared":
            return f"{self.topic_prefix}.submit"
        if not sender:
            raise ConfigError(
                "CASEBUS_SUBMIT_TOPICS=per_agency: each sender has its own submit topic; "
                "name the sender"
            )
        return f"{self.topic_prefix}.submit.{sender}"

    def topics_submit(self, senders: Iterable[str]) -> list[str]:
        """Every submit topic of this mode for ``senders``: what the router reads."""
        if self.submit_topics == "shared":
            return [self.topic_submit()]
        return [self.topic_submit(s) for s in senders]

    def topic_dead(self) -> str:
        """Where undecodable or invalid messages go, with their reason."""
        return f"{self.topic_prefix}.dead"

    def topic_inbox(self, agency_id: str) -> str:
        """The inbox topic of one agency."""
        return f"{self.topic_prefix}.inbox.{agency_id}"

    def kafka_client_options(self) -> dict[str, Any]:
        """Keyword arguments for every aiokafka producer, consumer and admin client: the
        bootstrap servers and, with SASL_SSL, the credentials and the TLS context.

        The password is read from ``CASEBUS_KAFKA_SASL_PASSWORD_FILE`` now, on each call, so a
        rotated secret takes effect on the next client; the result holds it, so never log it.
        """
        # Here, not at the top: bus.acl imports bus.routing, which imports this module.
        from bus.acl import client_security

        options: dict[str, Any] = {"bootstrap_servers": self.kafka_bootstrap}
        # model_copy(update=...) skips the validators: check again before any connection.
        half = self._sasl_without_protocol()
        if half:
            raise ConfigError(half)
        if self.kafka_security_protocol == "PLAINTEXT":
            return options
        path = self.kafka_sasl_password_file
        missing = self._sasl_missing()
        if missing or path is None:
            raise ConfigError(missing or "CASEBUS_KAFKA_SASL_PASSWORD_FILE is not set")
        where = f"CASEBUS_KAFKA_SASL_PASSWORD_FILE={str(path)!r}"
        try:
            secret = read_secret_file(
                path,
                what="Kafka password file",
                leak=f"anyone could connect as {self.kafka_sasl_username}",
            )
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from e
        password = secret.decode("utf-8").strip()
        if not password:
            raise ConfigError(f"{where}: the file is empty")
        try:
            security = client_security(
                protocol=self.kafka_security_protocol,
                mechanism=self.kafka_sasl_mechanism,
                username=self.kafka_sasl_username,
                password=password,
                ca_file=self.kafka_ca_file,
            )
        except ConfigError as e:  # all else was checked above: the CA file is what failed
            raise ConfigError(f"CASEBUS_KAFKA_CA_FILE: {e}") from e
        return options | security


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment; a bad value raises ConfigError naming the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as e:
        lines = []
        for err in e.errors():
            field = ".".join(str(p) for p in err["loc"])
            if not field:  # a rule across fields: its message names the variables itself
                lines.append(str(err["msg"]).removeprefix("Value error, "))
                continue
            lines.append(f"CASEBUS_{field.upper()}={err.get('input')!r}: {err['msg']}")
        raise ConfigError("invalid settings: " + "; ".join(lines)) from e
