"""The settings a configuration file holds besides :class:`~mailstrom_py.Config`.

Where mail is stored (:class:`StorageSettings`) and how a process logs
(:class:`LoggingSettings`), and the whole of one file (:class:`LoadedConfig`).
These are plain values: opening the storage and setting up logging is the job of
whoever runs the mailer (the command line), since configuration imports neither.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Literal

from ..errors import ConfigError
from . import Config

__all__ = [
    "LoadedConfig",
    "LogFormat",
    "LoggingSettings",
    "StorageSettings",
    "Synchronous",
]

Synchronous = Literal["FULL", "NORMAL"]
LogFormat = Literal["text", "json"]

_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


@dataclass(frozen=True)
class StorageSettings:
    """Where the queue lives: an SQLite file, a PostgreSQL database, or memory.

    Give ``sqlite`` or ``postgres``, not both; with neither, mail is kept in
    memory (:class:`~mailstrom_py.MemoryStorage`) and lost when the process ends.

    Attributes:
        sqlite: the path of the :class:`~mailstrom_py.SqliteStorage` file; a
            relative path is relative to the working directory.
        postgres: a PostgreSQL connection string, either
            ``postgresql://user@host/db`` or ``host=... dbname=...``. Secret: it
            may hold a password, so it may be read from a file or an environment
            variable, and is shown with its password hidden.
        password: the PostgreSQL password, when the connection string has none;
            a secret.
        synchronous: SQLite's durability for adding mail, ``"FULL"`` or
            ``"NORMAL"`` (see :class:`~mailstrom_py.SqliteStorage`).
        attempt_synchronous: the same for the worker's bookkeeping.
        busy_timeout: seconds an SQLite write waits for another process's write.

    Raises:
        ConfigError: both or an empty location is given, a password is given
            without ``postgres``, or a value is out of range.
    """

    sqlite: str | None = None
    postgres: str | None = field(
        default=None, repr=False, metadata={"secret": "password within"}
    )
    password: str | None = field(default=None, repr=False)
    synchronous: Synchronous = "FULL"
    attempt_synchronous: Synchronous = "NORMAL"
    busy_timeout: float = 5.0

    def __post_init__(self) -> None:
        self._check_location()
        for name in ("synchronous", "attempt_synchronous"):
            if getattr(self, name) not in ("FULL", "NORMAL"):
                raise ConfigError(
                    f"must be 'FULL' or 'NORMAL', not {getattr(self, name)!r}", name
                )
        timeout = self.busy_timeout
        if (
            not isinstance(timeout, int | float)
            or not math.isfinite(timeout)
            or timeout <= 0
        ):
            raise ConfigError(
                f"must be a finite number of seconds > 0, not {timeout!r}",
                "busy_timeout",
            )

    def _check_location(self) -> None:
        if self.sqlite is not None and self.postgres is not None:
            raise ConfigError("give sqlite or postgres, not both", "sqlite")
        for name in ("sqlite", "postgres", "password"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise ConfigError("must be a non-empty string", name)
        if self.sqlite == ":memory:":
            raise ConfigError(
                "must name a file; leave storage out for memory", "sqlite"
            )
        if self.password is not None and self.postgres is None:
            raise ConfigError("a password is only used with postgres", "password")

    @property
    def kind(self) -> Literal["sqlite", "postgres", "memory"]:
        """Which backend these settings are for."""
        if self.sqlite is not None:
            return "sqlite"
        return "postgres" if self.postgres is not None else "memory"


@dataclass(frozen=True)
class LoggingSettings:
    """How a process running the mailer logs.

    Attributes:
        level: the least severe level logged, a name of :mod:`logging`
            (``"DEBUG"`` to ``"CRITICAL"``, in any case; kept upper case).
        format: ``"text"``, one readable line per record, or ``"json"``, one
            JSON object per line for a log collector.

    Raises:
        ConfigError: the level or the format is unknown.
    """

    level: str = "INFO"
    format: LogFormat = "text"

    def __post_init__(self) -> None:
        level = self.level.upper() if isinstance(self.level, str) else self.level
        if level not in _LEVELS:
            raise ConfigError(
                f"must be one of {', '.join(_LEVELS)}, not {self.level!r}", "level"
            )
        object.__setattr__(self, "level", level)
        if self.format not in ("text", "json"):
            raise ConfigError(
                f"must be 'text' or 'json', not {self.format!r}", "format"
            )

    @property
    def levelno(self) -> int:
        """The level as the number :mod:`logging` uses."""
        return logging.getLevelNamesMapping()[self.level]


@dataclass(frozen=True)
class LoadedConfig:
    """Everything one configuration file says.

    Attributes:
        config: the mailer's :class:`~mailstrom_py.Config`.
        storage: where the queue lives.
        logging: how to log.
        source: where the settings came from (the file's path), for messages.
    """

    config: Config
    storage: StorageSettings = field(default_factory=StorageSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    source: str = "<mapping>"
