"""The old import path of the police adapter's builders, kept while a caller still uses it.

``adapters.police`` exports them (its spec's); delete this file once nothing imports
``adapters.police.app`` (tests/test_webhook_docs.py does).
"""

from adapters.police import build_service, create_app

__all__ = ["build_service", "create_app"]
