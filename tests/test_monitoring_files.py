"""The Prometheus and Grafana files parse, have the expected shape, and name only metrics the
code defines (a renamed metric must not leave an alert that silently never fires)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from bus.settings import REPO_ROOT, Settings

PROMETHEUS = REPO_ROOT / "deploy" / "prometheus"
DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "casebus.json"
_DEFINED = re.compile(r"\b(?:Counter|Gauge|Histogram|Summary)\(\s*\"(casebus_\w+)\"", re.S)
_NAMED = re.compile(r"\bcasebus_[a-z0-9_]+")
_SERIES_SUFFIXES = ("_bucket", "_sum", "_count", "_created")


def defined_metrics() -> set[str]:
    """Every metric family defined in bus/ and adapters/, with the series names it exposes."""
    names: set[str] = set()
    for root in ("bus", "adapters"):
        for path in (REPO_ROOT / root).rglob("*.py"):
            names.update(_DEFINED.findall(path.read_text(encoding="utf-8")))
    return names


def named_metrics(expr: str) -> set[str]:
    """Metric names an expression uses, with histogram/summary series suffixes removed."""
    found = set()
    for name in _NAMED.findall(expr):
        for suffix in _SERIES_SUFFIXES:
            if name.endswith(suffix):
                name = name.removesuffix(suffix)
                break
        found.add(name)
    return found


def rule_files() -> list[Path]:
    return sorted(PROMETHEUS.glob("*-rules.yaml"))


def test_the_code_defines_the_metrics_these_checks_rely_on() -> None:
    defined = defined_metrics()
    assert {
        "casebus_router_messages_total",
        "casebus_router_latency_seconds",
        "casebus_router_consumer_lag",
        "casebus_outbox_pending",
        "casebus_adapter_deliveries_late",
        "casebus_audit_monitor_failed",
        "casebus_audit_monitor_tree_size",
        "casebus_sla_breaches_total",
    } <= defined


def test_prometheus_config_scrapes_every_component_and_loads_both_rule_files() -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text(encoding="utf-8"))
    assert set(config["rule_files"]) == {"sla-rules.yaml", "delivery-rules.yaml"}
    for name in config["rule_files"]:
        assert (PROMETHEUS / name).is_file()
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert {"casebus-router", "casebus-sla", "casebus-audit-monitor", "casebus-adapters"} <= set(
        jobs
    )
    ports: list[int] = []
    for job in jobs.values():
        for group in job["static_configs"]:
            for target in group["targets"]:
                host, _, port = target.rpartition(":")
                assert host and port.isdigit(), target
                ports.append(int(port))
    assert len(ports) == len(set(ports)), "two components on one port"
    adapters = {g["labels"]["adapter"] for g in jobs["casebus-adapters"]["static_configs"]}
    assert adapters == {"enforcement", "regulators", "police", "procuratorate", "court"}


@pytest.mark.parametrize("path", rule_files(), ids=lambda p: p.name)
def test_rule_groups_have_the_prometheus_shape_and_name_defined_metrics(path: Path) -> None:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    defined = defined_metrics()
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text(encoding="utf-8"))
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert set(doc) == {"groups"} and doc["groups"]
    alerts = []
    for group in doc["groups"]:
        assert isinstance(group["name"], str) and group["rules"]
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "record", "expr", "for", "labels", "annotations"}
            assert ("alert" in rule) != ("record" in rule)
            expr = str(rule["expr"])
            used = named_metrics(expr)
            # Prometheus' own ``up`` of a scrape job this config defines, or casebus metrics.
            for job in re.findall(r'\bup\{job="([^"]+)"', expr):
                assert job in jobs, f"{rule.get('alert')}: no scrape job {job}"
            assert used or "up{" in expr, f"{rule.get('alert')}: names no casebus metric"
            assert used <= defined, f"{rule.get('alert')}: unknown {used - defined}"
            if "alert" in rule:
                alerts.append(rule["alert"])
                assert rule["labels"]["severity"] in {"info", "warning", "critical"}
                assert rule["annotations"]["summary"]
                if "for" in rule:
                    assert re.fullmatch(r"\d+(ms|[smhdwy])", rule["for"])
    assert len(alerts) == len(set(alerts)), "duplicate alert names"


def test_delivery_rules_cover_every_delivery_health_signal() -> None:
    doc = yaml.safe_load((PROMETHEUS / "delivery-rules.yaml").read_text(encoding="utf-8"))
    exprs = " ".join(str(r["expr"]) for g in doc["groups"] for r in g["rules"])
    for metric in (
        "casebus_router_consumer_lag",  # consumer lag
        'outcome="dead_lettered"',  # dead letters
        "casebus_outbox_pending",  # outbox pending
        "casebus_adapter_deliveries_late",  # adapter deliveries late
        "casebus_audit_monitor_failed",  # audit monitor failed
        "changes(casebus_audit_monitor_tree_size",  # checkpoint age
        "casebus_router_offsets_unstable_seconds",  # a hanging transaction stalls a partition
    ):
        assert metric in exprs, metric


def _targets(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def test_grafana_dashboard_parses_and_charts_only_defined_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dashboard["title"] == "casebus" and dashboard["uid"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    defined = defined_metrics()
    exprs = _targets(dashboard)
    assert exprs
    for expr in exprs:
        used = named_metrics(expr)
        assert used and used <= defined, (expr, used - defined)
    joined = " ".join(exprs)
    for needle in (
        "casebus_router_messages_total",  # throughput by kind
        "casebus_router_latency_seconds_bucket",  # latency
        "casebus_router_consumer_lag",  # lag
        "casebus_sla_breaches_total",  # breaches
        "casebus_audit_monitor_tree_size",  # audit log growth, checkpoint age
    ):
        assert needle in joined, needle
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["w"] > 0 and grid["h"] > 0 and grid["x"] + grid["w"] <= 24


def test_an_alert_fires_when_the_audit_log_goes_unwitnessed_and_one_when_the_bus_refuses() -> None:
    # A witness that is down delays publication; these bound how long, and say when
    # CASEBUS_AUDIT_WITNESS_FAIL_CLOSED_AFTER_S has closed the bus.
    doc = yaml.safe_load((PROMETHEUS / "delivery-rules.yaml").read_text(encoding="utf-8"))
    rules = {r.get("alert"): r for g in doc["groups"] for r in g["rules"]}
    unwitnessed = rules["CasebusAuditUnwitnessed"]
    assert named_metrics(unwitnessed["expr"]) == {"casebus_audit_unwitnessed_seconds"}
    threshold = re.fullmatch(
        r"max\(casebus_audit_unwitnessed_seconds\) > (\d+)", unwitnessed["expr"]
    )
    assert threshold is not None and int(threshold[1]) > 0
    assert unwitnessed["for"] and unwitnessed["labels"]["severity"] == "warning"
    refusing = rules["CasebusRefusingUnwitnessed"]
    assert named_metrics(refusing["expr"]) == {
        "casebus_audit_unwitnessed_seconds",
        "casebus_audit_witness_fail_closed_after_seconds",
    }
    assert refusing["labels"]["severity"] == "critical"


def test_the_stuck_offsets_alert_waits_past_any_transaction_the_broker_would_end_itself() -> None:
    # Offsets pend normally for moments, and for up to the transaction timeout after
    # a router dies mid-commit (the broker then aborts). Only past that is it a hanging
    # transaction an operator must end, and the alert must not cry wolf before.
    doc = yaml.safe_load((PROMETHEUS / "delivery-rules.yaml").read_text(encoding="utf-8"))
    rules = {r.get("alert"): r for g in doc["groups"] for r in g["rules"]}
    stuck = rules["CasebusRouterOffsetsStuck"]
    threshold = re.fullmatch(
        r"max\(casebus_router_offsets_unstable_seconds\) > (\d+)", stuck["expr"]
    )
    assert threshold is not None
    timeout = Settings.model_fields["router_transaction_timeout_s"].default
    assert int(threshold[1]) >= 4 * timeout, (threshold[1], timeout)
    assert stuck["labels"]["severity"] == "critical"
    assert "kafka-transactions.sh" in stuck["annotations"]["description"]
