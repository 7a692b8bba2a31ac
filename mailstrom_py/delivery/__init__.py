"""Getting a prepared message to the servers that should receive it."""

from __future__ import annotations

from ..config import Config, RelayConfig
from ..errors import ConfigError
from .base import Outcome, Transport
from .relay import RelayTransport

__all__ = ["Outcome", "RelayTransport", "Transport", "build_transport"]


def build_transport(config: Config) -> Transport:
    """Return the transport that ``config.delivery`` asks for.

    Raises:
        ConfigError: the delivery mode cannot be set up (a CA file that cannot be
            read, say).
    """
    if isinstance(config.delivery, RelayConfig):
        return RelayTransport(
            config.delivery,
            helo_name=config.helo_name,
            timeouts=config.timeouts,
            require_tls=config.require_tls,
        )
    raise ConfigError("direct delivery is not available yet", "delivery")
