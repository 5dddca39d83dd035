"""Reading the YAML files a ministry edits (agency registry, SLA policies, holiday overrides,
attachment retention): one parser, and one way to say that a file cannot be read.

What each file must hold, and how its problems are named, stays with the module that owns it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from bus.errors import ConfigError

__all__ = ["read_yaml", "safe_load_yaml"]

_C_SAFE_LOADER: type[yaml.CSafeLoader] | None = getattr(yaml, "CSafeLoader", None)


def safe_load_yaml(text: str) -> Any:
    """``yaml.safe_load(text)``, parsed by libyaml when PyYAML has it (several times faster).

    Only the parser differs (the resolver and constructor are PyYAML's own either way). A text
    libyaml refuses is parsed again by PyYAML, so a broken file is reported in the same words
    (and with the same quoted line) as before.
    """
    if _C_SAFE_LOADER is not None:
        try:
            return yaml.load(text, Loader=_C_SAFE_LOADER)
        except yaml.YAMLError:
            pass
    return yaml.safe_load(text)


def read_yaml(path: Path, what: str) -> Any:
    """The YAML document in ``path``; ConfigError ``"<path>: cannot read <what>: <why>"`` when
    the file cannot be read or is not YAML."""
    try:
        return safe_load_yaml(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: cannot read {what}: {e}") from e
