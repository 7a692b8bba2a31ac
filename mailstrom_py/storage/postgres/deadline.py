"""Client-side deadlines: a server that stops answering becomes an error, not a
hung thread.

PostgreSQL's own ``statement_timeout`` cancels a slow statement, but it is the
server that enforces it: a backend that is frozen (stopped, swapped out, behind
a dead network path that still looks open) answers nothing, not even an error.
:class:`Watchdog` keeps one thread that, when a guarded connection is still busy
past its deadline, shuts its socket down; the thread blocked on that connection
then reads end-of-file and psycopg raises ``OperationalError``.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator

__all__ = ["Guard", "Watchdog", "cut_off"]

log = logging.getLogger(__name__)


def cut_off(fileno: int) -> None:
    """Shut the socket ``fileno`` down both ways, leaving the descriptor open.

    A thread blocked reading it wakes and reads end-of-file; the descriptor
    itself stays valid (closing it under a blocked thread would be a race with
    its reuse), so its owner closes it as usual.
    """
    try:
        sock = socket.socket(fileno=os.dup(fileno))
    except OSError:
        return  # closed already
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # not connected any more: nothing to cut off
    finally:
        sock.close()


class Guard:
    """One guarded operation: set ``fired`` once the watchdog cut it off."""

    __slots__ = ("deadline", "fileno", "fired", "what")

    def __init__(self, fileno: int, deadline: float, what: str) -> None:
        self.fileno = fileno
        self.deadline = deadline
        self.what = what
        self.fired = False


class Watchdog:
    """Cuts off connections whose operation outlives its deadline.

    One thread, started with the first guard, looks at the live guards every
    ``tick`` seconds, so a deadline is enforced within ``tick`` of passing; a
    guard that ends in time costs a dictionary entry and a lock.
    """

    def __init__(self, tick: float = 0.1, name: str = "mailstrom-pg-watchdog") -> None:
        self._tick = tick
        self._name = name
        self._cond = threading.Condition(threading.Lock())
        self._live: dict[int, Guard] = {}
        self._numbers = itertools.count()
        self._thread: threading.Thread | None = None
        self._closed = False

    @contextlib.contextmanager
    def guard(self, fileno: int, seconds: float, what: str) -> Iterator[Guard]:
        """Cut off the socket ``fileno`` if the body still runs after ``seconds``.

        Yields the :class:`Guard`, whose ``fired`` tells afterwards whether the
        socket was cut off (then the connection is unusable).
        """
        guard = Guard(fileno, time.monotonic() + seconds, what)
        number = next(self._numbers)
        with self._cond:
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(
                    target=self._run, name=self._name, daemon=True
                )
                self._thread.start()
            self._live[number] = guard
        try:
            yield guard
        finally:
            with self._cond:
                del self._live[number]

    def close(self) -> None:
        """Stop the thread; guards still open are no longer enforced."""
        with self._cond:
            self._closed = True
            thread, self._thread = self._thread, None
            self._cond.notify()
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _run(self) -> None:
        with self._cond:
            while not self._closed:
                now = time.monotonic()
                for guard in self._live.values():
                    if not guard.fired and guard.deadline <= now:
                        # Under the lock: the owner cannot have given the
                        # connection back to anyone else yet.
                        guard.fired = True
                        log.warning(
                            "PostgreSQL did not answer within the deadline while"
                            " trying to %s; the connection is closed",
                            guard.what,
                        )
                        cut_off(guard.fileno)
                self._cond.wait(self._tick)
