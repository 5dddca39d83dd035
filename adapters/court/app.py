"""The old import path of the court adapter's builders, kept while a caller still uses it.

``adapters.court`` exports them (its spec's); delete this file once nothing imports
``adapters.court.app`` (tests/test_webhook_docs.py does).
"""

from adapters.court import build_service, create_app

__all__ = ["build_service", "create_app"]
