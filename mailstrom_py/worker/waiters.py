"""Threads waiting for a message's status to change, and waking them."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

from ..status import MessageStatus

__all__ = ["Waiters"]

# A waiter re-reads the status at least this often, in seconds: another
# process sharing the storage wakes nobody here.
_REREAD = 0.25


class Waiters:
    """Callers waiting on messages' statuses, woken when an outcome of theirs
    is recorded. Thread-safe."""

    def __init__(self) -> None:
        self._events: dict[str, list[threading.Event]] = {}
        self._lock = threading.Lock()

    def wait(
        self,
        message_id: str,
        read: Callable[[], MessageStatus],
        predicate: Callable[[MessageStatus], bool],
        timeout: float,
    ) -> MessageStatus:
        """Wait until the status ``read`` returns for ``message_id`` satisfies
        ``predicate``.

        Returns:
            The status that satisfied it, or the last one read when ``timeout``
            seconds passed first.
        """
        deadline = time.monotonic() + timeout
        while True:
            woken = threading.Event()
            with self._lock:
                self._events.setdefault(message_id, []).append(woken)
            try:
                status = read()
                left = deadline - time.monotonic()
                if predicate(status) or left <= 0:
                    return status
                woken.wait(min(left, _REREAD))
            finally:
                with self._lock:
                    waiting = self._events.get(message_id, [])
                    if woken in waiting:
                        waiting.remove(woken)
                    if not waiting:
                        self._events.pop(message_id, None)

    def wake(self, message_ids: Iterable[str]) -> None:
        """Wake the :meth:`wait` calls on ``message_ids``.

        Looks without the lock first: a waiter that registers meanwhile reads
        the status after it registered, which the outcome being told of is
        already part of."""
        events = self._events
        if not events:
            return
        waited = [m for m in message_ids if m in events]
        if not waited:
            return
        with self._lock:
            woken = [e for m in waited for e in events.pop(m, ())]
        for event in woken:
            event.set()
