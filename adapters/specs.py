"""Every adapter's spec, in one list: what ``casebus adapter`` serves and the tests check.

A new kind of department is one more package with an :class:`~adapters._framework.spec.AdapterSpec`
and one more line here; the CLI and the framework need nothing else.
"""

from __future__ import annotations

from typing import Final

from adapters import court, enforcement, police, procuratorate, regulators
from adapters._framework.spec import AdapterSpec
from bus.errors import ConfigError

__all__ = ["SPECS", "spec"]

SPECS: Final[tuple[AdapterSpec, ...]] = (
    regulators.SPEC,
    enforcement.SPEC,
    police.SPEC,
    procuratorate.SPEC,
    court.SPEC,
)
"""Every adapter, in the order ``casebus adapter --help`` lists them."""


def spec(kind: str) -> AdapterSpec:
    """The spec of adapter ``kind``; ConfigError naming the known kinds if there is none."""
    for s in SPECS:
        if s.kind == kind:
            return s
    raise ConfigError(f"no adapter {kind!r}; known: {', '.join(s.kind for s in SPECS)}")
