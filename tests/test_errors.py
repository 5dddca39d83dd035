"""The error hierarchy: every public casebus error is defined in bus.errors and named ``...Error``,
and a problem's value renders as short, valid JSON."""

from __future__ import annotations

import importlib
import inspect
import json
import math
import pkgutil
from types import ModuleType

import pytest

import adapters
import bus
import bus.errors
from bus.errors import MAX_RENDERED_CHARS, CasebusError, Problem, render_value

# Exceptions that stay beside their code (bus/errors.py's docstring says why): Kafka protocol
# errors that subclass aiokafka's KafkaError.
STAY_OUTSIDE = {"bus.router.eos.UnstableOffsetCommitError", "bus.router.eos.MembershipFencedError"}


def _every_module() -> list[ModuleType]:
    found = []
    for package in (bus, adapters):
        found.append(package)
        for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            found.append(importlib.import_module(info.name))
    return found


def _exceptions_defined_in(module: ModuleType) -> list[type[BaseException]]:
    return [
        value
        for value in vars(module).values()
        if inspect.isclass(value)
        and issubclass(value, BaseException)
        and value.__module__ == module.__name__
    ]


def _subclasses(cls: type[CasebusError]) -> set[type[CasebusError]]:
    found = set(cls.__subclasses__())
    for sub in list(found):
        found |= _subclasses(sub)
    return found


def test_every_casebus_error_is_defined_in_bus_errors() -> None:
    modules = _every_module()
    assert len(modules) > 100  # the walk found the packages' modules
    elsewhere = sorted(
        f"{cls.__module__}.{cls.__qualname__}"
        for cls in _subclasses(CasebusError)
        if cls.__module__.startswith(("bus.", "adapters.")) and cls.__module__ != "bus.errors"
    )
    assert elsewhere == []


def test_public_exceptions_outside_bus_errors_are_only_the_kafka_protocol_ones() -> None:
    public = {
        f"{module.__name__}.{cls.__qualname__}"
        for module in _every_module()
        if module is not bus.errors
        for cls in _exceptions_defined_in(module)
        if not cls.__name__.startswith("_")
    }
    assert public == STAY_OUTSIDE


def test_every_public_exception_is_named_error_and_exported() -> None:
    defined = _exceptions_defined_in(bus.errors)
    assert CasebusError in defined
    misnamed = [c.__name__ for c in defined if not c.__name__.endswith("Error")]
    assert misnamed == []
    assert {c.__name__ for c in defined} <= set(bus.errors.__all__)
    for name in STAY_OUTSIDE:
        assert name.endswith("Error")


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (None, None),
        (True, True),
        (7, 7),
        (-(10**39), -(10**39)),
        (1.5, 1.5),
        (math.nan, "nan"),
        (math.inf, "inf"),
        (-math.inf, "-inf"),
        ("阳城执〔2026〕1号", "阳城执〔2026〕1号"),
        ("a\ud800b", "a\\ud800b"),
        ([1, "x"], "[1, 'x']"),
    ],
)
def test_a_value_renders_as_itself_or_as_safe_text(value: object, shown: object) -> None:
    assert render_value(value) == shown


def test_an_integer_too_long_to_print_renders_as_its_size() -> None:
    huge = 10**5000  # str() of it raises ValueError (more than 4,300 digits)
    assert render_value(huge) == "<an integer of about 5001 digits>"
    assert render_value([huge]) == "<list>"


def test_long_text_is_cut_and_says_how_long_it_was() -> None:
    shown = render_value("案" * 3000)
    assert isinstance(shown, str)
    assert len(shown) < MAX_RENDERED_CHARS + 30 and shown.endswith("…(3000 characters)")


def test_a_problem_with_any_value_dumps_as_strict_json() -> None:
    for value in (math.nan, 10**5000, "x" * 10_000, "\udfff"):
        out = json.dumps(Problem("$", "r", "m", value=value).as_dict(), allow_nan=False)
        assert len(out) < 1000
        out.encode("utf-8")
