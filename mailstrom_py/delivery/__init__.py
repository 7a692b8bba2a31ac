"""Getting a prepared message to the servers that should receive it."""

from __future__ import annotations

from ..config import Config, RelayConfig
from .base import BatchTransport, Item, OnOutcome, Outcome, Transport, deliver_many
from .direct import DirectTransport
from .relay import RelayTransport
from .routing.limits import ConcurrencyLimit
from .smtp.pool import SessionPool

__all__ = [
    "BatchTransport",
    "ConcurrencyLimit",
    "DirectTransport",
    "Item",
    "OnOutcome",
    "Outcome",
    "RelayTransport",
    "SessionPool",
    "Transport",
    "build_transport",
    "deliver_many",
]


def build_transport(config: Config) -> Transport:
    """Return the transport that ``config.delivery`` asks for.

    Raises:
        ConfigError: the delivery mode cannot be set up (a CA file that cannot be
            read, no DNS configuration for direct delivery, say).
    """
    sessions = SessionPool(
        max_messages=config.session_max_messages,
        idle_timeout=config.session_idle_timeout,
    )
    limit = ConcurrencyLimit(config.destination_concurrency)
    if isinstance(config.delivery, RelayConfig):
        return RelayTransport(
            config.delivery,
            helo_name=config.helo_name,
            timeouts=config.timeouts,
            require_tls=config.require_tls,
            sessions=sessions,
            limit=limit,
        )
    return DirectTransport(
        config.delivery,
        helo_name=config.helo_name,
        timeouts=config.timeouts,
        require_tls=config.require_tls,
        sessions=sessions,
        limit=limit,
    )
