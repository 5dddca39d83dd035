"""The old import path of the procuratorate adapter's builders, kept while a caller still uses it.

``adapters.procuratorate`` exports them (its spec's); delete this file once nothing imports
``adapters.procuratorate.app`` (tests/test_webhook_docs.py does).
"""

from adapters.procuratorate import build_service, create_app

__all__ = ["build_service", "create_app"]
