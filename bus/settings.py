"""One settings object for every casebus service, read from ``CASEBUS_*`` variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bus.errors import ConfigError

__all__ = ["REPO_ROOT", "Settings", "load_settings"]

REPO_ROOT = Path(__file__).resolve().parents[1]
"""The checkout this package runs from; default data files live under ``deploy/`` here."""

_TOPIC_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


class Settings(BaseSettings):
    """Every knob of casebus. Each field is the env var ``CASEBUS_<FIELD NAME>``."""

    model_config = SettingsConfigDict(env_prefix="CASEBUS_", extra="ignore", frozen=True)

    kafka_bootstrap: str = Field(
        "127.0.0.1:19092", description="Kafka bootstrap servers, comma-separated host:port."
    )
    database_url: str = Field(
        "postgresql://casebus@127.0.0.1:15432/casebus", description="PostgreSQL DSN."
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
    bus_key_file: Path = Field(
        REPO_ROOT / ".casebus" / "keys" / "casebus.key.pem",
        description="The bus's own Ed25519 private key (agency 'casebus'): checkpoints, receipts.",
    )
    router_id: str = Field(
        "router-0", description="This router replica's stable id (its Kafka transactional id)."
    )
    router_max_batch: int = Field(500, ge=1, le=10_000, description="Records per router batch.")
    metrics_port: int | None = Field(
        None, ge=1, le=65535, description="Serve Prometheus metrics on this port, if set."
    )
    clock: str = Field(
        "real", description="'real', or 'accelerated:<start ISO 8601>:<rate>' for drills."
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

    @field_validator("database_url")
    @classmethod
    def _postgres_dsn(cls, value: str) -> str:
        if not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("must start with postgresql://")
        return value

    def topic_submit(self) -> str:
        """The one topic every party writes to."""
        return f"{self.topic_prefix}.submit"

    def topic_dead(self) -> str:
        """Where undecodable or invalid messages go, with their reason."""
        return f"{self.topic_prefix}.dead"

    def topic_inbox(self, agency_id: str) -> str:
        """The inbox topic of one agency."""
        return f"{self.topic_prefix}.inbox.{agency_id}"


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment; a bad value raises ConfigError naming the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as e:
        lines = []
        for err in e.errors():
            field = ".".join(str(p) for p in err["loc"])
            lines.append(f"CASEBUS_{field.upper()}={err.get('input')!r}: {err['msg']}")
        raise ConfigError("invalid settings: " + "; ".join(lines)) from e
