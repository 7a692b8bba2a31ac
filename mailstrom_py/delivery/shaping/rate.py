"""A message rate with bursts: the generic cell rate algorithm (GCRA).

The rate ``rate`` per ``per`` seconds spaces messages ``per / rate`` seconds
apart (the emission interval); ``burst`` lets that many go at once after a
quiet spell. The whole state is one time, the theoretical arrival time of the
next message (as KumoMTA's and Redis-cell's throttles keep it).
"""

from __future__ import annotations

import threading

__all__ = ["Gcra"]


class Gcra:
    """One rate limit, shared by the delivery threads. Thread-safe.

    A delivery :meth:`reserve` s its turn: it is told how long to wait for it,
    and the turn is its own, so deliveries waiting together go one interval
    apart in the order they asked.

    Args:
        rate: messages per ``per`` seconds, at least 1.
        per: seconds, above 0.
        burst: messages that may go at once, at least 1.
    """

    def __init__(self, rate: int, per: float, burst: int) -> None:
        self.interval = per / rate
        self._tolerance = self.interval * (burst - 1)
        self._tat = float("-inf")
        self._lock = threading.Lock()

    def reserve(self, now: float, max_wait: float) -> float | None:
        """Take the next turn if it comes within ``max_wait`` seconds of ``now``
        (monotonic seconds).

        Returns:
            The seconds to wait for the turn taken (0 for at once); ``None``
            when the turn is further off, and nothing was taken.
        """
        with self._lock:
            tat = max(self._tat, now)
            wait = max(0.0, tat - self._tolerance - now)
            if wait > max_wait:
                return None
            self._tat = tat + self.interval
            return wait

    def free_at(self, now: float) -> float:
        """When, in seconds after ``now``, the next turn is free."""
        with self._lock:
            return max(0.0, max(self._tat, now) - self._tolerance - now)
