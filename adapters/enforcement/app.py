"""The old import path of the enforcement adapter's builders, kept while a caller still uses it.

``adapters.enforcement`` exports them (its spec's); delete this file once nothing imports
``adapters.enforcement.app`` (tests/test_webhook_docs.py does).
"""

from adapters.enforcement import build_service, create_app

__all__ = ["build_service", "create_app"]
