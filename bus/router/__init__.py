"""The bus router: validate, authorize, audit, deliver."""

from bus.router.classify import Classifier, Verdict
from bus.router.service import Router

__all__ = ["Classifier", "Router", "Verdict"]
