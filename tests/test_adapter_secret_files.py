"""The adapter CLI's secret files: a webhook HMAC secret that group or others can read is
refused, as a private key is (bus/secret_files.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bus.errors import ConfigError

PLANNING = "ygh.regulator.planning"


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660], ids=oct)
def test_the_cli_refuses_a_webhook_secret_group_or_others_can_read(
    tmp_path: Path, mode: int
) -> None:
    """As for a private key: a readable HMAC secret lets anyone forge the bus's webhooks."""
    from bus.cli.adapter import _config

    secret = tmp_path / f"{PLANNING}.webhook-secret"
    secret.write_bytes(b"s3cret\n")
    secret.chmod(mode)
    with pytest.raises(ConfigError, match=f"{re.escape(str(secret))} has mode {mode:04o}"):
        _config("regulators", [PLANNING], tmp_path, [f"{PLANNING}=https://x.example"], 2048, 60.0)
