"""How many deliveries may run at once toward one destination."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Hashable, Iterator

__all__ = ["ConcurrencyLimit"]


class ConcurrencyLimit:
    """Lets at most ``limit`` deliveries run at once per destination. Thread-safe.

    A burst of mail to one domain (or through one relay) then reaches it over a
    few connections, as from any well-behaved MTA, instead of as many as there
    are delivery threads. A delivery over the limit waits for a slot; the
    deliveries it waits for are bounded by their own per-step timeouts.
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._busy: dict[Hashable, int] = {}
        self._changed = threading.Condition()

    @contextlib.contextmanager
    def slot(self, destination: Hashable, limit: int | None = None) -> Iterator[None]:
        """Hold one of ``destination``'s slots for the body of the ``with``;
        ``limit`` is the destination's own limit (this object's by default)."""
        most = self._limit if limit is None else limit
        with self._changed:
            while self._busy.get(destination, 0) >= most:
                self._changed.wait()
            self._busy[destination] = self._busy.get(destination, 0) + 1
        try:
            yield
        finally:
            with self._changed:
                left = self._busy[destination] - 1
                if left:
                    self._busy[destination] = left
                else:
                    del self._busy[destination]
                self._changed.notify_all()
