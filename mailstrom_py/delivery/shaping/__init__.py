"""Traffic shaping per destination: rates, connections, suspensions
(:mod:`.shaper`), over a rate limit with bursts (:mod:`.rate`)."""

from .rate import Gcra
from .shaper import (
    RELAY,
    Destination,
    Hold,
    OnSuspend,
    Shaper,
    held_outcomes,
    shaper_for,
)

__all__ = [
    "RELAY",
    "Destination",
    "Gcra",
    "Hold",
    "OnSuspend",
    "Shaper",
    "held_outcomes",
    "shaper_for",
]
