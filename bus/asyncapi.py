"""The bus described as an AsyncAPI 3.0 document, generated from ``schemas/`` and the routing
policy (``casebus asyncapi``).

Departments' integrators and API catalogues read AsyncAPI, not our YAML. Generating the
document from the very files the router enforces (the Avro schemas, ``deploy/routing.yaml``, the
agency registry and the topic settings) means it cannot drift from what the bus does: channels
are the Kafka topics, messages are the kinds with their Avro schemas, and operations say which
party may send what and reads which inbox. CI has the AsyncAPI project's own parser check the
result (``tests/test_asyncapi.py``), not only this code.

:func:`build_document` is pure: it takes what it describes and returns a JSON-ready dict.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from bus.acl import submitters
from bus.agencies import Registry
from bus.codec import CONTENT_TYPE
from bus.routing import KindRule, RoutingPolicy
from bus.schema_index import SchemaEntry, SchemaIndex
from bus.settings import Settings

__all__ = [
    "ASYNCAPI_VERSION",
    "AVRO_SCHEMA_FORMAT",
    "DEAD_LETTER_MESSAGE",
    "build_document",
    "message_id",
]

ASYNCAPI_VERSION: Final = "3.0.0"
AVRO_SCHEMA_FORMAT: Final = "application/vnd.apache.avro;version=1.9.0"
"""How AsyncAPI 3.0 names an Avro schema in a Multi Format Schema Object."""
_KAFKA_BINDING: Final = "0.5.0"
DEAD_LETTER_MESSAGE: Final = "dead_letter"
_ROUTER: Final = "router"

_CE_HEADERS: Final[Mapping[str, str]] = {
    "ce_specversion": "CloudEvents version, always 1.0.",
    "ce_id": "The envelope's message_id (a UUID).",
    "ce_source": "The sender's agency id.",
    "ce_type": "The message kind.",
    "ce_time": "sent_at, RFC 3339 in UTC with milliseconds.",
    "ce_subject": "The case id (also the Kafka key).",
    "content-type": f"Always {CONTENT_TYPE}.",
}
_DEAD_HEADERS: Final[Mapping[str, str]] = {
    "casebus_dead_code": "Why the router refused the record (a bus.nack code).",
    "casebus_dead_reason": "Every problem found, as a JSON list.",
    "casebus_source_topic": "Where the record was read.",
    "casebus_source_partition": "Its partition there.",
    "casebus_source_offset": "Its offset there.",
    "casebus_dead_at": "When the router refused it (ISO 8601).",
}


def message_id(entry: SchemaEntry) -> str:
    """The component id of one kind at one schema version, e.g. ``opinion.request.v2``."""
    return f"{entry.kind}.v{entry.version}"


def _strings(description: Mapping[str, str], **constant: str) -> dict[str, Any]:
    """A JSON Schema object of string headers, all required, some with a fixed value."""
    properties: dict[str, Any] = {}
    for name, text in description.items():
        prop: dict[str, Any] = {"type": "string", "description": text}
        if name in constant:
            prop["const"] = constant[name]
        properties[name] = prop
    return {"type": "object", "properties": properties, "required": list(description)}


def _parties(entries: Sequence[str]) -> str:
    return ", ".join(entries)


def _routing_text(rule: KindRule) -> str:
    lines = [f"- from {_parties(r.senders)} to {_parties(r.recipients)}" for r in rule.routes]
    if rule.copy_to:
        lines.append(f"- a copy of every one to {_parties(rule.copy_to)}")
    return "\n".join(lines)


def _message(entry: SchemaEntry, rule: KindRule) -> dict[str, Any]:
    avro = json.loads(entry.path.read_text(encoding="utf-8"))
    return {
        "name": entry.kind,
        "title": f"{entry.kind} (schema v{entry.version})",
        "summary": rule.en,
        "description": (
            f"{rule.en}\n\n{rule.zh}\n\nWho may send it (deploy/routing.yaml; a party is an "
            f"agency kind or an agency id):\n{_routing_text(rule)}\n\n"
            "On the wire this record is the envelope's `payload` (Avro single-object encoding, "
            f"writer fingerprint {entry.fingerprint:016x}); the Kafka value is the envelope."
        ),
        "contentType": CONTENT_TYPE,
        "headers": _strings(_CE_HEADERS, ce_specversion="1.0", ce_type=entry.kind),
        "payload": {"schemaFormat": AVRO_SCHEMA_FORMAT, "schema": avro},
        "traits": [{"$ref": "#/components/messageTraits/envelope"}],
        "x-casebus-schema-version": entry.version,
        "x-casebus-routing": {
            "routes": [{"from": list(r.senders), "to": list(r.recipients)} for r in rule.routes],
            "copy_to": list(rule.copy_to),
        },
    }


def _envelope_trait(index: SchemaIndex) -> dict[str, Any]:
    return {
        "description": (
            "Every casebus record: the Kafka key is the case id, the value is the Envelope "
            "record (components/schemas/Envelope, version 1; components/schemas/EnvelopeV2 "
            "when an attachment carries an SM3 digest, the 国密 profile) in Avro single-object "
            "encoding (C3 01, the 8-byte CRC-64-AVRO fingerprint of the writer schema, which "
            "names the version, then Avro binary), signed by the sender; the headers follow the "
            "CloudEvents Kafka binding, binary mode."
        ),
        "bindings": {
            "kafka": {
                "key": {"type": "string", "description": "The case id: one case stays ordered."},
                "bindingVersion": _KAFKA_BINDING,
            }
        },
        "x-casebus-envelope-fingerprint": f"{index.envelope.fingerprint:016x}",
        "x-casebus-envelope-fingerprints": {
            str(v): f"{index.envelope_version(v).fingerprint:016x}" for v in index.envelope_versions
        },
    }


def _channel(
    address: str, description: str, messages: Iterable[str], settings: Settings
) -> dict[str, Any]:
    return {
        "address": address,
        "description": description,
        "messages": {m: {"$ref": f"#/components/messages/{m}"} for m in messages},
        "bindings": {
            "kafka": {
                "topic": address,
                "partitions": settings.topic_partitions,
                "replicas": settings.topic_replication,
                "bindingVersion": _KAFKA_BINDING,
            }
        },
    }


def _operation(action: str, channel: str, summary: str, messages: Iterable[str]) -> dict[str, Any]:
    return {
        "action": action,
        "channel": {"$ref": f"#/channels/{channel}"},
        "summary": summary,
        "messages": [{"$ref": f"#/channels/{channel}/messages/{m}"} for m in messages],
    }


def build_document(
    *,
    settings: Settings,
    registry: Registry,
    policy: RoutingPolicy,
    index: SchemaIndex,
    version: str,
) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of this deployment (``version`` is casebus's own)."""
    rules = {rule.kind: rule for rule in policy.rules()}
    versions: dict[str, list[str]] = {}
    messages: dict[str, Any] = {}
    for entry in index:
        if entry.kind in rules:  # a schema without a rule cannot be sent: not part of the API
            versions.setdefault(entry.kind, []).append(message_id(entry))
            messages[message_id(entry)] = _message(entry, rules[entry.kind])
    messages[DEAD_LETTER_MESSAGE] = {
        "name": DEAD_LETTER_MESSAGE,
        "title": "A refused or undecodable submission",
        "summary": "What the router could not decode or validate, unchanged, and why.",
        "description": (
            "The submitted key and value as they were (a record too large for Kafka goes as "
            "its SHA-256, size and first bytes), its own headers, and the casebus_dead_* "
            "headers; the sender also gets a bus.nack."
        ),
        "headers": _strings(_DEAD_HEADERS),
        "payload": {"type": "string", "format": "binary"},
    }

    def ids(kinds: Iterable[str]) -> list[str]:
        return [m for kind in kinds for m in versions.get(kind, ())]

    grants = policy.grants()
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    writers = submitters(registry, policy)
    if settings.submit_topics == "shared":
        sendable = [k for k in rules if any(k in grants[a].sends for a in writers)]
        submit_of = dict.fromkeys(writers, "submit")
        channels["submit"] = _channel(
            settings.topic_submit(),
            "Every party writes here and only here; the router reads it.",
            ids(sendable),
            settings,
        )
    else:
        submit_of = {a: f"submit.{a}" for a in writers}
        for agency, channel in submit_of.items():
            channels[channel] = _channel(
                settings.topic_submit(agency),
                f"{agency} writes here and only here; the router reads it.",
                ids(grants[agency].sends),
                settings,
            )
    for agency, g in grants.items():
        if g.receives:
            channels[f"inbox.{agency}"] = _channel(
                settings.topic_inbox(agency),
                f"Only the router writes here; only {agency} reads it.",
                ids(g.receives),
                settings,
            )
    channels["dead"] = _channel(
        settings.topic_dead(),
        "Only the router writes here: what it could not decode or validate.",
        [DEAD_LETTER_MESSAGE],
        settings,
    )

    for agency, channel in submit_of.items():
        operations[f"{agency}.send"] = _operation(
            "send", channel, f"What {agency} may send.", ids(grants[agency].sends)
        )
    for agency, g in grants.items():
        # Kafka clients only: the router's own identity (``casebus``) has an inbox no one reads.
        if g.receives and agency in submit_of:
            operations[f"{agency}.receive"] = _operation(
                "receive", f"inbox.{agency}", f"What {agency} may receive.", ids(g.receives)
            )
    for channel in dict.fromkeys(submit_of.values()):
        operations[f"{_ROUTER}.{channel}"] = _operation(
            "receive",
            channel,
            "The router validates, authorizes, audits and delivers each submission.",
            channels[channel]["messages"],
        )
    operations[f"{_ROUTER}.dead"] = _operation(
        "send", "dead", "The router sets aside what it refused.", [DEAD_LETTER_MESSAGE]
    )

    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "casebus",
            "version": version,
            "description": (
                "Case work between agencies on Kafka, with a verifiable audit log. Generated "
                "by `casebus asyncapi` from schemas/, deploy/routing.yaml and the agency "
                "registry: a party writes only to its submit channel and reads only its own "
                "inbox; the router delivers a message only if the routing policy allows it, "
                "after appending it to the audit log."
            ),
            "license": {"name": "Apache-2.0"},
        },
        "defaultContentType": CONTENT_TYPE,
        "servers": {
            "kafka": {
                "host": settings.kafka_bootstrap.split(",")[0].strip(),
                "protocol": "kafka"
                if settings.kafka_security_protocol == "PLAINTEXT"
                else "kafka-secure",
                "description": "A bootstrap broker of this deployment's Kafka cluster.",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {
            "schemas": {
                "Envelope": {
                    "schemaFormat": AVRO_SCHEMA_FORMAT,
                    "schema": json.loads(index.envelope.path.read_text(encoding="utf-8")),
                },
                **{
                    f"EnvelopeV{v}": {
                        "schemaFormat": AVRO_SCHEMA_FORMAT,
                        "schema": json.loads(
                            index.envelope_version(v).path.read_text(encoding="utf-8")
                        ),
                    }
                    for v in index.envelope_versions
                    if v > 1
                },
            },
            "messages": messages,
            "messageTraits": {"envelope": _envelope_trait(index)},
        },
    }
