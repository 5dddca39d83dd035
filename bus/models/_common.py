"""Building blocks shared by every model: the Avro base class, constrained types, shared records.

Why hand-written models with a sync test rather than code generated from the ``.avsc`` files:
the schemas say what travels on the wire, but the models also carry what Avro cannot say —
patterns for agency ids and hashes, money that may not be negative, time stamps that must be
time-zone aware, "a refusal states its reasons" — and readable class names, docstrings and
helpers such as :meth:`CriminalTransfer.missing_mandatory_documents`. A generator would either
drop those rules or need a second annotation language inside the schemas. Instead the models are
written by hand and ``tests/test_models.py`` walks each latest ``.avsc`` next to its model and
fails on any difference in field names, types, enum symbols, optionality or defaults, so the two
cannot drift apart unnoticed.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Self

from annotated_types import Ge, Le
from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints, ValidationError
from pydantic_core import PydanticCustomError

from bus.errors import ValidationFailedError
from bus.models._problems import problems_from_validation_error

__all__ = [
    "AGENCY_ID_PATTERN",
    "CODE_PATTERN",
    "CREDIT_CODE_PATTERN",
    "INT_MAX",
    "LONG_MAX",
    "SHA256_PATTERN",
    "SM3_PATTERN",
    "AgencyId",
    "AttachmentRef",
    "AvroEnum",
    "AvroModel",
    "Count",
    "CreditCode",
    "Fen",
    "IdDocumentType",
    "Int32",
    "Long",
    "PayloadModel",
    "Quantity",
    "Sha256Hex",
    "Sm3Hex",
    "Subject",
    "Text",
    "UtcDatetime",
    "require_reasons",
    "rule_error",
]

AGENCY_ID_PATTERN = r"^[a-z0-9]+(\.[a-z0-9_]+)*$"
"""An agency id such as ``ygh.regulator.planning``."""
SHA256_PATTERN = r"^[0-9a-f]{64}$"
"""A SHA-256 digest in lower-case hex."""
SM3_PATTERN = r"^[0-9a-f]{64}$"
"""An SM3 digest (GB/T 32905, 32 bytes) in lower-case hex."""
CODE_PATTERN = r"^[a-z][a-z0-9_]*$"
"""A stable machine code such as ``unauthorized_route``."""
CREDIT_CODE_PATTERN = r"^[0-9A-HJ-NPQRTUWXY]{18}$"
"""An 18-character unified social credit code (统一社会信用代码, GB 32100)."""

INT_MAX = 2**31 - 1
"""Largest Avro ``int``."""
LONG_MAX = 2**63 - 1
"""Largest Avro ``long``."""


def _utc_millis(value: datetime) -> datetime:
    """Avro ``timestamp-millis`` holds UTC milliseconds: refuse naive times, drop sub-ms digits."""
    if value.tzinfo is UTC and not value.microsecond % 1000:
        return value  # as Avro decodes one: every model the router reads holds a few
    if value.tzinfo is None or value.utcoffset() is None:
        raise PydanticCustomError(
            "timezone_aware", "Input should have timezone info (UTC for the wire)"
        )
    try:
        value = value.astimezone(UTC)
    except OverflowError:
        # 0001-01-01T00:00:00+14:00 is in year 0 in UTC, 9999-12-31T23:59-12:00 in year 10000.
        raise PydanticCustomError(
            "datetime_out_of_range", "the instant in UTC must fall within the years 1 to 9999"
        ) from None
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


UtcDatetime = Annotated[datetime, AfterValidator(_utc_millis)]
"""A time-zone-aware instant, normalised to UTC milliseconds (Avro ``timestamp-millis``)."""

Text = Annotated[str, StringConstraints(min_length=1)]
"""A string that may not be empty."""
AgencyId = Annotated[str, StringConstraints(pattern=AGENCY_ID_PATTERN, max_length=128)]
"""An agency id from the agency registry."""
Sha256Hex = Annotated[str, StringConstraints(pattern=SHA256_PATTERN)]
"""A SHA-256 digest, lower-case hex."""
Sm3Hex = Annotated[str, StringConstraints(pattern=SM3_PATTERN)]
"""An SM3 digest, lower-case hex."""
CreditCode = Annotated[str, StringConstraints(pattern=CREDIT_CODE_PATTERN)]
"""A unified social credit code; the check digit is not verified here."""

Int32 = Annotated[int, Ge(-(2**31)), Le(INT_MAX)]
"""Any Avro ``int``."""
Long = Annotated[int, Ge(-(2**63)), Le(LONG_MAX)]
"""Any Avro ``long``."""
Count = Annotated[int, Ge(0), Le(LONG_MAX)]
"""A non-negative Avro ``long`` (sizes, tree sizes, indexes)."""
Fen = Annotated[int, Ge(0), Le(LONG_MAX)]
"""Money in fen (分, 1/100 yuan), never negative, an Avro ``long``."""
Quantity = Annotated[int, Ge(1), Le(INT_MAX)]
"""How many items or copies: at least one, an Avro ``int``."""


class AvroEnum(enum.StrEnum):
    """An Avro enum: member values are the schema's UPPER_SNAKE symbols."""


def _to_avro_value(value: Any) -> Any:
    if isinstance(value, AvroModel):
        return value.to_avro()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, list | tuple):
        return [_to_avro_value(v) for v in value]
    return value


class AvroModel(BaseModel):
    """A record that maps one-to-one onto an Avro record of the same field names."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, ser_json_bytes="base64", val_json_bytes="base64"
    )

    def to_avro(self) -> dict[str, Any]:
        """The Avro datum fastavro writes: datetimes, dates, UUIDs and bytes as Python objects."""
        return {name: _to_avro_value(getattr(self, name)) for name in type(self).model_fields}

    @classmethod
    def from_avro(cls, data: Mapping[str, Any]) -> Self:
        """Build from the datum fastavro reads; :class:`ValidationFailedError` lists problems."""
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            raise ValidationFailedError(problems_from_validation_error(e)) from e


class PayloadModel(AvroModel):
    """The payload of one message kind; ``KIND`` and ``SCHEMA_VERSION`` name its schema file."""

    KIND: ClassVar[str]
    """The message kind, e.g. ``criminal.transfer``."""
    SCHEMA_VERSION: ClassVar[int]
    """The latest schema version (``schemas/<KIND>/v<SCHEMA_VERSION>.avsc``) this model mirrors."""
    AUTHOR_FIELDS: ClassVar[tuple[str, ...]] = ()
    """Fields that name the party who wrote the message: the router refuses the message
    (``party_mismatch``) unless each names the envelope's signed sender."""


class IdDocumentType(AvroEnum):
    """Kind of identity document (证件类型); organisations use their credit code."""

    RESIDENT_ID_CARD = "RESIDENT_ID_CARD"  # 居民身份证
    PASSPORT = "PASSPORT"  # 护照
    HK_MACAO_PERMIT = "HK_MACAO_PERMIT"  # 港澳居民来往内地通行证
    TAIWAN_PERMIT = "TAIWAN_PERMIT"  # 台湾居民来往大陆通行证
    FOREIGN_PERMANENT_RESIDENT_ID = "FOREIGN_PERMANENT_RESIDENT_ID"  # 外国人永久居留身份证
    UNIFIED_SOCIAL_CREDIT_CODE = "UNIFIED_SOCIAL_CREDIT_CODE"  # 统一社会信用代码
    OTHER = "OTHER"


class Subject(AvroModel):
    """A party identified by name and identity document (当事人)."""

    name: Text
    id_type: IdDocumentType
    id_number: Text
    address: str | None = None


class AttachmentRef(AvroModel):
    """A document listed in a payload, pointing at one of the envelope's attachments."""

    title: Text
    attachment_name: Text
    attachment_sha256: Sha256Hex


def rule_error(rule: str, message: str, *, field: str, **context: Any) -> PydanticCustomError:
    """A cross-field rule's error; ``field`` names the field at fault in the reported path."""
    return PydanticCustomError(rule, message, {"field": field, **context})


def require_reasons(
    decision: object, reasons: object, *, when: object, what: str, field: str = "reasons"
) -> None:
    """Refusals state their reasons: raise a ``reasons_required`` error if ``reasons`` is empty."""
    if decision == when and not reasons:
        raise rule_error(
            "reasons_required", "{what} must state its reasons", field=field, what=what
        )
