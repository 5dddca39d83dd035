"""Reading a file that holds a secret (a private key, an HMAC key): one check, for every caller.

A secret that group or others may read is as good as leaked, so it is refused before it is used,
with an error naming the file, its mode and the fix. The check looks at the file actually opened
(``fstat`` of the descriptor), not at whatever the path names a moment later.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from bus.errors import ConfigError

__all__ = ["read_secret_file"]


def read_secret_file(
    path: str | os.PathLike[str], *, what: str, leak: str, agency: str | None = None
) -> bytes:
    """The bytes of ``path``; ConfigError if it cannot be opened or group or others may access
    it. ``what`` names the file in the error ("private key file"), ``leak`` says what a leak
    would allow ("anyone could sign as X")."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as e:
        raise ConfigError(f"cannot open {what} {path}: {e.strerror}", agency=agency) from e
    with os.fdopen(fd, "rb") as f:
        mode = stat.S_IMODE(os.fstat(f.fileno()).st_mode)
        if os.name == "posix" and mode & 0o077:
            raise ConfigError(
                f"{what} {path} has mode {mode:04o}: group or others can access it; "
                f"run `chmod 600 {path}` ({leak})",
                agency=agency,
            )
        return f.read()
