"""The ops console: open deadlines, warnings and breaches, delivery health, response times
and case timelines, as server-rendered HTML (``casebus console``)."""

from bus.console.app import create_app

__all__ = ["create_app"]
