"""The envelope every message travels in, mirroring the newest envelope schema
(``schemas/envelope.v2.avsc``) field for field."""

from __future__ import annotations

import functools
import typing
from collections.abc import Iterator
from typing import Annotated, Any, Final
from uuid import UUID

from annotated_types import Ge, Le
from pydantic import BaseModel, Field, StringConstraints, model_validator

from bus.errors import Problem
from bus.models._common import (
    INT_MAX,
    AgencyId,
    AvroModel,
    Count,
    Sha256Hex,
    Sm3Hex,
    Text,
    UtcDatetime,
    rule_error,
)
from bus.models._identifier import Identifier

__all__ = [
    "KIND_PATTERN",
    "SIGNATURE_ALGORITHMS",
    "Attachment",
    "Envelope",
    "Signature",
    "attachment_refs",
]

KIND_PATTERN: Final = r"^[a-z]+(\.[a-z_]+)+$"
"""A message kind such as ``criminal.transfer``; whether it is a known kind is the router's call."""

SIGNATURE_ALGORITHMS: Final = ("ed25519", "sm2-sm3")
"""Algorithms the design names. The model keeps ``algorithm`` a plain string, as on the wire, so an
unknown one surfaces from the signing code as ``unsupported_algorithm`` rather than as bad input."""


class Attachment(AvroModel):
    """A document travelling by reference and hash, never inline (附件)."""

    name: Text
    media_type: Annotated[str, StringConstraints(pattern=r"^[\w.+-]+/[\w.+-]+$")]
    size_bytes: Count
    sha256: Sha256Hex
    uri: Text
    sm3: Sm3Hex | None = None
    """The SM3 digest of the bytes (envelope schema v2): the 国密 profile binds each file by it
    as well as by SHA-256; None writes the envelope as version 1, as before the field."""

    def to_avro(self) -> dict[str, Any]:
        """The Avro datum; without ``sm3`` when there is none, so an envelope with no SM3
        digest is the version-1 record it always was (docs/wire-format.md §4.1)."""
        record = super().to_avro()
        if record["sm3"] is None:
            del record["sm3"]
        return record


class Signature(AvroModel):
    """The sender's signature over the canonical bytes of every other envelope field."""

    algorithm: Text
    key_id: Text
    value: bytes


class Envelope(AvroModel):
    """One message: routing, threading, timing, the payload bytes, attachments and signature."""

    message_id: UUID
    kind: Annotated[str, StringConstraints(pattern=KIND_PATTERN)]
    schema_version: Annotated[int, Ge(1), Le(INT_MAX)]
    sender: AgencyId
    recipients: Annotated[list[AgencyId], Field(min_length=1)]
    case_id: Identifier
    correlation_id: Identifier
    causation_id: Identifier | None = None
    sent_at: UtcDatetime
    due_at: UtcDatetime | None = None
    payload: bytes
    attachments: list[Attachment] = Field(default_factory=list)
    signature: Signature

    @model_validator(mode="after")
    def _attachment_names_unique(self) -> Envelope:
        # Payloads refer to attachments by name, so a name must pick exactly one.
        seen: set[str] = set()
        for attachment in self.attachments:
            if attachment.name in seen:
                raise rule_error(
                    "duplicate_name",
                    "attachment name {name!r} is used twice",
                    field="attachments",
                    name=attachment.name,
                )
            seen.add(attachment.name)
        return self

    def attachment(self, name: str) -> Attachment | None:
        """The attachment called ``name``, if any."""
        return next((a for a in self.attachments if a.name == name), None)

    def check_attachment_refs(self, payload: BaseModel) -> list[Problem]:
        """Every reference in ``payload`` to an attachment this envelope lacks or hashes otherwise.

        Payloads list documents by attachment name and SHA-256; the signature covers both sides,
        so a mismatch is the sender's error and is reported like any other bad input.
        """
        problems: list[Problem] = []
        for path, name, sha256 in attachment_refs(payload):
            attachment = self.attachment(name)
            if attachment is None:
                problems.append(
                    Problem(
                        path=f"{path}attachment_name",
                        rule="unknown_attachment",
                        message="no envelope attachment has this name",
                        value=name,
                        message_zh="信封中没有该名称的附件",
                    )
                )
            elif attachment.sha256 != sha256:
                problems.append(
                    Problem(
                        path=f"{path}attachment_sha256",
                        rule="attachment_hash_mismatch",
                        message=f"the envelope attachment {name!r} has another SHA-256",
                        value=sha256,
                        message_zh="附件 SHA-256 与信封中的附件不一致",
                    )
                )
        return problems


def attachment_refs(payload: BaseModel) -> list[tuple[str, str, str]]:
    """Every ``(path prefix, attachment_name, attachment_sha256)`` a payload refers to.

    The prefix ends with a dot, e.g. ``documents[0].``, so callers can append the field name.
    """
    return list(_refs(payload, ""))


def _refs(value: object, path: str) -> Iterator[tuple[str, str, str]]:
    if isinstance(value, BaseModel):
        if _may_refer(type(value)):
            name = getattr(value, "attachment_name", None)
            sha256 = getattr(value, "attachment_sha256", None)
            if isinstance(name, str) and isinstance(sha256, str):
                yield path, name, sha256
        for field in _model_bearing_fields(type(value)):
            yield from _refs(getattr(value, field), f"{path}{field}.")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _refs(item, f"{path[:-1]}[{i}].")


@functools.cache
def _may_refer(model: type[BaseModel]) -> bool:
    """Whether ``model`` has both reference fields (or properties). Asked per class, because
    pydantic answers a missing attribute slowly (its ``__getattr__`` raises), and the router
    asks about every model of every payload."""
    return all(
        name in model.model_fields or isinstance(getattr(model, name, None), property)
        for name in ("attachment_name", "attachment_sha256")
    )


@functools.cache
def _model_bearing_fields(model: type[BaseModel]) -> tuple[str, ...]:
    """The fields of ``model`` whose declared type can hold a model (directly, in a list or in
    an optional): only those can lead to an attachment reference. The router checks every
    message, and a transfer's dozens of text and date fields need not be visited each time."""
    return tuple(
        name for name, info in model.model_fields.items() if _can_hold_model(info.annotation)
    )


def _can_hold_model(annotation: object) -> bool:
    if isinstance(annotation, type):
        return issubclass(annotation, BaseModel)
    # list[X], X | None, Annotated[X, ...], Literal[...]: look inside; a bare Any may hold one.
    args = typing.get_args(annotation)
    if not args:
        return annotation is typing.Any
    return any(_can_hold_model(a) for a in args if not isinstance(a, str | int | float | bool))
