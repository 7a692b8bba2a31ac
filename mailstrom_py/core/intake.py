"""The limit of the queue at intake: :class:`IntakeLimit` refuses mail past
``Config.max_queued``."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from ..errors import ConfigError, QueueFullError, StorageError
from ..storage import QueueAdmin, QueueFilter, Storage

__all__ = ["COUNT_INTERVAL", "PENDING", "IntakeLimit", "intake_limit"]

log = logging.getLogger(__name__)

#: The messages the limit counts: those with a recipient queued or deferred,
#: held ones included.
PENDING = QueueFilter(completed=False)

#: Seconds (of the Outbox's clock) between two counts of the queue.
COUNT_INTERVAL = 1.0


class IntakeLimit:
    """Keeps producers from adding mail to a queue that holds ``limit``
    pending messages (:data:`PENDING`).

    Counting the queue costs a query, so it counts with ``admin.count()`` at
    most once every :data:`COUNT_INTERVAL` seconds of ``clock``, and in between
    takes the queue to hold the last count plus the messages it admitted since
    (stored, or being stored). Within one instance the limit is therefore
    never passed between counts; the mail other producers stored, and the
    mail delivered since, are seen at the next count. A clock that goes back
    counts again at once.

    A count that fails with a :class:`~mailstrom_py.StorageError` lets the
    mail through, logs a WARNING, and is tried again :data:`COUNT_INTERVAL`
    seconds later: a storage that cannot count most likely cannot store
    either (the send fails on its own), and a passing failure must not refuse
    mail for ever.

    Thread-safe: room is reserved under a lock, so threads sharing an instance
    cannot together pass the limit.
    """

    def __init__(
        self, limit: int, admin: QueueAdmin, clock: Callable[[], float]
    ) -> None:
        self._limit = limit
        self._admin = admin
        self._clock = clock
        self._lock = threading.Lock()
        self._counted: int | None = None  # None: not counted, or the count failed
        self._counted_at: float | None = None
        self._since = 0  # stored since the count
        self._reserved = 0  # admitted, being stored

    @property
    def limit(self) -> int:
        """The most pending messages the queue may hold."""
        return self._limit

    @contextmanager
    def admit(self, adding: int) -> Iterator[None]:
        """Reserve room for ``adding`` messages while the ``with`` block stores
        them.

        The room counts as taken once the block ends; if the block raises, it
        is given back.

        Raises:
            QueueFullError: the queue holds so many pending messages that
                ``adding`` more would pass the limit; nothing is reserved and
                the block does not run.
        """
        if adding <= 0:
            yield
            return
        self._reserve(adding)
        try:
            yield
        except BaseException:
            with self._lock:
                self._reserved -= adding
            raise
        with self._lock:
            self._reserved -= adding
            self._since += adding

    def _reserve(self, adding: int) -> None:
        with self._lock:
            now = self._clock()
            last = self._counted_at
            if last is None or not 0 <= now - last < COUNT_INTERVAL:
                self._count(now)
            if self._counted is not None:
                queued = self._counted + self._since + self._reserved
                if queued + adding > self._limit:
                    raise QueueFullError(queued, self._limit, adding)
            self._reserved += adding

    def _count(self, now: float) -> None:
        """Count the queue (the lock held)."""
        self._counted_at = now
        try:
            self._counted = self._admin.count(PENDING)
        except StorageError:
            self._counted = None
            log.warning(
                "cannot count the queue for max_queued; mail is let through"
                " until it can be counted again",
                exc_info=True,
            )
            return
        self._since = 0


def intake_limit(
    limit: int | None, storage: Storage, clock: Callable[[], float]
) -> IntakeLimit | None:
    """The :class:`IntakeLimit` of ``limit`` over ``storage``; None for no limit.

    Raises:
        ConfigError: a limit is set and ``storage`` cannot count its queue (it
            is no :class:`~mailstrom_py.storage.QueueAdmin`).
    """
    if limit is None:
        return None
    if not isinstance(storage, QueueAdmin):
        raise ConfigError(
            f"needs a storage that counts its queue (a QueueAdmin);"
            f" {type(storage).__name__} is not one",
            "max_queued",
        )
    return IntakeLimit(limit, storage, clock)
