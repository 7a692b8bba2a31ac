"""How often trouble is worth a warning: once per destination and cause a minute.

A dead relay fails every message the same way; one WARNING a minute says so
without flooding the log, and the rest go to INFO with the per-message detail.
"""

from __future__ import annotations

import threading

__all__ = ["WarningRate"]


class WarningRate:
    """Decides which reports of a ``(destination, cause)`` trouble are warnings.

    The first report of a key is, then at most one per ``interval`` seconds.
    Time is whatever clock the owner reads, passed as ``now``: a clock set back
    starts the key's interval again rather than silencing it. Each transport or
    worker owns one; nothing is shared between instances. Thread-safe.

    Args:
        interval: seconds between two warnings for one key.
        max_keys: the most keys remembered; past it, keys whose interval has
            ended are forgotten (the next report of them warns, as it would).
    """

    def __init__(self, interval: float = 60.0, *, max_keys: int = 10_000) -> None:
        self._interval = interval
        self._max_keys = max_keys
        self._lock = threading.Lock()
        self._warned_at: dict[tuple[str, str], float] = {}

    def warn(self, destination: str, cause: str, now: float) -> bool:
        """Whether a report of ``cause`` at ``destination`` at ``now`` is a
        warning; if it is, the key's next warning waits ``interval`` seconds."""
        key = (destination, cause)
        with self._lock:
            last = self._warned_at.get(key)
            if last is not None and 0 <= now - last < self._interval:
                return False
            self._warned_at[key] = now
            if len(self._warned_at) > self._max_keys:
                self._forget(now)
            return True

    def _forget(self, now: float) -> None:
        live = [
            (at, key)
            for key, at in self._warned_at.items()
            if 0 <= now - at < self._interval
        ]
        # Still too many within one interval: keep the newest half.
        if len(live) > self._max_keys:
            live = sorted(live)[-(self._max_keys // 2) :]
        self._warned_at = {key: at for at, key in live}
