"""Logging for the commands: to standard error, as text or one JSON object a line.

The library's modules log through loggers without handlers; a command that
runs the mailer gives the root logger one handler, here, as the ``[logging]``
section of its configuration file and its own options say.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import UTC, datetime
from typing import TextIO

from ..config.settings import LogFormat, LoggingSettings

__all__ = [
    "LEVELS",
    "JsonFormatter",
    "add_logging_options",
    "configure_logging",
    "logging_settings",
]

#: The level names ``--log-level`` takes, in any case.
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# The handler's name, so that configuring again replaces it rather than
# adding a second one.
_HANDLER_NAME = "mailstrom-py"


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object on one line.

    Its keys: ``time`` (UTC, ISO 8601 with milliseconds), ``level``, ``logger``
    and ``message``, and ``exception`` or ``stack`` when the record carries a
    traceback or a stack. Line breaks inside values are escaped, so each
    record is exactly one line.
    """

    def format(self, record: logging.LogRecord) -> str:
        created = datetime.fromtimestamp(record.created, UTC)
        entry: dict[str, str] = {
            "time": created.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry)


def add_logging_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--log-level`` and ``--log-format``, which override ``[logging]``."""
    parser.add_argument(
        "--log-level",
        type=str.upper,
        choices=LEVELS,
        metavar="LEVEL",
        help="the least severe level logged: " + ", ".join(LEVELS) + " (any case);"
        " default: the configuration file's, else INFO",
    )
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        help="text lines, or one JSON object per line (time, level, logger,"
        " message); default: the configuration file's, else text",
    )


def logging_settings(
    settings: LoggingSettings, level: str | None, log_format: LogFormat | None
) -> LoggingSettings:
    """Return ``settings`` with the options that were given put in place."""
    return LoggingSettings(
        level=settings.level if level is None else level,
        format=settings.format if log_format is None else log_format,
    )


def configure_logging(
    settings: LoggingSettings, stream: TextIO | None = None
) -> logging.Handler:
    """Log every record at ``settings.level`` or above to ``stream`` (standard
    error by default), formatted as ``settings.format`` says.

    The root logger gets one handler; a handler an earlier call added is
    replaced. Returns the handler.
    """
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.set_name(_HANDLER_NAME)
    if settings.format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.levelno)
    return handler
