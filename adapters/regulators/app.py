"""The old import path of the regulators adapter's builders, kept while a caller still uses it.

``adapters.regulators`` exports them (its spec's); delete this file once nothing imports
``adapters.regulators.app`` (tests/test_webhook_docs.py does).
"""

from adapters.regulators import build_service, create_app

__all__ = ["build_service", "create_app"]
