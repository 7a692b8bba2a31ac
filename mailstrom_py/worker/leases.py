"""Keeping claims alive while their attempts run.

A claim lasts for a lease (:meth:`~mailstrom_py.Storage.claim_due`); an
attempt that outlasts it (a server slow to answer the final dot, a long
batch) would let another worker claim the same messages and deliver them
twice. :class:`LeaseKeeper` extends the claims of every attempt under way at
half the lease (:meth:`~mailstrom_py.Storage.extend`), from one thread, until
the attempt ends; a worker that dies stops extending, and its claims come
back when their last lease ends.
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from ..storage.base import Claim, Storage

__all__ = ["LeaseKeeper"]

log = logging.getLogger(__name__)

# After a failed extension, how much of the lease passes before the next try.
_RETRY_SHARE = 0.125


class LeaseKeeper:
    """Extends the claims of the attempts under way, each at half the lease.

    Args:
        storage: where the claims live.
        lease: the length of a claim's lease, in seconds; each extension is
            for one lease more from the time it is made.
        clock: the wall clock, whose time is passed to ``extend()``; the
            schedule follows the monotonic clock.
    """

    def __init__(
        self, storage: Storage, lease: float, clock: Callable[[], float]
    ) -> None:
        self._storage = storage
        self._lease = lease
        self._clock = clock
        self._condition = threading.Condition()
        self._held: dict[int, tuple[float, list[Claim]]] = {}
        self._numbers = itertools.count()
        self._stopped = False
        self._thread: threading.Thread | None = None
        # When the thread waits until (inf: for an entry), None while awake.
        self._waking_at: float | None = None

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name="mailstrom-leases", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop extending; the thread ends once an extension under way returns."""
        with self._condition:
            self._stopped = True
            self._condition.notify_all()
        if self._thread is not None:
            self._thread.join()

    @contextmanager
    def keeping(self, claims: Sequence[Claim]) -> Iterator[None]:
        """Extend ``claims`` at each half lease while the ``with`` block runs;
        the first extension comes half a lease from now."""
        if not claims:
            yield
            return
        with self._condition:
            number = next(self._numbers)
            at = self._next()
            self._held[number] = (at, list(claims))
            # Entries come due in the order they are made, so the thread needs
            # waking only when it waits for none (or, the clock aside, later).
            if self._waking_at is not None and at < self._waking_at:
                self._condition.notify()
        try:
            yield
        finally:
            with self._condition:
                self._held.pop(number, None)

    def _next(self, share: float = 0.5) -> float:
        return time.monotonic() + share * self._lease

    def _run(self) -> None:
        while (due := self._wait()) is not None:
            number, claims = due
            try:
                extended = self._storage.extend(claims, self._clock(), self._lease)
            except Exception:
                log.exception("extending %d claims failed; trying again", len(claims))
                self._reschedule(number, claims, self._next(_RETRY_SHARE))
                continue
            live = [c for c, kept in zip(claims, extended, strict=True) if kept]
            if len(live) < len(claims):
                log.debug("%d of %d claims ended", len(claims) - len(live), len(claims))
            self._reschedule(number, live, self._next())

    def _wait(self) -> tuple[int, list[Claim]] | None:
        """The next batch of claims to extend, once due; None once stopped."""
        with self._condition:
            while not self._stopped:
                if self._held:
                    number, (at, claims) = min(
                        self._held.items(), key=lambda item: item[1][0]
                    )
                    left = at - time.monotonic()
                    if left <= 0:
                        return number, claims
                    self._sleep(at, left)
                else:
                    self._sleep(math.inf, None)
            return None

    def _sleep(self, until: float, timeout: float | None) -> None:
        """Wait (the condition held) until woken or ``timeout`` seconds pass,
        saying meanwhile that the thread looks next at ``until``."""
        self._waking_at = until
        try:
            self._condition.wait(timeout)
        finally:
            self._waking_at = None

    def _reschedule(self, number: int, claims: list[Claim], at: float) -> None:
        with self._condition:
            if number not in self._held:
                return  # the attempt ended meanwhile
            if claims:
                self._held[number] = (at, claims)
            else:
                del self._held[number]  # every claim ended: nothing to keep
