"""Queue administration: listing, counting, kicking, holding, releasing,
scheduling, failing and dropping stored messages, the operations behind
``mailq`` and ``postsuper``.

Delivery needs none of it, so it is an interface of its own, beside the core
:class:`~mailstrom_py.Storage`; the backends the library ships implement both.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from ..status import MessageStatus
from .query import QueueFilter

__all__ = ["QueueAdmin", "queue_admin"]


class QueueAdmin(ABC):
    """Operations on the messages a :class:`QueueFilter` selects.

    Contract for every backend, besides :class:`~mailstrom_py.Storage`'s (thread
    safety, frozen values, errors):

    * A filter that selects nothing is not an error: the operation does nothing.
    * Each operation is one atomic step.
    * Lists of messages come oldest first (by ``created_at``, ties in the order
      added).
    """

    @abstractmethod
    def find(self, where: QueueFilter, limit: int | None = None) -> list[MessageStatus]:
        """Return the statuses of the messages ``where`` selects, oldest first.

        Args:
            where: which messages.
            limit: return at most this many (the oldest); ``None`` for all.
        """

    def count(self, where: QueueFilter) -> int:
        """Return how many messages ``where`` selects.

        Not abstract: the default counts what :meth:`find` returns; backends
        override it to count without loading the messages.
        """
        return len(self.find(where))

    @abstractmethod
    def kick(self, where: QueueFilter, now: float) -> list[str]:
        """Make the selected messages due at ``now``.

        Every pending recipient of a selected message whose next attempt is later
        than ``now`` (or unset) becomes due at ``now``; attempts and backoff are
        otherwise unchanged. A held message stays held (it goes out as soon as it
        is released). Completed messages are left alone.

        Returns:
            The ids of the selected messages that have pending recipients.
        """

    @abstractmethod
    def hold(self, where: QueueFilter) -> list[str]:
        """Put the selected messages on hold: they are not attempted until released.

        Only messages with pending recipients that are not held already are
        changed. An attempt already under way finishes and is recorded.

        Returns:
            The ids of the messages put on hold.
        """

    @abstractmethod
    def release(self, where: QueueFilter) -> list[str]:
        """Take the selected messages off hold; each is due at its own time again.

        Returns:
            The ids of the messages that were held.
        """

    @abstractmethod
    def schedule(self, where: QueueFilter, at: float, now: float) -> list[str]:
        """Make the selected messages next due at ``at``, sooner or later than
        they were (:func:`~mailstrom_py.storage.rules.scheduled`).

        Every pending recipient of a selected message becomes due at ``at``, an
        absolute time in seconds since the epoch kept as given whatever clock
        the backend uses; attempt counts stay. A held message stays held (it
        goes out at ``at`` or at its release, whichever is later). Completed
        messages, and messages under a claim whose lease lasts at ``now`` (an
        attempt under way, whose outcome decides), are left alone.

        Returns:
            The ids of the messages changed.
        """

    @abstractmethod
    def fail(self, where: QueueFilter, now: float) -> list[MessageStatus]:
        """Fail every pending recipient of the selected messages now, as the
        queue's operator (:func:`~mailstrom_py.storage.rules.failed_by_operator`:
        result ``FAILED``, status code ``5.3.0``, detail "failed by an
        operator"); the messages are complete, and reported by :meth:`recent`.

        Held messages are failed too. A message under a claim has the claim
        ended, as :meth:`drop` does: an attempt under way finishes, but its
        outcome is not recorded. Completed messages are left alone. Telling
        the senders is the caller's part (the delivery status notifications
        of :meth:`mailstrom_py.Outbox.fail`).

        Args:
            where: which messages.
            now: when they failed (with PostgreSQL's database clock, the
                database's time is used instead).

        Returns:
            The statuses after the change of the messages failed.
        """

    @abstractmethod
    def drop(self, where: QueueFilter) -> list[str]:
        """Remove the selected messages, whatever their state, without notice to
        anyone; their ids become unknown. An attempt already under way finishes,
        but its outcome is not recorded.

        Returns:
            The ids of the messages removed.
        """

    @abstractmethod
    def recent(self, limit: int | None = None) -> list[MessageStatus]:
        """Report outcomes once: completed messages not reported before, then every
        incomplete message.

        The first part holds each completed message (every recipient delivered
        or failed) that no earlier ``recent()`` call on this storage returned,
        oldest first; returning it marks it reported, atomically with the read,
        so across calls each completed message is returned exactly once (by a
        durable backend: once per database, across restarts and processes). The
        second part holds every message with pending recipients, oldest first,
        returned on every call. Dropped messages appear in neither.

        Args:
            limit: return at most this many in all, completed ones first; the
                completed messages left out are reported by a later call.
        """


def queue_admin(storage: object) -> QueueAdmin:
    """Return ``storage`` as the :class:`QueueAdmin` it must also be.

    Raises:
        TypeError: ``storage`` has no queue operations.
    """
    if not isinstance(storage, QueueAdmin):
        raise TypeError(
            f"{type(storage).__name__} has no queue operations"
            " (it does not implement QueueAdmin)"
        )
    return storage
