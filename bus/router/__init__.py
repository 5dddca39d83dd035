"""The bus router: validate, authorize, audit, deliver."""

from bus.router.classify import Classifier
from bus.router.service import Router
from bus.router.verdict import Accepted, Refused, Verdict

__all__ = ["Accepted", "Classifier", "Refused", "Router", "Verdict"]
