"""How long a case file is kept: the policy (``deploy/attachment-retention.yaml``) and the pure
decision of when a file's retention runs out.

A file is kept until the latest of: for every message referring to it, that message's
``sent_at`` plus the retention of its kind; and its last upload plus the grace period an upload
gets to be referred to. The decision is a function of those facts alone, so a millisecond test
covers every rule; :mod:`bus.attachments._sweep` reads the facts from PostgreSQL and carries
the decision out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bus.config_files import read_yaml
from bus.errors import ConfigError
from bus.models import KINDS
from bus.settings import REPO_ROOT

__all__ = [
    "DEFAULT_RETENTION_PATH",
    "KindRetention",
    "MessageRef",
    "RetentionPeriod",
    "RetentionPolicy",
    "RetentionRule",
    "RetentionVerdict",
    "load_retention",
    "retention_verdict",
]

DEFAULT_RETENTION_PATH: Final = REPO_ROOT / "deploy" / "attachment-retention.yaml"
"""The shipped retention policy."""

RetentionRule = Literal[
    "kind_retention", "default_retention", "unknown_kind_retention", "upload_grace"
]
"""Which period kept a file longest: its kind's entry, the default (a kind without an entry),
the longest of all (a reference of unknown kind), or the grace period of its last upload."""


class RetentionPeriod(BaseModel):
    """A period of whole days (``{days: N}`` in the file)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    days: int = Field(ge=1, le=365_250, description="Whole days of 24 hours.")


class KindRetention(RetentionPeriod):
    """The retention of one message kind's attachments."""

    basis: str | None = Field(None, description="Why this period, for the people who audit it.")


class RetentionPolicy(BaseModel):
    """The whole retention policy file; see ``deploy/attachment-retention.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1]
    default: RetentionPeriod
    unreferenced_upload_grace: RetentionPeriod
    kinds: dict[str, KindRetention] = Field(default_factory=dict)

    @field_validator("kinds")
    @classmethod
    def _known_kinds(cls, value: dict[str, KindRetention]) -> dict[str, KindRetention]:
        unknown = sorted(k for k in value if k not in KINDS)
        if unknown:
            raise ValueError(
                f"{', '.join(unknown)}: not a message kind (design.md §4); a typo here would "
                "leave that kind's files on the default period"
            )
        return value

    @property
    def longest_days(self) -> int:
        """The longest period of the policy: what a reference of unknown kind is kept for."""
        return max([self.default.days, *(k.days for k in self.kinds.values())])

    @property
    def shortest_days(self) -> int:
        """The shortest retention of a reference: no file referred to later than this many
        days ago can be due, which lets the sweep skip it without reading its references."""
        return min([self.default.days, *(k.days for k in self.kinds.values())])

    def retention_of(self, kind: str | None) -> tuple[RetentionRule, int]:
        """The rule and the days that keep a file a message of ``kind`` refers to."""
        if kind is None:
            return "unknown_kind_retention", self.longest_days
        entry = self.kinds.get(kind)
        if entry is None:
            return "default_retention", self.default.days
        return "kind_retention", entry.days


def _describe(err: Mapping[str, Any]) -> str:
    where = ".".join(str(p) for p in err["loc"]) or "(top level)"
    value = err.get("input")
    shown = "" if isinstance(value, dict | list) or value is None else f" (value {value!r})"
    return f"{where}{shown}: {err['msg']}"


def load_retention(path: Path | str = DEFAULT_RETENTION_PATH) -> RetentionPolicy:
    """Read and check a retention policy file; ConfigError naming each bad field, its value
    and the rule it broke."""
    path = Path(path)
    raw = read_yaml(path, "the attachment retention file")
    try:
        return RetentionPolicy.model_validate(raw)
    except ValidationError as e:
        problems = "; ".join(_describe(err) for err in e.errors())
        raise ConfigError(f"{path}: invalid attachment retention file: {problems}") from e


@dataclass(frozen=True, slots=True)
class MessageRef:
    """A message referring to a file: its id, kind (None: unknown) and when it was sent."""

    message_id: str
    kind: str | None
    sent_at: datetime


@dataclass(frozen=True, slots=True)
class RetentionVerdict:
    """Until when a file is kept, and why.

    ``rule`` and ``retention_days`` are the period that ends last; ``message`` the message it
    runs from (None when the upload's grace ends last); ``newest_message_at`` the newest
    message referring to the file, ``references`` how many messages do.
    """

    expires_at: datetime
    rule: RetentionRule
    retention_days: int
    message: MessageRef | None
    newest_message_at: datetime | None
    references: int
    last_uploaded_at: datetime

    def expired(self, now: datetime) -> bool:
        """Whether the file may be deleted at ``now``."""
        return now >= self.expires_at

    def describe(self) -> str:
        """The rule in a sentence, as the deletion record and a 410 answer name it."""
        if self.message is None:
            return (
                f"the {self.retention_days}-day grace of an upload no message referred to "
                f"(last uploaded {self.last_uploaded_at.isoformat()})"
                if self.references == 0
                else f"the {self.retention_days}-day grace of its last upload "
                f"({self.last_uploaded_at.isoformat()})"
            )
        kind = self.message.kind or "a message of unknown kind"
        return (
            f"the {self.retention_days}-day retention of {kind} ({self.rule}) from message "
            f"{self.message.message_id} sent {self.message.sent_at.isoformat()}"
        )


def retention_verdict(
    policy: RetentionPolicy, refs: Iterable[MessageRef], *, last_uploaded_at: datetime
) -> RetentionVerdict:
    """When the file that ``refs`` refer to and that was last uploaded at ``last_uploaded_at``
    may go: the latest end of any period that protects it. On a tie a message's retention is
    named rather than the upload's grace, as the reason a department will recognise."""
    grace = policy.unreferenced_upload_grace.days
    best = RetentionVerdict(
        expires_at=last_uploaded_at + timedelta(days=grace),
        rule="upload_grace",
        retention_days=grace,
        message=None,
        newest_message_at=None,
        references=0,
        last_uploaded_at=last_uploaded_at,
    )
    newest: datetime | None = None
    seen: set[str] = set()
    for ref in refs:
        seen.add(ref.message_id)
        newest = ref.sent_at if newest is None else max(newest, ref.sent_at)
        rule, days = policy.retention_of(ref.kind)
        ends = ref.sent_at + timedelta(days=days)
        if ends >= best.expires_at and (best.message is None or ends > best.expires_at):
            best = RetentionVerdict(ends, rule, days, ref, None, 0, last_uploaded_at)
    return RetentionVerdict(
        best.expires_at,
        best.rule,
        best.retention_days,
        best.message,
        newest,
        len(seen),
        last_uploaded_at,
    )
