"""The checks configuration values share: host names, timeouts, counts, ports.

Each raises :class:`~mailstrom_py.errors.ConfigError` naming the field when the
value does not pass, and returns ``None`` otherwise.
"""

from __future__ import annotations

import ipaddress
import math
import re

from ..errors import ConfigError

__all__ = [
    "check_count",
    "check_hostname",
    "check_port",
    "check_timeout",
    "check_wait",
    "host_or_address",
]

_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_LITERAL = re.compile(r"^\[[0-9A-Fa-f:.]+\]$|^\[IPv6:[0-9A-Fa-f:.]+\]$")
# Host names as resolvers accept them: "_" is common in container and service
# names, though RFC 952 host names leave it out.
_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")


def check_hostname(value: object, name: str, *, allow_literal: bool) -> None:
    """Check a DNS host name (RFC 1123 labels); an address literal if allowed."""
    if not isinstance(value, str) or not value:
        raise ConfigError("must be a non-empty host name", name)
    if allow_literal and _LITERAL.match(value):
        return
    labels = value.rstrip(".").split(".")
    if len(value) > 253 or not all(_LABEL.match(label) for label in labels):
        raise ConfigError(f"{value!r} is not a valid host name", name)


def host_or_address(value: object, name: str) -> str:
    """Return the host to dial for ``value``: a host name (``_`` allowed) as
    given, or an IPv4 or IPv6 address, bracketed or not, without its brackets.

    ``"[::1]"``, ``"[IPv6:::1]"`` and ``"::1"`` all give ``"::1"``, the form
    sockets dial and TLS matches against a certificate's IP addresses.
    """
    if not isinstance(value, str) or not value:
        raise ConfigError("must be a non-empty host name or IP address", name)
    if value[:1] == "[" and value[-1:] == "]":
        return _address_literal(value, name)
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        pass
    labels = value.rstrip(".").split(".")
    if len(value) > 253 or not all(_HOST_LABEL.match(label) for label in labels):
        raise ConfigError(f"{value!r} is not a valid host name or address", name)
    return value


def _address_literal(value: str, name: str) -> str:
    """The bare address of ``"[address]"`` or, RFC 5321 §4.1.3, ``"[IPv6:address]"``."""
    literal = value[1:-1]
    tagged = literal[:5].lower() == "ipv6:"
    try:
        address = ipaddress.ip_address(literal[5:] if tagged else literal)
    except ValueError:
        address = None
    if address is None or (tagged and address.version != 6):
        raise ConfigError(f"{value!r} is not a valid IP address", name)
    return str(address)


def check_timeout(value: object, name: str) -> None:
    """Check a number of seconds: finite and above zero."""
    if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise ConfigError(
            f"must be a finite number of seconds > 0, not {value!r}", name
        )


def check_wait(value: object, name: str) -> None:
    """Check a number of seconds that may be zero: finite and not below it."""
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not math.isfinite(value)
        or value < 0
    ):
        raise ConfigError(
            f"must be a finite number of seconds >= 0, not {value!r}", name
        )


def check_count(value: object, name: str, *, minimum: int) -> None:
    """Check an integer (not a bool) of at least ``minimum``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"must be an integer >= {minimum}, not {value!r}", name)


def check_port(value: object, name: str) -> None:
    """Check a TCP port number, 1 to 65535."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 65536:
        raise ConfigError(f"must be a TCP port (1-65535), not {value!r}", name)
