"""structlog set-up, called once by each entry point, and the choice of how logs look.

Services (under systemd, Kubernetes, compose: stderr is no terminal) log JSON lines at info, for
machines to collect. A person typing ``casebus ...`` or ``make demo`` at a terminal gets a
readable console renderer and only warnings and worse, so start-up chatter (migrations applied,
topics created) does not bury what they asked for. Anyone can say otherwise: ``--log-format``,
``--dev``, ``CASEBUS_LOG_FORMAT`` and ``CASEBUS_LOG_LEVEL`` win over the guess.

structlog (which loads rich and asyncio) is imported only when logging is configured:
``casebus`` uses :func:`configure_logging_on_import`, so a command that never imports structlog,
such as ``casebus sla due``, does not pay for it (tests/test_cli_startup.py).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal, cast, get_args

from bus.errors import ConfigError

if TYPE_CHECKING:
    from importlib.abc import Loader

    import structlog

__all__ = [
    "LogChoice",
    "LogFormat",
    "choose_logging",
    "configure_logging",
    "configure_logging_on_import",
]

LogFormat = Literal["json", "console"]
LogLevel = Literal["debug", "info", "warning", "error"]

_PERSON_LEVEL: LogLevel = "warning"
"""What a person at a terminal sees when nobody chose a level."""


@dataclass(frozen=True, slots=True)
class LogChoice:
    """How to log: the renderer and the lowest level shown."""

    log_format: LogFormat
    level: LogLevel


def choose_logging(
    *,
    flag: str | None,
    setting_format: LogFormat | None,
    setting_level: LogLevel | None,
    is_terminal: bool,
) -> LogChoice:
    """Decide the renderer and level: a command-line ``flag`` first, then the settings that were
    given explicitly (None when left at their defaults), then whether a person is watching.

    ConfigError (a ValueError) names ``--log-format`` when the flag is not a known format.
    """
    if flag is not None and flag not in get_args(LogFormat):
        raise ConfigError(f"--log-format {flag!r}: use one of {', '.join(get_args(LogFormat))}")
    chosen = None if flag is None else _as_format(flag)
    guessed = chosen is None and setting_format is None
    log_format: LogFormat = chosen or setting_format or ("console" if is_terminal else "json")
    if setting_level is not None:
        level = setting_level
    else:
        level = _PERSON_LEVEL if guessed and is_terminal else "info"
    return LogChoice(log_format, level)


def _as_format(flag: str) -> LogFormat:
    return "json" if flag == "json" else "console"


def configure_logging(*, log_format: LogFormat = "json", level: str = "info") -> None:
    """JSON lines for services, a readable console for people."""
    import logging

    import structlog

    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=_current_stderr,
        cache_logger_on_first_use=False,
    )


def _current_stderr(*_args: object) -> structlog.PrintLogger:
    # Looked up at each use, not at configure time: a CLI runner or test capture that swaps
    # sys.stderr and later closes its stream must not leave every logger writing to it.
    import structlog

    return structlog.PrintLogger(file=sys.stderr)


def configure_logging_on_import(*, log_format: LogFormat = "json", level: str = "info") -> None:
    """:func:`configure_logging`, now if structlog is loaded, else the moment it is imported.

    Everything in casebus logs through structlog, so nothing can log before structlog is
    imported; configuring it right after its import, before the importing module goes on,
    behaves as configuring it now, without loading it in a process that never logs. The last
    call wins, as with :func:`configure_logging`.
    """
    _ConfigureOnImport.pending = (log_format, level)
    if "structlog" in sys.modules:
        _ConfigureOnImport.apply()
    elif not any(isinstance(f, _ConfigureOnImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _ConfigureOnImport())


class _ConfigureOnImport:
    """A meta path finder that finds nothing itself: it wraps structlog's loader, so that
    logging is configured once structlog's ``__init__`` has run, then leaves ``sys.meta_path``."""

    pending: tuple[LogFormat, str] | None = None

    @classmethod
    def apply(cls) -> None:
        if cls.pending is not None:
            log_format, level = cls.pending
            cls.pending = None
            configure_logging(log_format=log_format, level=level)

    def find_spec(
        self, name: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if name != "structlog":
            return None
        sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _ConfigureOnImport)]
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            spec: ModuleSpec | None = find(name, path, target) if find is not None else None
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = cast("Loader", _ThenConfigure(spec.loader))
                return spec
        return None


class _ThenConfigure:
    """A module loader that runs the real one, then applies the pending logging set-up."""

    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def __getattr__(self, name: str) -> Any:  # get_source, get_resource_reader, ...
        return getattr(self._loader, name)

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        module: ModuleType | None = self._loader.create_module(spec)
        return module

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        _ConfigureOnImport.apply()
