"""Third-party tools a test checks our claims with (OpenSSL, a JDK, Node's AsyncAPI parser).

Where such a tool is missing, a developer's run skips the test and says how to install it; a
CI run (``CI`` set, as ``.ci/run`` sets it) fails instead, so CI can never pass by not running
the checks it exists for.
"""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest

__all__ = ["jdk", "tool_missing"]


def tool_missing(why: str) -> NoReturn:
    """Skip the test for ``why`` (what is missing and how to get it), or fail it in CI."""
    if os.environ.get("CI"):
        pytest.fail(why)
    pytest.skip(why)


def jdk() -> tuple[str, str]:
    """``(javac, java)``, or :func:`tool_missing`."""
    javac, java = shutil.which("javac"), shutil.which("java")
    if javac is None or java is None:
        tool_missing(
            "no JDK (javac): run deploy/setup-system, which installs openjdk-17-jdk-headless"
        )
    return javac, java
