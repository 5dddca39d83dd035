"""The agency registry file (``deploy/agencies.yaml``): who takes part in the bus.

The file is the source of truth that ``casebus agency sync`` loads into PostgreSQL and that
``casebus topics ensure`` reads to make one inbox per agency.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bus.config_files import read_yaml
from bus.errors import ConfigError

__all__ = ["AGENCY_ID_PATTERN", "Agency", "AgencyKind", "Registry", "load_registry"]

AgencyKind = Literal["enforcement", "regulator", "police", "procuratorate", "court", "bus"]
AGENCY_ID_PATTERN = r"^[a-z0-9]+(\.[a-z0-9_]+)*$"

# GB 32100-2015: 18 characters from this alphabet, the last one a check character.
_USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)


def uscc_is_valid(code: str) -> bool:
    """Whether an 18-character unified social credit code (统一社会信用代码) checks out."""
    if len(code) != 18 or any(c not in _USCC_ALPHABET for c in code):
        return False
    total = sum(_USCC_ALPHABET.index(c) * w for c, w in zip(code[:17], _USCC_WEIGHTS, strict=True))
    return _USCC_ALPHABET[(31 - total % 31) % 31] == code[17]


class Agency(BaseModel):
    """One party of the bus."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: Annotated[str, Field(pattern=AGENCY_ID_PATTERN, max_length=100)]
    kind: AgencyKind
    name: Annotated[str, Field(min_length=1)]
    name_en: str | None = None
    uscc: str | None = Field(None, description="统一社会信用代码, 18 characters")
    parent: str | None = None

    @model_validator(mode="after")
    def _check_uscc(self) -> Agency:
        if self.uscc is not None and not uscc_is_valid(self.uscc):
            raise ValueError(f"uscc {self.uscc!r} is not a valid unified social credit code")
        return self


class Registry(BaseModel):
    """Every agency of one deployment, by id."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    agencies: list[Agency]

    @model_validator(mode="after")
    def _consistent(self) -> Registry:
        seen: set[str] = set()
        problems = []
        for a in self.agencies:
            if a.id in seen:
                problems.append(f"agency id {a.id!r} appears twice")
            seen.add(a.id)
        for a in self.agencies:
            if a.parent is not None and a.parent not in seen:
                problems.append(f"agency {a.id!r}: parent {a.parent!r} is not in the registry")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def get(self, agency_id: str) -> Agency | None:
        """The agency with this id, or None."""
        return next((a for a in self.agencies if a.id == agency_id), None)

    def ids(self) -> list[str]:
        """Every agency id, in file order."""
        return [a.id for a in self.agencies]

    def of_kind(self, kind: AgencyKind) -> list[Agency]:
        """Every agency of one kind."""
        return [a for a in self.agencies if a.kind == kind]


def load_registry(path: Path) -> Registry:
    """Read and check the registry file; a bad file raises ConfigError naming each problem."""
    raw = read_yaml(path, "agency registry")
    try:
        return Registry.model_validate(raw)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            loc = err["loc"]
            where = ".".join(str(p) for p in loc)
            if len(loc) >= 2 and loc[0] == "agencies" and isinstance(loc[1], int):
                agencies = raw.get("agencies") if isinstance(raw, dict) else None
                if isinstance(agencies, list) and loc[1] < len(agencies):
                    entry = agencies[loc[1]]
                    if isinstance(entry, dict) and "id" in entry:
                        where += f" (id {entry['id']!r})"
            problems.append(f"{where}: {err['msg']} (got {err.get('input')!r})")
        raise ConfigError(f"{path}: " + "; ".join(problems)) from e
