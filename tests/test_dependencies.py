"""Dependencies whose absence costs CPU silently rather than failing: held here."""

from __future__ import annotations

import asyncio
import importlib.util

import httpcore._synchronization as httpcore_sync


def test_sniffio_is_installed_so_httpcore_never_retries_a_failed_import() -> None:
    # httpcore imports sniffio inside current_async_library(), called on every pool operation
    # of a webhook POST; a missing sniffio is an ImportError (and a sys.path scan) each time.
    assert importlib.util.find_spec("sniffio") is not None

    async def ask() -> str:
        return httpcore_sync.current_async_library()

    assert asyncio.run(ask()) == "asyncio"
