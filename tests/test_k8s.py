"""The Kubernetes manifests in deploy/k8s, checked structurally (no cluster needed).

Every file parses; kinds and apiVersions are ones the cluster knows (core, apps, batch, Strimzi
v1beta2); the Kafka cluster has 3 KRaft nodes, RF 3 and min.insync.replicas 2 and no plaintext
listener; every topic of ``casebus topics ensure`` (per-agency submit topics) is a KafkaTopic
with 3 replicas; every principal of ``casebus acl plan`` is a KafkaUser with exactly the plan's
ACLs, each agency writing its own submit topic only; each service connects as its own user and
in per-agency submit mode; no password is written in a manifest.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from bus.acl import ROUTER_PRINCIPAL, SLA_PRINCIPAL, plan_acls
from bus.agencies import load_registry
from bus.routing import DEFAULT_POLICY_PATH, load_policy
from bus.settings import REPO_ROOT, Settings
from bus.topics import planned_topics

K8S = REPO_ROOT / "deploy" / "k8s"
REGISTRY = load_registry(REPO_ROOT / "deploy" / "agencies.yaml")
PLAN = plan_acls(REGISTRY, load_policy(DEFAULT_POLICY_PATH, REGISTRY), submit_topics="per_agency")
API = {
    "Namespace": "v1",
    "Service": "v1",
    "Deployment": "apps/v1",
    "StatefulSet": "apps/v1",
    "Job": "batch/v1",
    "Kafka": "kafka.strimzi.io/v1beta2",
    "KafkaNodePool": "kafka.strimzi.io/v1beta2",
    "KafkaTopic": "kafka.strimzi.io/v1beta2",
    "KafkaUser": "kafka.strimzi.io/v1beta2",
}
DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def _docs() -> list[tuple[Path, dict[str, Any]]]:
    out = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc is not None:
                out.append((path, doc))
    return out


DOCS = _docs()


def _of(kind: str) -> list[dict[str, Any]]:
    return [d for _, d in DOCS if d["kind"] == kind]


def _workloads() -> list[dict[str, Any]]:
    return _of("Deployment") + _of("StatefulSet") + _of("Job")


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e for e in container.get("env", [])}


def test_every_manifest_has_a_known_kind_apiversion_and_a_legal_name() -> None:
    assert len(DOCS) > 40
    for path, doc in DOCS:
        assert doc["kind"] in API, (path.name, doc["kind"])
        assert doc["apiVersion"] == API[doc["kind"]], (path.name, doc["kind"])
        name = doc["metadata"]["name"]
        assert DNS1123.match(name) and len(name) <= 253, name
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "casebus", (path.name, name)
    names = [(d["kind"], d["metadata"]["name"]) for _, d in DOCS]
    assert len(names) == len(set(names)), "a kind/name pair appears twice"


def test_the_generated_manifests_are_up_to_date() -> None:
    run = subprocess.run(
        [sys.executable, str(K8S / "generate.py"), "--check"],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr


def test_kafka_is_three_kraft_nodes_with_rf3_min_isr2_and_only_a_scram_tls_listener() -> None:
    (kafka,) = _of("Kafka")
    (pool,) = _of("KafkaNodePool")
    assert kafka["metadata"]["annotations"] == {
        "strimzi.io/node-pools": "enabled",
        "strimzi.io/kraft": "enabled",
    }
    assert pool["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
    assert pool["spec"]["replicas"] == 3
    assert sorted(pool["spec"]["roles"]) == ["broker", "controller"]
    config = kafka["spec"]["kafka"]["config"]
    assert config["default.replication.factor"] == 3
    assert config["min.insync.replicas"] == 2
    assert config["offsets.topic.replication.factor"] == 3
    assert config["transaction.state.log.replication.factor"] == 3
    assert config["transaction.state.log.min.isr"] == 2
    assert config["auto.create.topics.enable"] is False
    assert config["allow.everyone.if.no.acl.found"] is False
    listeners = kafka["spec"]["kafka"]["listeners"]
    assert listeners and all(
        lst["tls"] is True and lst["authentication"] == {"type": "scram-sha-512"}
        for lst in listeners
    )
    assert kafka["spec"]["kafka"]["authorization"]["type"] == "simple"
    assert kafka["spec"]["kafka"]["authorization"]["superUsers"] == []
    assert "userOperator" in kafka["spec"]["entityOperator"]


def test_every_topic_is_a_kafkatopic_with_three_replicas() -> None:
    topics = {t["spec"]["topicName"]: t for t in _of("KafkaTopic")}
    assert set(topics) == set(planned_topics(Settings(submit_topics="per_agency"), REGISTRY))
    assert "casebus.submit" not in topics
    assert "casebus.submit.ygh.police.bureau" in topics
    for t in topics.values():
        assert t["spec"]["replicas"] == 3
        assert t["spec"]["config"]["min.insync.replicas"] == "2"
        assert t["metadata"]["labels"]["strimzi.io/cluster"] == "casebus"


def _acls(user: dict[str, Any]) -> set[tuple[str, str, str, str]]:
    types = {"transactionalId": "transactional_id"}
    ops = {"Read": "READ", "Write": "WRITE", "Describe": "DESCRIBE"}
    ops["IdempotentWrite"] = "IDEMPOTENT_WRITE"
    out = set()
    for acl in user["spec"]["authorization"]["acls"]:
        r = acl["resource"]
        for op in acl["operations"]:
            out.add(
                (
                    types.get(r["type"], r["type"]),
                    r.get("name", "kafka-cluster"),
                    r.get("patternType", "literal"),
                    ops[op],
                )
            )
        assert acl.get("host", "*") == "*"
    return out


def test_every_principal_has_a_kafkauser_whose_acls_equal_the_plan() -> None:
    users = {u["metadata"]["name"]: u for u in _of("KafkaUser")}
    parties = {a.id for a in REGISTRY.agencies if a.kind != "bus"}
    assert parties <= set(users)
    assert set(users) == set(PLAN.principals) == parties | {ROUTER_PRINCIPAL, SLA_PRINCIPAL}
    for name, user in users.items():
        assert user["spec"]["authentication"] == {"type": "scram-sha-512"}
        assert user["spec"]["authorization"]["type"] == "simple"
        want = {
            (b.resource_type, b.resource_name, b.pattern_type, b.operation)
            for b in PLAN.principals[name]
        }
        assert _acls(user) == want, name


def test_each_agency_user_writes_only_its_own_submit_topic() -> None:
    users = {u["metadata"]["name"]: u for u in _of("KafkaUser")}
    for name, user in users.items():
        written = {n for t, n, _, op in _acls(user) if t == "topic" and op == "WRITE"}
        if name == ROUTER_PRINCIPAL:
            assert not any(n.startswith("casebus.submit") for n in written)
        else:
            assert written == {f"casebus.submit.{name}"}, name


@pytest.mark.parametrize(
    "agency", [a for a in REGISTRY.agencies if a.kind != "bus"], ids=lambda a: a.id
)
def test_each_agency_has_an_adapter_that_connects_as_itself(agency: Any) -> None:
    mine = [
        d for d in _of("Deployment") if d["metadata"]["labels"].get("casebus/agency") == agency.id
    ]
    assert len(mine) == 1
    pod = mine[0]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = container["args"]
    assert args[0] == "adapter" and args[args.index("--agency") + 1] == agency.id
    assert args.count("--agency") == 1
    env = _env(container)
    assert env["CASEBUS_KAFKA_SASL_USERNAME"]["value"] == agency.id
    secrets = {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    assert agency.id in secrets  # the user operator's Secret of this agency's KafkaUser


def test_every_kafka_client_uses_sasl_ssl_as_an_existing_user_with_its_own_secret() -> None:
    users = {u["metadata"]["name"] for u in _of("KafkaUser")}
    seen = set()
    for w in _workloads():
        pod = w["spec"]["template"]["spec"]
        for c in pod["containers"]:
            env = _env(c)
            if "CASEBUS_KAFKA_BOOTSTRAP" not in env:
                continue
            assert env["CASEBUS_KAFKA_BOOTSTRAP"]["value"].endswith(":9094")
            assert env["CASEBUS_KAFKA_SECURITY_PROTOCOL"]["value"] == "SASL_SSL"
            # Every service in the same mode: the router reads what the adapters write.
            assert env["CASEBUS_SUBMIT_TOPICS"]["value"] == "per_agency"
            user = env["CASEBUS_KAFKA_SASL_USERNAME"]["value"]
            assert user in users
            assert user not in seen, f"two workloads share Kafka user {user}"
            seen.add(user)
            secrets = {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
            assert user in secrets
    assert {ROUTER_PRINCIPAL, SLA_PRINCIPAL} <= seen


def test_the_router_is_a_statefulset_so_transactional_ids_stay_stable() -> None:
    (router,) = [s for s in _of("StatefulSet") if s["metadata"]["name"] == "casebus-router"]
    (c,) = router["spec"]["template"]["spec"]["containers"]
    assert c["args"][c["args"].index("--id") + 1] == "$(POD_NAME)"
    assert router["spec"]["replicas"] >= 2
    (pg,) = [s for s in _of("StatefulSet") if s["metadata"]["name"] == "casebus-postgres"]
    assert pg["spec"]["volumeClaimTemplates"]


def test_no_manifest_holds_a_password() -> None:
    for w in _workloads() + _of("StatefulSet"):
        for c in w["spec"]["template"]["spec"]["containers"]:
            for name, e in _env(c).items():
                if "PASSWORD" in name or name == "CASEBUS_DATABASE_URL":
                    assert name.endswith("_FILE") or "valueFrom" in e, name
    for path in K8S.glob("*.yaml"):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"(?i)password\s*[:=]\s*['\"]?\w", text), path.name
        assert "postgresql://" not in text, path.name


def test_an_agency_dropped_from_the_registry_loses_its_kafkauser_and_adapter(
    tmp_path: Path,
) -> None:
    dropped = "kmg.police.eco"
    raw = yaml.safe_load((REPO_ROOT / "deploy" / "agencies.yaml").read_text(encoding="utf-8"))
    raw["agencies"] = [a for a in raw["agencies"] if a["id"] != dropped]
    registry = tmp_path / "agencies.yaml"
    registry.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    run = subprocess.run(
        [
            sys.executable,
            str(K8S / "generate.py"),
            "--agencies",
            str(registry),
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    before = [d for d in yaml.safe_load_all((K8S / "kafka-users.yaml").read_text()) if d]
    after = [d for d in yaml.safe_load_all((tmp_path / "kafka-users.yaml").read_text()) if d]
    assert dropped in {u["metadata"]["name"] for u in before}
    assert {u["metadata"]["name"] for u in after} == {u["metadata"]["name"] for u in before} - {
        dropped
    }
    # `kubectl apply --prune -l app.kubernetes.io/part-of=casebus` deletes a KafkaUser the new
    # file no longer has, and Strimzi's user operator then deletes its SCRAM user and ACLs.
    assert all(u["metadata"]["labels"]["app.kubernetes.io/part-of"] == "casebus" for u in after)
    adapters = (tmp_path / "adapters.yaml").read_text()
    assert dropped not in adapters and dropped in (K8S / "adapters.yaml").read_text()


WITNESS_AGENCIES = sorted(a.id for a in REGISTRY.agencies if a.kind in ("procuratorate", "court"))


def _witness_sets() -> dict[str, dict[str, Any]]:
    return {
        s["metadata"]["labels"]["casebus/agency"]: s
        for s in _of("StatefulSet")
        if s["metadata"]["labels"].get("app.kubernetes.io/name") == "casebus-witness"
    }


def test_the_procuratorate_and_the_court_each_run_a_witness_with_its_own_key_and_volume() -> None:
    sets = _witness_sets()
    assert sorted(sets) == WITNESS_AGENCIES
    assert {"ygh.procuratorate", "ygh.court"} <= set(sets)
    services = {s["metadata"]["name"]: s for s in _of("Service")}
    key_secrets = set()
    for agency, sts in sets.items():
        spec = sts["spec"]
        pod = spec["template"]["spec"]
        (c,) = pod["containers"]
        assert c["args"] == ["witness", "serve"]
        env = _env(c)
        assert env["CASEBUS_WITNESS_NAME"]["value"] == f"{agency}/witness"
        # Its record is its own: neither the bus's database nor Kafka is within its reach.
        assert not [n for n in env if "DATABASE" in n or n.startswith("CASEBUS_KAFKA")], agency
        mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
        db = Path(env["CASEBUS_WITNESS_DB"]["value"])
        (claim,) = spec["volumeClaimTemplates"]
        assert mounts[str(db.parent)]["name"] == claim["metadata"]["name"]
        assert spec["replicas"] == 1  # one writer of that record
        key = Path(env["CASEBUS_WITNESS_KEY_FILE"]["value"])
        volumes = {v["name"]: v for v in pod["volumes"]}
        secret = volumes[mounts[str(key.parent)]["name"]]["secret"]
        assert secret["defaultMode"] == 0o400 and mounts[str(key.parent)]["readOnly"] is True
        key_secrets.add(secret["secretName"])
        logs = env["CASEBUS_WITNESS_LOGS"]["valueFrom"]["configMapKeyRef"]
        assert logs == {"name": "casebus-audit-log", "key": "vkey"}
        (port,) = c["ports"]
        assert int(env["CASEBUS_WITNESS_PORT"]["value"]) == port["containerPort"]
        service = services[sts["metadata"]["name"]]
        assert service["spec"]["selector"] == spec["selector"]["matchLabels"]
        assert [p["targetPort"] for p in service["spec"]["ports"]] == [port["name"]]
    assert len(key_secrets) == len(sets), "two witnesses share a key"


def test_the_router_and_the_procuratorate_adapter_require_every_witness() -> None:
    (router,) = [s for s in _of("StatefulSet") if s["metadata"]["name"] == "casebus-router"]
    procuratorates = [a.id for a in REGISTRY.agencies if a.kind == "procuratorate"]
    adapters = [
        d
        for d in _of("Deployment")
        if d["metadata"]["labels"].get("casebus/agency") in procuratorates
    ]
    assert adapters
    for workload in [router, *adapters]:
        (c,) = workload["spec"]["template"]["spec"]["containers"]
        env = _env(c)
        source = env["CASEBUS_AUDIT_WITNESSES"]["valueFrom"]["configMapKeyRef"]
        assert source == {"name": "casebus-audit-witnesses", "key": "witnesses"}
        assert env["CASEBUS_AUDIT_WITNESS_QUORUM"]["value"] == str(len(WITNESS_AGENCIES))
    # The README's ConfigMap names every witness by its Service's URL.
    readme = (K8S / "README.md").read_text(encoding="utf-8")
    for sts in _witness_sets().values():
        assert f"http://{sts['metadata']['name']}=<" in readme
