"""The settings a configuration file holds besides :class:`~mailstrom_py.Config`.

Where mail is stored (:class:`StorageSettings`), how a process logs
(:class:`LoggingSettings`), how the queue dashboard is served
(:class:`DashboardSettings`), and the whole of one file (:class:`LoadedConfig`).
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
    "DashboardSettings",
    "LoadedConfig",
    "LogFormat",
    "LoggingSettings",
    "StorageSettings",
    "Synchronous",
    "split_listen",
]

Synchronous = Literal["FULL", "NORMAL"]
LogFormat = Literal["text", "json"]

_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_POSTGRES_ONLY = (
    "max_connections",
    "connect_timeout",
    "statement_timeout",
    "migration_timeout",
    "retention",
)


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
        max_connections: the most connections to PostgreSQL one process opens
            (see :class:`~mailstrom_py.PostgresStorage`).
        connect_timeout: seconds to connect to PostgreSQL, or to wait for a
            free connection.
        statement_timeout: seconds a PostgreSQL statement may run; a server
            that does not answer within this and a second is given up on.
        migration_timeout: seconds opening PostgreSQL storage may spend
            bringing its tables up to date (see
            :class:`~mailstrom_py.PostgresStorage`).
        retention: seconds after which PostgreSQL storage removes completed
            messages; unset keeps them until dropped.

    Raises:
        ConfigError: both or an empty location is given, a password or a
            PostgreSQL setting is given without ``postgres``, or a value is out
            of range.
    """

    sqlite: str | None = None
    postgres: str | None = field(
        default=None, repr=False, metadata={"secret": "password within"}
    )
    password: str | None = field(default=None, repr=False)
    synchronous: Synchronous = "FULL"
    attempt_synchronous: Synchronous = "NORMAL"
    busy_timeout: float = 5.0
    max_connections: int = 10
    connect_timeout: float = 5.0
    statement_timeout: float = 10.0
    migration_timeout: float = 600.0
    retention: float | None = None

    def __post_init__(self) -> None:
        self._check_location()
        self._check_postgres()
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

    def _check_postgres(self) -> None:
        count = self.max_connections
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ConfigError(
                f"must be an integer >= 1, not {count!r}", "max_connections"
            )
        for name in (
            "connect_timeout",
            "statement_timeout",
            "migration_timeout",
            "retention",
        ):
            value = getattr(self, name)
            if value is not None and (
                not isinstance(value, int | float)
                or not math.isfinite(value)
                or value <= 0
            ):
                raise ConfigError(
                    f"must be a finite number of seconds > 0, not {value!r}", name
                )
        if self.postgres is None:
            defaults = StorageSettings.__dataclass_fields__
            for name in _POSTGRES_ONLY:
                if getattr(self, name) != defaults[name].default:
                    raise ConfigError("is only used with postgres", name)

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


def split_listen(text: str) -> tuple[str, int]:
    """Return the host and port of ``HOST:PORT`` (``[::1]:8026`` for IPv6).

    Raises:
        ValueError: ``text`` is not of that form, or the port is not 1 to 65535.
    """
    host, colon, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        host = ""  # an IPv6 address needs its brackets
    if not colon or not host or not port.isascii() or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, such as 127.0.0.1:8026, got {text!r}")
    number = int(port)
    if not 1 <= number <= 65535:
        raise ValueError(f"the port must be 1 to 65535, got {text!r}")
    return host, number


@dataclass(frozen=True)
class DashboardSettings:
    """How ``mailstrom-py dashboard`` serves its pages.

    Attributes:
        listen: ``HOST:PORT`` to listen on; loopback by default.
        token: the token that actions (and message bodies) require; a
            secret. The command refuses one shorter than 16 characters, and
            without one makes one up at each start and prints it.
        read_only: serve the pages without any action.
        allowed_hosts: host names the pages may be reached by besides the
            listening address (and ``localhost`` when it is loopback), such as
            the name of a proxy in front; any other ``Host`` is refused, which
            keeps DNS rebinding out.

    Raises:
        ConfigError: ``listen`` is not ``HOST:PORT``.
    """

    listen: str = "127.0.0.1:8026"
    token: str | None = field(default=None, repr=False)
    read_only: bool = False
    allowed_hosts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        try:
            split_listen(self.listen)
        except ValueError as exc:
            raise ConfigError(str(exc), "listen") from None
        object.__setattr__(self, "allowed_hosts", tuple(self.allowed_hosts))


@dataclass(frozen=True)
class LoadedConfig:
    """Everything one configuration file says.

    Attributes:
        config: the mailer's :class:`~mailstrom_py.Config`.
        storage: where the queue lives.
        logging: how to log.
        dashboard: how the queue dashboard is served.
        source: where the settings came from (the file's path), for messages.
    """

    config: Config
    storage: StorageSettings = field(default_factory=StorageSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    source: str = "<mapping>"
    dashboard: DashboardSettings = field(default_factory=DashboardSettings)
