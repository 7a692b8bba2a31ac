"""The arguments of :class:`~mailstrom_py.storage.postgres.PostgresStorage`
checked, and the offset between the callers' clock and the database's."""

from __future__ import annotations

import math
import re
import time

from ...errors import ConfigError

__all__ = ["Offset", "check_arguments", "check_seconds"]

_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,39}")


class Offset:
    """How far the callers' clock is ahead of the database's, as last measured:
    a caller's ``now`` against the database's time of the same call."""

    def __init__(self) -> None:
        self._seconds: float | None = None

    def learn(self, caller: float, database: float) -> None:
        self._seconds = float(caller) - database

    def of(self, database: float) -> float:
        """The offset; until a call measured it, the host's clock's."""
        if self._seconds is None:
            return time.time() - database
        return self._seconds


def check_arguments(
    clock: str,
    schema: str,
    min_connections: int,
    max_connections: int,
    connect_timeout: float,
) -> None:
    """Raise :class:`~mailstrom_py.errors.ConfigError` naming the first
    argument out of range."""
    if clock not in ("database", "caller"):
        raise ConfigError(f"must be 'database' or 'caller', not {clock!r}", "clock")
    if not isinstance(schema, str) or not _SCHEMA_NAME.fullmatch(schema):
        raise ConfigError(
            f"must be a lower-case identifier (a-z, 0-9, _), not {schema!r}", "schema"
        )
    for name, value, least in (
        ("min_connections", min_connections, 0),
        ("max_connections", max_connections, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ConfigError(f"must be an integer >= {least}, not {value!r}", name)
    if min_connections > max_connections:
        raise ConfigError("must not be above max_connections", "min_connections")
    check_seconds("connect_timeout", connect_timeout)


def check_seconds(name: str, value: object) -> None:
    """Raise :class:`~mailstrom_py.errors.ConfigError` unless ``value`` is a
    finite number of seconds above 0."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ConfigError(
            f"must be a finite number of seconds > 0, not {value!r}", name
        )
