"""The checks configuration values share: host names, timeouts, counts, ports.

Each raises :class:`~mailstrom_py.errors.ConfigError` naming the field when the
value does not pass, and returns ``None`` otherwise.
"""

from __future__ import annotations

import math
import re

from .errors import ConfigError

_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_LITERAL = re.compile(r"^\[[0-9A-Fa-f:.]+\]$|^\[IPv6:[0-9A-Fa-f:.]+\]$")


def _check_hostname(value: object, name: str, *, allow_literal: bool) -> None:
    if not isinstance(value, str) or not value:
        raise ConfigError("must be a non-empty host name", name)
    if allow_literal and _LITERAL.match(value):
        return
    labels = value.rstrip(".").split(".")
    if len(value) > 253 or not all(_LABEL.match(label) for label in labels):
        raise ConfigError(f"{value!r} is not a valid host name", name)


def _check_timeout(value: object, name: str) -> None:
    if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise ConfigError(
            f"must be a finite number of seconds > 0, not {value!r}", name
        )


def _check_wait(value: object, name: str) -> None:
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not math.isfinite(value)
        or value < 0
    ):
        raise ConfigError(
            f"must be a finite number of seconds >= 0, not {value!r}", name
        )


def _check_count(value: object, name: str, *, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"must be an integer >= {minimum}, not {value!r}", name)


def _check_port(value: object, name: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 65536:
        raise ConfigError(f"must be a TCP port (1-65535), not {value!r}", name)
