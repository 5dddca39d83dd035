"""Settings: a bad value names its variable, on the API and on the command line."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from securekit import self_signed_ca

from bus.errors import ConfigError
from bus.settings import Settings, load_settings


def test_bad_values_are_reported_with_every_variable_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CASEBUS_TOPIC_PARTITIONS", "many")
    monkeypatch.setenv("CASEBUS_KAFKA_BOOTSTRAP", "no-port-here")
    monkeypatch.setenv("CASEBUS_AUDIT_WITNESS_FAIL_CLOSED_AFTER_S", "0")
    with pytest.raises(ConfigError) as info:
        load_settings()
    text = str(info.value)
    assert "CASEBUS_TOPIC_PARTITIONS='many'" in text
    assert "CASEBUS_KAFKA_BOOTSTRAP='no-port-here'" in text
    assert "CASEBUS_AUDIT_WITNESS_FAIL_CLOSED_AFTER_S='0'" in text


def test_topic_names_follow_the_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CASEBUS_TOPIC_PREFIX", "drill")
    s = load_settings()
    assert (s.topic_submit(), s.topic_dead(), s.topic_inbox("ygh.court")) == (
        "drill.submit",
        "drill.dead",
        "drill.inbox.ygh.court",
    )


def test_cli_exits_2_naming_the_bad_variable(casebus_exe: Path) -> None:
    proc = subprocess.run(
        [str(casebus_exe), "db", "migrate"],
        env={"CASEBUS_DATABASE_URL": "mysql://nope", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert "CASEBUS_DATABASE_URL" in proc.stderr


# --- Kafka client security ------------------------------------------------------

_SASL_VARS = (
    "CASEBUS_KAFKA_SASL_USERNAME",
    "CASEBUS_KAFKA_SASL_PASSWORD_FILE",
    "CASEBUS_KAFKA_CA_FILE",
)


@pytest.fixture
def no_kafka_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """A clean slate: the developer's shell may export a secure broker's variables."""
    for name in (*_SASL_VARS, "CASEBUS_KAFKA_SECURITY_PROTOCOL", "CASEBUS_SUBMIT_TOPICS"):
        monkeypatch.delenv(name, raising=False)


def _secure(tmp_path: Path, password: str = "pw-3f9a1c") -> dict[str, object]:
    pw = tmp_path / "kafka.password"
    pw.write_text(password + "\n")
    pw.chmod(0o600)
    return {
        "kafka_security_protocol": "SASL_SSL",
        "kafka_sasl_username": "ygh.police.bureau",
        "kafka_sasl_password_file": pw,
        "kafka_ca_file": self_signed_ca(tmp_path, name="settings test ca"),
    }


@pytest.mark.usefixtures("no_kafka_env")
def test_plaintext_is_the_default_and_gives_only_the_bootstrap_servers() -> None:
    s = load_settings(kafka_bootstrap="10.0.0.1:9092,10.0.0.2:9092")
    assert s.kafka_security_protocol == "PLAINTEXT"
    assert s.kafka_client_options() == {"bootstrap_servers": "10.0.0.1:9092,10.0.0.2:9092"}


@pytest.mark.usefixtures("no_kafka_env")
def test_sasl_ssl_without_credentials_names_every_missing_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CASEBUS_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    with pytest.raises(ConfigError) as info:
        load_settings()
    text = str(info.value)
    assert "CASEBUS_KAFKA_SECURITY_PROTOCOL=SASL_SSL needs" in text
    for name in _SASL_VARS:
        assert name in text
    monkeypatch.setenv("CASEBUS_KAFKA_SASL_USERNAME", "ygh.court")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "CASEBUS_KAFKA_SASL_USERNAME" not in str(info.value)
    assert "CASEBUS_KAFKA_SASL_PASSWORD_FILE, CASEBUS_KAFKA_CA_FILE" in str(info.value)


@pytest.mark.usefixtures("no_kafka_env")
def test_an_unknown_protocol_or_mechanism_names_its_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CASEBUS_KAFKA_SECURITY_PROTOCOL", "SSL")
    monkeypatch.setenv("CASEBUS_KAFKA_SASL_MECHANISM", "PLAIN")
    monkeypatch.setenv("CASEBUS_SUBMIT_TOPICS", "per_kind")
    with pytest.raises(ConfigError) as info:
        load_settings()
    text = str(info.value)
    assert "CASEBUS_KAFKA_SECURITY_PROTOCOL='SSL'" in text
    assert "CASEBUS_KAFKA_SASL_MECHANISM='PLAIN'" in text
    assert "CASEBUS_SUBMIT_TOPICS='per_kind'" in text


@pytest.mark.usefixtures("no_kafka_env")
def test_sasl_ssl_options_carry_the_user_the_password_read_now_and_a_verifying_context(
    tmp_path: Path,
) -> None:
    import ssl

    s = load_settings(**_secure(tmp_path))
    options = s.kafka_client_options()
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "ygh.police.bureau"
    assert options["sasl_plain_password"] == "pw-3f9a1c"
    context = options["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    # A rotated secret is used by the next client, without a restart.
    assert s.kafka_sasl_password_file is not None
    s.kafka_sasl_password_file.write_text("pw-rotated\n")
    assert s.kafka_client_options()["sasl_plain_password"] == "pw-rotated"


@pytest.mark.usefixtures("no_kafka_env")
def test_the_password_is_in_no_repr_dump_or_json_of_the_settings(tmp_path: Path) -> None:
    s = load_settings(**_secure(tmp_path, password="pw-must-not-leak"))
    s.kafka_client_options()  # reading it must not keep it on the settings either
    for text in (repr(s), str(s), s.model_dump_json(), repr(s.model_dump())):
        assert "pw-must-not-leak" not in text
        assert "kafka.password" in text or "kafka_sasl_password_file" in text


@pytest.mark.usefixtures("no_kafka_env")
def test_an_unreadable_or_empty_password_file_or_bad_ca_names_its_variable(
    tmp_path: Path,
) -> None:
    secure = _secure(tmp_path)
    gone = load_settings(**{**secure, "kafka_sasl_password_file": tmp_path / "nope"})
    with pytest.raises(ConfigError, match=r"CASEBUS_KAFKA_SASL_PASSWORD_FILE=.*nope.*cannot open"):
        gone.kafka_client_options()
    (tmp_path / "empty").write_text("\n")
    (tmp_path / "empty").chmod(0o600)
    empty = load_settings(**{**secure, "kafka_sasl_password_file": tmp_path / "empty"})
    with pytest.raises(ConfigError, match=r"CASEBUS_KAFKA_SASL_PASSWORD_FILE=.*empty.*is empty"):
        empty.kafka_client_options()
    (tmp_path / "not-a-ca.crt").write_text("hello\n")
    bad_ca = load_settings(**{**secure, "kafka_ca_file": tmp_path / "not-a-ca.crt"})
    with pytest.raises(ConfigError, match="CASEBUS_KAFKA_CA_FILE"):
        bad_ca.kafka_client_options()


@pytest.mark.usefixtures("no_kafka_env")
def test_a_copy_that_skipped_validation_still_refuses_to_connect_without_credentials() -> None:
    s = load_settings().model_copy(update={"kafka_security_protocol": "SASL_SSL"})
    with pytest.raises(ConfigError, match="CASEBUS_KAFKA_SASL_USERNAME"):
        s.kafka_client_options()


@pytest.mark.usefixtures("no_kafka_env")
def test_sasl_or_tls_settings_without_sasl_ssl_are_refused_naming_the_missing_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secure = _secure(tmp_path)
    env = {
        "CASEBUS_KAFKA_SASL_USERNAME": str(secure["kafka_sasl_username"]),
        "CASEBUS_KAFKA_SASL_PASSWORD_FILE": str(secure["kafka_sasl_password_file"]),
        "CASEBUS_KAFKA_CA_FILE": str(secure["kafka_ca_file"]),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    text = str(info.value)
    assert "CASEBUS_KAFKA_SECURITY_PROTOCOL" in text and "never falls back to plaintext" in text
    for name in _SASL_VARS:
        assert name in text
    # One setting alone is refused, and so is a mechanism named without the protocol.
    for name in _SASL_VARS:
        monkeypatch.delenv(name)
    monkeypatch.setenv("CASEBUS_KAFKA_CA_FILE", env["CASEBUS_KAFKA_CA_FILE"])
    with pytest.raises(ConfigError, match="CASEBUS_KAFKA_CA_FILE set but CASEBUS_KAFKA_SECURITY"):
        load_settings()
    monkeypatch.delenv("CASEBUS_KAFKA_CA_FILE")
    monkeypatch.setenv("CASEBUS_KAFKA_SASL_MECHANISM", "SCRAM-SHA-256")
    with pytest.raises(ConfigError, match="CASEBUS_KAFKA_SASL_MECHANISM set but"):
        load_settings()
    monkeypatch.delenv("CASEBUS_KAFKA_SASL_MECHANISM")
    # A copy that skipped validation does not connect in plaintext either.
    half = load_settings().model_copy(update={"kafka_sasl_username": "ygh.police.bureau"})
    with pytest.raises(ConfigError, match="CASEBUS_KAFKA_SASL_USERNAME set but"):
        half.kafka_client_options()
    # With the protocol named, the same variables make a complete secure client.
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CASEBUS_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    assert load_settings().kafka_client_options()["security_protocol"] == "SASL_SSL"


@pytest.mark.usefixtures("no_kafka_env")
def test_a_password_file_group_or_others_may_read_is_refused_naming_its_mode(
    tmp_path: Path,
) -> None:
    s = load_settings(**_secure(tmp_path, password="pw-must-not-leak"))
    assert s.kafka_sasl_password_file is not None
    s.kafka_sasl_password_file.chmod(0o640)
    with pytest.raises(ConfigError) as info:
        s.kafka_client_options()
    text = str(info.value)
    assert "CASEBUS_KAFKA_SASL_PASSWORD_FILE" in text and "mode 0640" in text
    assert "chmod 600" in text and "pw-must-not-leak" not in text


# --- submit topics ---------------------------------------------------------------------------


@pytest.mark.usefixtures("no_kafka_env")
def test_shared_submit_is_one_topic_whoever_sends() -> None:
    s = load_settings(topic_prefix="drill")
    assert s.submit_topics == "shared"
    assert s.topic_submit() == s.topic_submit("ygh.court") == "drill.submit"
    assert s.topics_submit(["a", "b"]) == ["drill.submit"]


@pytest.mark.usefixtures("no_kafka_env")
def test_per_agency_submit_is_one_topic_per_sender(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CASEBUS_SUBMIT_TOPICS", "per_agency")
    s = load_settings(topic_prefix="drill")
    assert s.topic_submit("casebus.sla") == "drill.submit.casebus.sla"
    assert s.topics_submit(["ygh.court", "casebus.sla"]) == [
        "drill.submit.ygh.court",
        "drill.submit.casebus.sla",
    ]
    with pytest.raises(ConfigError, match="CASEBUS_SUBMIT_TOPICS=per_agency"):
        s.topic_submit()


def test_cli_names_the_missing_sasl_variables(casebus_exe: Path) -> None:
    proc = subprocess.run(
        [str(casebus_exe), "topics", "ensure"],
        env={"CASEBUS_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2, proc.stderr
    for name in _SASL_VARS:
        assert name in proc.stderr


# --- to_env: one Settings -> child-process environment ---------------------------------------

# A value other than the default for every field, of every type a field has (str, int, float,
# Path, Literal, optional ones); the SASL and S3 ones together pass the cross-field rules.
_EVERY_FIELD: dict[str, object] = {
    "kafka_bootstrap": "k1:9092,k2:9092",
    "database_url": "postgresql://owner@db:5432/casebus",
    "router_database_url": "postgresql://router@db:5432/casebus",
    "sla_database_url": "postgresql://sla@db:5432/casebus",
    "adapter_database_url": "postgresql://adapter@db:5432/casebus",
    "procuratorate_adapter_database_url": "postgresql://pa@db:5432/casebus",
    "monitor_database_url": "postgresql://monitor@db:5432/casebus",
    "procuratorate_database_url": "postgresql://ro@db:5432/casebus",
    "topic_prefix": "drill.2",
    "topic_partitions": 12,
    "topic_replication": 3,
    "agencies_file": Path("/etc/casebus/agencies.yaml"),
    "log_format": "console",
    "log_level": "debug",
    "checkpoint_interval_s": 0.25,
    "audit_origin": "example.gov.cn/audit",
    "audit_witnesses": "https://w1/=w1+abc https://w2/=w2+def",
    "audit_witness_quorum": 1,
    "audit_witness_fail_closed_after_s": 1e-3,
    "bus_key_file": Path("/keys/bus.pem"),
    "audit_log_key_file": Path("/keys/log.pem"),
    "crypto_profile": "sm2",
    "router_id": "router-7",
    "router_max_batch": 64,
    "router_linger_ms": 10,
    "router_transaction_timeout_s": 30.5,
    "router_hanging_offsets_after_s": 45.0,
    "router_retry_backoff_ms": 7,
    "router_txn_start_retry_ms": 2.5,
    "router_max_record_bytes": 65536,
    "attachment_max_bytes": 10_000,
    "attachment_chunk_bytes": 8192,
    "attachment_store": "s3",
    "attachment_s3_endpoint": "https://s3.example:9000",
    "attachment_s3_bucket": "cases",
    "attachment_s3_region": "cn-north-1",
    "attachment_s3_access_key": "AKIDEXAMPLE",
    "attachment_s3_secret_key_file": Path("/run/secrets/s3"),
    "attachment_retention_file": Path("retention.yaml"),
    "metrics_port": 9100,
    "clock": "accelerated:2026-03-01T00:00:00+08:00:60",
    "kafka_security_protocol": "SASL_SSL",
    "kafka_sasl_mechanism": "SCRAM-SHA-256",
    "kafka_sasl_username": "router",
    "kafka_sasl_password_file": Path("/run/secrets/kafka"),
    "kafka_ca_file": Path("/run/secrets/ca.pem"),
    "submit_topics": "per_agency",
    "routing_policy_file": Path("/etc/casebus/routing.yaml"),
    "sla_policies_file": Path("/etc/casebus/sla-policies.yaml"),
    "sla_holidays_override_file": Path("/etc/casebus/holidays.yaml"),
    "sla_key_file": Path("/keys/sla.pem"),
    "state_dir": Path("/var/lib/casebus"),
    "schema_dir": Path("/srv/schemas"),
    "console_port": 9088,
    "audit_witness_keys": "w1+abc+AAAA w2+def+BBBB",
    "audit_quorum": 2,
    "audit_witness_grace_s": 120.0,
    "witness_name": "ygh.court/witness",
    "witness_key_file": Path("/keys/witness.pem"),
    "witness_logs": "casebus.local/audit+01234567+AAAA",
    "witness_db": Path("/var/lib/witness.sqlite"),
    "witness_host": "0.0.0.0",
    "witness_port": 17380,
    "adapter_key_dir": Path("/keys"),
    "adapter_host": "0.0.0.0",
    "adapter_port": 18080,
    "adapter_max_body_bytes": 2048,
    "adapter_max_wait_s": 12.5,
}


def _clear_casebus_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("CASEBUS_"):
            monkeypatch.delenv(name)


def test_the_round_trip_table_names_every_setting_with_a_value_not_its_default() -> None:
    # A new field must join the table below, so that its type is round-tripped too.
    assert set(_EVERY_FIELD) == set(Settings.model_fields)
    for name, field in Settings.model_fields.items():
        assert _EVERY_FIELD[name] != field.default, name


def test_to_env_reproduces_every_setting_in_a_child_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _clear_casebus_env(monkeypatch)
    original = load_settings(**_EVERY_FIELD)
    env = original.to_env()
    assert set(env) == {f"CASEBUS_{n.upper()}" for n in _EVERY_FIELD}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert load_settings() == original


def test_to_env_of_defaults_is_empty_and_loads_back_equal(monkeypatch: pytest.MonkeyPatch) -> None:
    # Nothing set, nothing written: a child decides what a parent left to the defaults (log
    # format by its terminal), and PLAINTEXT is not handed a SASL mechanism it would refuse.
    _clear_casebus_env(monkeypatch)
    defaults = load_settings()
    assert defaults.to_env() == {}
    assert load_settings(log_level="info").to_env() == {"CASEBUS_LOG_LEVEL": "info"}


def test_to_env_keeps_the_rest_of_a_base_environment_and_replaces_its_casebus_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _clear_casebus_env(monkeypatch)
    s = load_settings(topic_prefix="child", metrics_port=None)
    base = {"PATH": "/bin", "CASEBUS_TOPIC_PREFIX": "parent", "casebus_router_id": "stale"}
    assert s.to_env(base) == {"PATH": "/bin", "CASEBUS_TOPIC_PREFIX": "child"}


def test_to_env_of_a_copy_carries_what_the_copy_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    _clear_casebus_env(monkeypatch)
    s = load_settings().model_copy(update={"router_id": "bench-1"})
    assert s.to_env() == {"CASEBUS_ROUTER_ID": "bench-1"}


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CASEBUS_CONSOLE_PORT", "http"),
        ("CASEBUS_WITNESS_PORT", "70000"),
        ("CASEBUS_AUDIT_QUORUM", "0"),
        ("CASEBUS_ADAPTER_MAX_WAIT_S", "0"),
    ],
)
def test_a_command_s_own_setting_is_checked_and_named_like_any_other(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=f"{variable}={value!r}"):
        load_settings()
