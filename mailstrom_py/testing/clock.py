"""A wall clock that moves only when a test moves it."""

from __future__ import annotations

import math
import threading

__all__ = ["FakeClock"]

#: Where a :class:`FakeClock` starts unless told: 2024-01-01 00:00:00 UTC.
DEFAULT_START = 1_704_067_200.0


class FakeClock:
    """Seconds since the Unix epoch that change only through :meth:`advance`.

    Pass it as ``Mailstrom(config, clock=clock)``: the mailer then reads the
    time from it when it stores a message and when it decides what is due, so
    a test steps through retries and expiry without sleeping. Network
    timeouts still run on the real monotonic clock. Safe to read and move
    from several threads.

    Args:
        start: the time it shows first.

    Raises:
        ValueError: ``start`` is not a finite number.
    """

    def __init__(self, start: float = DEFAULT_START) -> None:
        self._now = _finite(start, "start")
        self._lock = threading.Lock()

    def __call__(self) -> float:
        """Return the current time."""
        with self._lock:
            return self._now

    def __repr__(self) -> str:
        return f"FakeClock({self()!r})"

    def advance(self, seconds: float) -> float:
        """Move the time forward by ``seconds`` and return the new time.

        Raises:
            ValueError: ``seconds`` is negative or not a finite number.
        """
        step = _finite(seconds, "seconds")
        if step < 0:
            raise ValueError(f"the clock only goes forward, not by {seconds!r}")
        with self._lock:
            self._now += step
            return self._now

    def advance_to(self, when: float) -> float:
        """Move the time forward to ``when``, which may be the current time, and
        return it; ``status.next_attempt_at`` makes a good ``when``.

        Raises:
            ValueError: ``when`` is earlier than the current time, or not a
                finite number.
        """
        target = _finite(when, "when")
        with self._lock:
            if target < self._now:
                raise ValueError(
                    f"the clock only goes forward: {target!r} is before {self._now!r}"
                )
            self._now = target
            return self._now


def _finite(value: object, name: str) -> float:
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not math.isfinite(value)
    ):
        raise ValueError(f"{name} must be a finite number of seconds, not {value!r}")
    return float(value)
