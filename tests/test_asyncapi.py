"""Tests for bus.asyncapi and ``casebus asyncapi``: the document says what the routing policy
and the schemas say, and the AsyncAPI project's own parser accepts it.

The parser (@asyncapi/parser with @asyncapi/avro-schema-parser, from npm) is installed by
deploy/setup-system under ``$CASEBUS_NODE_DIR`` (default ~/.cache/casebus/node). Without it the
parser tests skip on a workstation and fail in CI (``CI`` set), so CI cannot pass unchecked.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from toolkit import tool_missing
from typer.testing import CliRunner

from bus.agencies import load_registry
from bus.asyncapi import AVRO_SCHEMA_FORMAT, DEAD_LETTER_MESSAGE, build_document
from bus.cli import app
from bus.routing import DEFAULT_POLICY_PATH, load_policy
from bus.schema_index import default_index
from bus.settings import Settings

CHECKER = Path(__file__).resolve().parent / "asyncapi_parse.cjs"
REGISTRY = load_registry(Settings().agencies_file)
POLICY = load_policy(DEFAULT_POLICY_PATH, REGISTRY)


def _document(**settings: Any) -> dict[str, Any]:
    return build_document(
        settings=Settings(**settings),
        registry=REGISTRY,
        policy=POLICY,
        index=default_index(),
        version="0.0.0-test",
    )


def _kinds(refs: list[dict[str, str]] | dict[str, Any]) -> set[str]:
    """The kinds named by channel or operation message references (``<kind>.v<N>``)."""
    names = [r["$ref"] for r in refs] if isinstance(refs, list) else list(refs)
    return {name.rsplit("/", 1)[-1].rsplit(".v", 1)[0] for name in names}


# --- what the document says ------------------------------------------------------------------


def test_every_kind_and_version_is_a_message_with_its_avro_schema() -> None:
    doc = _document()
    messages = doc["components"]["messages"]
    for entry in default_index():
        message = messages[f"{entry.kind}.v{entry.version}"]
        assert message["name"] == entry.kind
        assert message["payload"]["schemaFormat"] == AVRO_SCHEMA_FORMAT
        assert message["payload"]["schema"] == json.loads(entry.path.read_text(encoding="utf-8"))
        assert message["headers"]["properties"]["ce_type"]["const"] == entry.kind
    assert set(messages) == {
        *(f"{e.kind}.v{e.version}" for e in default_index()),
        DEAD_LETTER_MESSAGE,
    }
    assert "opinion.request.v2" in messages  # both versions of an evolved kind are described


def test_both_envelope_versions_are_published_with_their_fingerprints() -> None:
    doc = _document()
    index = default_index()
    schemas = doc["components"]["schemas"]
    assert index.envelope_versions == (1, 2)
    for v in index.envelope_versions:
        entry = index.envelope_version(v)
        published = schemas["Envelope" if v == 1 else f"EnvelopeV{v}"]
        assert published["schema"] == json.loads(entry.path.read_text(encoding="utf-8"))
    trait = doc["components"]["messageTraits"]["envelope"]
    assert trait["x-casebus-envelope-fingerprints"] == {
        str(v): f"{index.envelope_version(v).fingerprint:016x}" for v in index.envelope_versions
    }
    # Only v2 has the SM3 digest of an attachment.
    v2_attachment = schemas["EnvelopeV2"]["schema"]["fields"]
    assert any("sm3" in json.dumps(f) for f in v2_attachment)
    assert not any('"sm3"' in json.dumps(f) for f in schemas["Envelope"]["schema"]["fields"])


def test_each_agency_may_send_exactly_what_the_routing_policy_grants() -> None:
    doc = _document()
    grants = POLICY.grants()
    sends = {
        op_id.removesuffix(".send"): _kinds(op["messages"])
        for op_id, op in doc["operations"].items()
        if op["action"] == "send" and op_id.endswith(".send")
    }
    assert "ygh.police.bureau" in sends
    for agency, kinds in sends.items():
        assert kinds == set(grants[agency].sends), agency
    # criminal.transfer: enforcement -> police, never the other way round.
    assert "criminal.transfer" in sends["ygh.enforcement.bureau"]
    assert "criminal.transfer" not in sends["ygh.police.bureau"]


def test_each_inbox_carries_what_its_agency_may_receive() -> None:
    doc = _document(topic_prefix="cb")
    for agency, g in POLICY.grants().items():
        channel = doc["channels"].get(f"inbox.{agency}")
        if not g.receives:
            assert channel is None
            continue
        assert channel["address"] == f"cb.inbox.{agency}"
        assert _kinds(channel["messages"]) == set(g.receives), agency
    assert doc["channels"]["dead"]["address"] == "cb.dead"


def test_per_agency_submit_topics_give_each_sender_its_own_channel() -> None:
    doc = _document(submit_topics="per_agency")
    assert "submit" not in doc["channels"]
    op = doc["operations"]["ygh.court.send"]
    assert op["channel"] == {"$ref": "#/channels/submit.ygh.court"}
    assert doc["channels"]["submit.ygh.court"]["address"] == "casebus.submit.ygh.court"


# --- the AsyncAPI project's parser -----------------------------------------------------------


def _node_modules() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return Path(os.environ.get("CASEBUS_NODE_DIR") or cache / "casebus" / "node") / "node_modules"


@pytest.fixture(scope="module")
def parsed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """What the AsyncAPI parser says about ``casebus asyncapi``'s output and two broken
    documents, by file stem; one node process for all three (each parse takes seconds)."""
    node = shutil.which("node")
    modules = _node_modules()
    if node is None or not (modules / "@asyncapi" / "parser").is_dir():
        why = f"node or @asyncapi/parser under {modules} missing: run deploy/setup-system"
        tool_missing(why)
    folder = tmp_path_factory.mktemp("asyncapi")
    generated = folder / "generated.yaml"
    result = CliRunner().invoke(app, ["asyncapi", "--output", str(generated)])
    assert result.exit_code == 0, result.output

    bad_avro = _document()
    bad_avro["components"]["messages"]["bus.ack.v1"]["payload"]["schema"]["fields"][0]["type"] = (
        "strnig"
    )
    dangling = _document()
    dangling["operations"]["ygh.court.send"]["messages"].append(
        {"$ref": "#/channels/submit/messages/no.such.v1"}
    )
    for name, doc in (("bad-avro", bad_avro), ("dangling", dangling)):
        (folder / f"{name}.json").write_text(json.dumps(doc), encoding="utf-8")

    files = [generated, folder / "bad-avro.json", folder / "dangling.json"]
    done = subprocess.run(
        [node, str(CHECKER), str(modules), *map(str, files)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 1, done.stderr  # the broken two are not ok
    results = [json.loads(line) for line in done.stdout.splitlines()]
    return {Path(r["file"]).stem: r for r in results}


def _errors(diagnostics: list[dict[str, str]]) -> list[dict[str, str]]:
    return [d for d in diagnostics if d["severity"] in ("error", "warning")]


def test_casebus_asyncapi_output_passes_the_asyncapi_parser(
    parsed: dict[str, dict[str, Any]],
) -> None:
    generated = parsed["generated"]
    assert _errors(generated["diagnostics"]) == []
    assert generated["ok"] and generated["document"]


def test_the_parser_check_catches_a_bad_avro_schema(parsed: dict[str, dict[str, Any]]) -> None:
    bad = parsed["bad-avro"]
    assert not bad["ok"]
    assert [(d["code"], d["path"]) for d in _errors(bad["diagnostics"])] == [
        ("avro-schema", "components/messages/bus.ack.v1/payload/schema")
    ]


def test_the_parser_check_catches_a_dangling_reference(
    parsed: dict[str, dict[str, Any]],
) -> None:
    dangling = parsed["dangling"]
    assert not dangling["ok"]
    assert any(d["code"] == "invalid-ref" for d in _errors(dangling["diagnostics"]))


def test_casebus_asyncapi_prints_yaml_or_json_and_writes_a_file(tmp_path: Path) -> None:
    printed = CliRunner().invoke(app, ["asyncapi"])
    assert printed.exit_code == 0, printed.output
    as_json = CliRunner().invoke(app, ["asyncapi", "--format", "json"])
    assert as_json.exit_code == 0, as_json.output
    assert yaml.safe_load(printed.stdout) == json.loads(as_json.stdout)
    out = tmp_path / "bus.json"
    written = CliRunner().invoke(app, ["asyncapi", "-o", str(out)])
    assert written.exit_code == 0, written.output
    assert json.loads(out.read_text(encoding="utf-8")) == json.loads(as_json.stdout)
