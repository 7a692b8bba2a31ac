"""Hand-off of due messages from whoever finds them to the delivery threads."""

from __future__ import annotations

import collections
import threading
from collections.abc import Iterable

__all__ = ["Backlog"]


class Backlog:
    """Message ids waiting for a delivery thread, and those being attempted.

    Producers (the scheduler, or ``send_email()`` for a message due at once)
    :meth:`offer` ids; delivery threads :meth:`take` them in batches and
    :meth:`finish` them after their attempts. An id is in the backlog from its
    offer until it is finished, and is never in it twice, so one message is
    never attempted by two threads of this process at once. Thread-safe.

    Args:
        takers: how many threads take from the backlog; a batch is at most an
            even share of what is waiting, so a small backlog is spread over
            every thread rather than queued behind one.
        batch: the most ids one :meth:`take` returns.
        limit: the most ids waiting at once; an offer beyond it is refused.
    """

    def __init__(self, *, takers: int, batch: int, limit: int) -> None:
        self._takers = max(1, takers)
        self._batch = max(1, batch)
        self._limit = limit
        self._changed = threading.Condition(threading.Lock())
        self._waiting: collections.deque[str] = collections.deque()
        self._present: set[str] = set()
        self._closed = False

    def offer(self, message_id: str) -> bool:
        """Queue ``message_id`` for a delivery thread.

        Returns:
            False when it is already in the backlog (waiting or being
            attempted), the backlog is full, or it is closed; the caller keeps
            the id in its own timetable then.
        """
        with self._changed:
            if (
                self._closed
                or message_id in self._present
                or len(self._waiting) >= self._limit
            ):
                return False
            self._present.add(message_id)
            self._waiting.append(message_id)
            self._changed.notify()
        return True

    def take(self) -> list[str] | None:
        """Wait for work and return a batch of ids, oldest first; None once closed."""
        with self._changed:
            while not self._waiting:
                if self._closed:
                    return None
                self._changed.wait()
            share = -(-len(self._waiting) // self._takers)
            count = min(self._batch, share)
            return [self._waiting.popleft() for _ in range(count)]

    def finish(self, message_ids: Iterable[str]) -> None:
        """Mark the attempts on ``message_ids`` (taken earlier) as over."""
        with self._changed:
            self._present.difference_update(message_ids)

    def waiting(self) -> int:
        """How many ids wait for a delivery thread."""
        with self._changed:
            return len(self._waiting)

    def idle(self) -> bool:
        """Whether no id is waiting or being attempted."""
        with self._changed:
            return not self._present

    def __contains__(self, message_id: object) -> bool:
        with self._changed:
            return message_id in self._present

    def close(self) -> list[str]:
        """Refuse further offers, wake every taker, and return the ids that were
        still waiting (they stay due in storage)."""
        with self._changed:
            self._closed = True
            left = list(self._waiting)
            self._waiting.clear()
            self._present.difference_update(left)
            self._changed.notify_all()
        return left

    def clear(self) -> None:
        """Forget every waiting id (for a caller that attempts from storage itself)."""
        with self._changed:
            self._present.difference_update(self._waiting)
            self._waiting.clear()
