"""Turns at the one writer connection of a SQLite file: callers' writes first.

:class:`WriterTurns` is a lock whose holder, on release, hands it straight to
the waiter whose turn is next, so that a waiter wakes only to write: a
caller's write (urgent) before background work, and background work before
callers once it has waited ``patience`` seconds, so that a steady stream of
callers cannot hold the worker's bookkeeping back for long.
"""

from __future__ import annotations

import threading
import time
from collections import deque

__all__ = ["WriterTurns"]


class _Waiter:
    """A thread waiting for its turn; ``turn`` is released when it comes."""

    __slots__ = ("deadline", "turn")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.turn = threading.Lock()
        self.turn.acquire()


class WriterTurns:
    """A lock with two queues of waiters, served as the module says.

    Args:
        patience: the longest a background waiter lets callers' writes that
            arrive after it go first, in seconds.
    """

    def __init__(self, patience: float) -> None:
        self._patience = patience
        self._mutex = threading.Lock()
        self._held = False
        self._callers: deque[_Waiter] = deque()
        self._background: deque[_Waiter] = deque()

    @property
    def queued(self) -> int:
        """How many threads wait for a turn."""
        return len(self._callers) + len(self._background)

    @property
    def urgent(self) -> int:
        """How many of them are callers' writes."""
        return len(self._callers)

    def acquire(self, *, urgent: bool) -> None:
        """Wait for a turn and take it; ``urgent`` for a caller's write."""
        with self._mutex:
            if not self._held:
                # Waiters only ever wait while the lock is held.
                self._held = True
                return
            queue = self._callers if urgent else self._background
            waiter = _Waiter(time.monotonic() + self._patience)
            queue.append(waiter)
        try:
            waiter.turn.acquire()
        except BaseException:
            with self._mutex:
                if waiter in queue:
                    queue.remove(waiter)
                    raise
            self.release()  # the turn came meanwhile: pass it on
            raise

    def release(self) -> None:
        """End this turn: hand the lock to the next waiter, or free it."""
        with self._mutex:
            waiter = self._next()
            if waiter is None:
                self._held = False
                return
        waiter.turn.release()

    def _next(self) -> _Waiter | None:
        background = self._background
        if background and (
            not self._callers or background[0].deadline <= time.monotonic()
        ):
            return background.popleft()
        return self._callers.popleft() if self._callers else None
