"""structlog set-up, called once by each entry point, and the choice of how logs look.

Services (under systemd, Kubernetes, compose: stderr is no terminal) log JSON lines at info, for
machines to collect. A person typing ``casebus ...`` or ``make demo`` at a terminal gets a
readable console renderer and only warnings and worse, so start-up chatter (migrations applied,
topics created) does not bury what they asked for. Anyone can say otherwise: ``--log-format``,
``--dev``, ``CASEBUS_LOG_FORMAT`` and ``CASEBUS_LOG_LEVEL`` win over the guess.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from typing import Literal, get_args

import structlog

from bus.errors import ConfigError

__all__ = ["LogChoice", "LogFormat", "choose_logging", "configure_logging"]

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
    return structlog.PrintLogger(file=sys.stderr)
