"""The queue operations of an :class:`~mailstrom_py.Outbox`: list, count, kick,
hold, release, schedule, fail, drop and the report of recent outcomes, over
its storage's :class:`~mailstrom_py.storage.QueueAdmin`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from ..message.dsn import DsnReporter
from ..status import MessageStatus
from ..storage import QueueFilter, Storage, queue_admin
from .reports import queue_failure_reports
from .schedule import send_time

__all__ = ["QueueOperations"]

log = logging.getLogger(__name__)

# kick() and release() tell the worker about at most this many messages; the
# rest are due in storage, and the worker pages them in within a second, so a
# kick of the whole queue does not flood its command queue.
_NOTIFY_AT_MOST = 1000


class QueueOperations:
    """The queue operations on ``storage``, which must be a
    :class:`~mailstrom_py.storage.QueueAdmin` as well (each raises
    ``TypeError`` otherwise).

    Args:
        storage: the queue.
        clock: wall-clock seconds since the epoch.
        notify: told the id of each message made due now; an exception from
            it is logged and otherwise ignored.
        reporter: prepares the reports :meth:`fail` queues; None when
            reports are off.
    """

    def __init__(
        self,
        storage: Storage,
        clock: Callable[[], float],
        notify: Callable[[str], None] | None,
        reporter: DsnReporter | None,
    ) -> None:
        self._storage = storage
        self._clock = clock
        self._notify_hook = notify
        self._reporter = reporter

    def _notify(self, message_id: str) -> None:
        if self._notify_hook is None:
            return
        try:
            self._notify_hook(message_id)
        except Exception:
            log.warning(
                "notify failed for %s; it waits in storage", message_id, exc_info=True
            )

    def list_messages(
        self, where: QueueFilter | None = None, *, limit: int | None = None
    ) -> list[MessageStatus]:
        """Return the statuses of the stored messages ``where`` selects, oldest first.

        Args:
            where: which messages; every message by default.
            limit: at most this many (the oldest); all by default.
        """
        return queue_admin(self._storage).find(where or QueueFilter(), limit)

    def count_messages(self, where: QueueFilter | None = None) -> int:
        """Return how many stored messages ``where`` selects (all by default)."""
        return queue_admin(self._storage).count(where or QueueFilter())

    def kick(self, where: QueueFilter) -> list[str]:
        """Make the selected messages due now and tell the worker (see ``notify``)
        to attempt them.

        Pending recipients due later are made due now; their attempt counts and
        backoff stay. Held messages stay held until released.

        Returns:
            The ids of the selected messages with pending recipients.
        """
        kicked = queue_admin(self._storage).kick(where, self._clock())
        for message_id in kicked[:_NOTIFY_AT_MOST]:
            self._notify(message_id)
        return kicked

    def hold(self, where: QueueFilter) -> list[str]:
        """Stop attempting the selected messages until they are released.

        An attempt already under way finishes. ``query_status()`` shows ``held``.

        Returns:
            The ids of the messages put on hold (those pending and not held).
        """
        return queue_admin(self._storage).hold(where)

    def release(self, where: QueueFilter) -> list[str]:
        """Take the selected messages off hold; each goes out at its own due time.

        Returns:
            The ids of the messages released.
        """
        released = queue_admin(self._storage).release(where)
        for message_id in released[:_NOTIFY_AT_MOST]:
            self._notify(message_id)
        return released

    def schedule(self, where: QueueFilter, at: datetime) -> list[str]:
        """Make the selected messages next due at ``at``, sooner or later.

        Every pending recipient is due at ``at`` (a time past means now);
        attempt counts stay. Held messages stay held; a message being attempted
        is left to its attempt.

        Returns:
            The ids of the messages changed.

        Raises:
            InvalidMessageError: ``at`` has no time zone or is more than 60
                days ahead (a ``ValueError``); nothing changed.
        """
        now = self._clock()
        due = send_time(at, now, "at")
        scheduled = queue_admin(self._storage).schedule(
            where, now if due is None else due, now
        )
        if due is None:
            for message_id in scheduled[:_NOTIFY_AT_MOST]:
                self._notify(message_id)
        return scheduled

    def fail(self, where: QueueFilter) -> list[str]:
        """Fail every pending recipient of the selected messages now, and tell
        their senders when reports are on.

        Each pending recipient becomes ``FAILED`` with status code ``5.3.0``
        and the detail "failed by an operator". With ``Config(dsn=...)``
        reporting failures, each sender gets a delivery status notification,
        queued as the worker queues those for recipients that fail in an
        attempt. An attempt under way finishes, but its outcome is not
        recorded. Completed messages are left alone.

        Returns:
            The ids of the messages failed.
        """
        now = self._clock()
        failed = queue_admin(self._storage).fail(where, now)
        if self._reporter is not None:
            queue_failure_reports(
                self._storage, self._reporter, failed, now, self._notify
            )
        return [status.message_id for status in failed]

    def drop(self, where: QueueFilter) -> list[str]:
        """Remove the selected messages, whatever their state, telling no one.

        Their ids become unknown to ``query_status()``. An attempt already under
        way finishes, but its outcome is not recorded.

        Returns:
            The ids of the messages removed.
        """
        return queue_admin(self._storage).drop(where)

    def query_recent(self, limit: int | None = None) -> list[MessageStatus]:
        """Return each outcome once: newly completed messages, then pending ones.

        The result holds every completed message (each recipient delivered or
        failed) that no earlier ``query_recent()`` on the same storage returned,
        oldest first, followed by every message still pending, oldest first.
        A completed message is thus reported exactly once (with
        :class:`~mailstrom_py.SqliteStorage`, once per database file, across
        restarts), while pending ones appear on every call until they complete.

        Args:
            limit: return at most this many in all, completed messages first; the
                completed ones left out come in a later call.
        """
        return queue_admin(self._storage).recent(limit)
