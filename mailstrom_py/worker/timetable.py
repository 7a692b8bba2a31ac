"""When the delivery threads look in storage for due mail."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Look", "Timetable"]


@dataclass(frozen=True)
class Look:
    """A turn at storage that :meth:`Timetable.wait` gave a thread.

    Attributes:
        now: the clock's time when it was given.
        share: the most messages to claim.
        expected: something was known to be due by ``now``. A look the interval
            alone brought should first ask storage whether anything is due, so
            as not to take a write transaction for nothing.
    """

    now: float
    share: int
    expected: bool


class Timetable:
    """The earliest time some message is known to be due, and the delivery
    threads waiting for it. Thread-safe.

    Storage knows what is due and claims it; the timetable only says when to
    ask, and how much to take. It learns of due times from :meth:`stored`
    (mail stored in this process) and :meth:`due` (an outcome recorded here,
    storage's own next due time), and besides lets a thread look every
    ``interval`` seconds for what it cannot learn of: mail stored by another
    process, claims whose lease ended. A look takes what the timetable knew,
    so one due time wakes one thread; when a look finds as much as it may
    take and more may be waiting, another thread looks at once.

    Args:
        clock: the wall clock that due times are on.
        interval: the longest a look waits, in seconds.
        takers: how many threads look.
        batch: the most messages one look takes.
    """

    def __init__(
        self, clock: Callable[[], float], interval: float, *, takers: int, batch: int
    ) -> None:
        self._clock = clock
        self._interval = interval
        self._takers = max(1, takers)
        self._batch = max(1, batch)
        self._changed = threading.Condition(threading.Lock())
        self._due: float | None = None
        self._next_look = -math.inf  # the first look is at once
        self._looking = 0
        self._stored = 0  # messages stored here and not yet claimed, at most
        self._closed = False

    def stored(self, at: float) -> None:
        """A message was stored in this process, due at ``at``."""
        with self._changed:
            self._stored += 1
            self._due_at(at)

    def due(self, at: float) -> None:
        """Have a thread look at ``at``, or earlier if it would anyway."""
        with self._changed:
            self._due_at(at)

    def wait(self) -> Look | None:
        """Wait for the time to look, and take the look.

        Returns:
            The look; the caller claims, calls :meth:`claimed`, attempts what
            it claimed and calls :meth:`done`. None once the timetable is
            closed.
        """
        with self._changed:
            while not self._closed:
                now = self._clock()
                due = self._due
                wake = self._next_look if due is None else min(due, self._next_look)
                # A wall clock set back would otherwise put off the next look
                # by as much as it jumped.
                if now >= wake or now < self._next_look - self._interval:
                    self._due = None
                    self._next_look = now + self._interval
                    self._looking += 1
                    return Look(now, self._share(), due is not None and due <= now)
                self._changed.wait(min(wake - now, self._interval))
            return None

    def claimed(self, look: Look, count: int) -> None:
        """``look`` claimed ``count`` messages; if more may be due, another
        thread looks at once."""
        with self._changed:
            if count < look.share:
                self._stored = 0  # storage had no more due than that
                return
            self._stored = max(0, self._stored - count)
            if self._stored or count >= self._batch:
                self._due_at(look.now)

    def done(self) -> None:
        """End a look that :meth:`wait` gave, its attempts included."""
        with self._changed:
            self._looking -= 1

    def idle(self) -> bool:
        """Whether no thread is looking or attempting what it found."""
        with self._changed:
            return not self._looking

    def close(self) -> None:
        """Wake every waiting thread and give no more looks."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def _due_at(self, at: float) -> None:
        if self._due is None or at < self._due:
            self._due = at
            self._changed.notify()

    def _share(self) -> int:
        """An even share of the messages stored here and not yet claimed, so
        that a burst is spread over the threads rather than queued behind one;
        a whole batch when none are known of (mail from elsewhere, retries)."""
        if not self._stored:
            return self._batch
        return min(self._batch, -(-self._stored // self._takers))
