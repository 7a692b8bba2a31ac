"""Getting a prepared message to the servers that should receive it."""

from __future__ import annotations

from ..config import Config, RelayConfig
from .base import BatchTransport, Item, OnOutcome, Outcome, Transport, deliver_many
from .direct import DirectTransport
from .relay import RelayTransport
from .routing.limits import ConcurrencyLimit
from .routing.mta_sts import PolicyStore
from .shaping import Shaper, shaper_for
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
    "Shaper",
    "Transport",
    "build_transport",
    "deliver_many",
]


def build_transport(
    config: Config,
    shaper: Shaper | None = None,
    *,
    policy_store: PolicyStore | None = None,
) -> Transport:
    """Return the transport that ``config.delivery`` asks for, shaping its
    traffic with ``shaper`` (by default one built from ``config``); direct
    delivery keeps MTA-STS policies in ``policy_store`` unless its
    ``mta_sts_cache`` names a file.

    Raises:
        ConfigError: the delivery mode cannot be set up (a CA file that cannot be
            read, no DNS configuration for direct delivery, say).
    """
    shaper = shaper if shaper is not None else shaper_for(config)
    sessions = SessionPool(
        # Each destination's own limit applies too (DestinationLimits).
        max_messages=max(
            [config.session_max_messages]
            + [
                d.messages_per_connection or 0
                for d in (config.shaping.default, *config.shaping.named)
            ]
        ),
        idle_timeout=config.session_idle_timeout,
    )
    if isinstance(config.delivery, RelayConfig):
        return RelayTransport(
            config.delivery,
            helo_name=config.helo_name,
            timeouts=config.timeouts,
            require_tls=config.require_tls,
            sessions=sessions,
            shaper=shaper,
        )
    return DirectTransport(
        config.delivery,
        helo_name=config.helo_name,
        timeouts=config.timeouts,
        require_tls=config.require_tls,
        sessions=sessions,
        shaper=shaper,
        policy_store=policy_store,
    )
