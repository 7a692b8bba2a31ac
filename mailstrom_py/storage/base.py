"""The storage interface: where messages and their delivery status live.

A backend is a user plug point. Subclass :class:`Storage`, implement every abstract
method to the contract in its docstring, and run the contract suite,
:class:`mailstrom_py.testing.contract.StorageContract`, against it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

from ..errors import DuplicateMessageError, MessageNotFound, StorageError
from ..message import PreparedEmail
from ..status import MessageStatus, RecipientStatus
from .rules import is_claimable

__all__ = ["Claim", "Storage", "check_distinct", "wrap_error"]


@dataclass(frozen=True)
class Claim:
    """A message claimed for a delivery attempt.

    Attributes:
        before: the status as found, before the claim.
        status: the status after the claim (what ``begin_attempt`` returns).
        email: the prepared message to deliver.
    """

    before: MessageStatus
    status: MessageStatus
    email: PreparedEmail


class Storage(ABC):
    """Persists prepared messages and the delivery status of their recipients.

    Contract for every backend:

    * Thread safety: one instance is used at once by caller threads (``add``,
      ``status``) and by the worker's threads (everything). Every method is atomic
      with respect to the others: a reader never sees half of a write.
    * Values: methods take and return frozen values; a backend never hands out
      an object it will later mutate.
    * Errors: an unknown id raises :class:`~mailstrom_py.errors.MessageNotFound`;
      a failure of the backend itself raises
      :class:`~mailstrom_py.errors.StorageError` (chained to the cause), and a
      failed write leaves nothing behind.
    * Durability: ``add`` has stored the message when it returns, to the degree
      the backend promises (in memory: for the life of the process).
    * Queue operations (``find``, ``kick``, ``drop``...) are another interface,
      :class:`~mailstrom_py.storage.admin.QueueAdmin`, which the backends the
      library ships implement as well.
    """

    #: Whether stored mail outlives the process (kept in a file or a database
    #: server). A mailer stopping with mail pending in storage that is not
    #: durable logs a warning with how many messages are lost.
    durable: ClassVar[bool] = False

    def add(self, email: PreparedEmail, now: float) -> MessageStatus:
        """Store ``email`` with every recipient ``QUEUED`` and due at ``now``.

        Not abstract: the default is :meth:`add_many` of one message.

        Returns:
            The new status, with ``created_at`` equal to ``now``.

        Raises:
            DuplicateMessageError: a message with the same id is stored already;
                nothing changed.
            StorageError: the message could not be stored; nothing was stored.
        """
        return self.add_many([email], now)[0]

    @abstractmethod
    def add_many(
        self, emails: Sequence[PreparedEmail], now: float
    ) -> list[MessageStatus]:
        """Store several messages as :meth:`add` does, all or none of them, in one
        atomic step (one transaction, for a durable backend).

        Every recipient is ``QUEUED`` and due at ``now`` (see
        :func:`~mailstrom_py.storage.rules.initial_status`).

        Returns:
            The new statuses, in the order of ``emails``.

        Raises:
            DuplicateMessageError: an id is stored already or repeats within
                ``emails``; nothing was stored.
            StorageError: the messages could not be stored; none was stored.
        """

    @abstractmethod
    def status(self, message_id: str) -> MessageStatus:
        """Return the current status of a message.

        Raises:
            MessageNotFound: the id is unknown.
        """

    @abstractmethod
    def email(self, message_id: str) -> PreparedEmail:
        """Return the prepared message, byte for byte as it was added.

        Raises:
            MessageNotFound: the id is unknown.
        """

    @abstractmethod
    def begin_attempt(
        self, message_id: str, now: float, retry_at: float
    ) -> MessageStatus | None:
        """Claim a message for a delivery attempt starting at ``now``.

        If the message exists, is not held, has pending (``QUEUED`` or
        ``DEFERRED``) recipients, and is due (its ``next_attempt_at`` is at or
        before ``now``), then in one atomic step every pending recipient gets
        ``attempts + 1``, ``last_attempt_at = now`` and ``next_attempt_at =
        retry_at``. Recording the attempt before dialling means a crash during it
        neither loses the message nor retries it in a hot loop.

        Returns:
            The updated status, or ``None`` when the message is not due, held,
            complete or unknown (another worker may have claimed it).
        """

    def claim(
        self,
        message_ids: Sequence[str],
        now: float,
        retry_at: Callable[[MessageStatus], float],
    ) -> list[Claim]:
        """Claim several messages for attempts starting at ``now``.

        In order, what :meth:`begin_attempt` does for each id, with
        ``retry_at(status as found)`` as its retry time. Ids ``begin_attempt``
        would skip (unknown, held, complete, not due, or already claimed earlier
        in this same call) are left out.

        ``retry_at`` is called only for messages about to be claimed, and may be
        called under the backend's lock or inside its transaction: it must be
        quick and must not call the storage. If it raises, the exception
        propagates and a backend's own ``claim`` has claimed nothing (the
        default may have claimed the messages before).

        Not abstract: the default loops over :meth:`status`,
        :meth:`begin_attempt` and :meth:`email` (a message dropped in between is
        left out); backends override it to do the batch in one atomic step.

        Returns:
            One :class:`Claim` per claimed message, in the order of
            ``message_ids``.
        """
        claims: list[Claim] = []
        for message_id in dict.fromkeys(message_ids):
            try:
                before = self.status(message_id)
            except MessageNotFound:
                continue
            if not is_claimable(before, now):
                continue
            status = self.begin_attempt(message_id, now, retry_at(before))
            if status is None:
                continue
            try:
                email = self.email(message_id)
            except MessageNotFound:
                continue  # dropped between its claim and this read
            claims.append(Claim(before, status, email))
        return claims

    @abstractmethod
    def record(
        self, message_id: str, updates: Sequence[RecipientStatus]
    ) -> MessageStatus:
        """Replace the statuses of some recipients, matched by address, atomically.

        A recipient that is already ``DELIVERED`` keeps that status whatever the
        update says: a delivered recipient is never sent to again. Addresses that
        are not recipients of the message are ignored.

        Returns:
            The status after the update.

        Raises:
            MessageNotFound: the id is unknown.
        """

    def record_many(
        self, records: Sequence[tuple[str, Sequence[RecipientStatus]]]
    ) -> list[MessageStatus | None]:
        """:meth:`record` for each ``(message_id, updates)``, in order.

        An id that repeats is updated in turn, as by repeated ``record`` calls.
        Not abstract: the default loops over ``record``; backends override it to
        commit them all in one atomic step.

        Returns:
            The status after each update, or ``None`` where the id is unknown
            (the message was dropped during its attempt) instead of raising.
        """
        recorded: list[MessageStatus | None] = []
        for message_id, updates in records:
            try:
                recorded.append(self.record(message_id, updates))
            except MessageNotFound:
                recorded.append(None)
        return recorded

    @abstractmethod
    def due(self, until: float, limit: int) -> list[tuple[float, str]]:
        """List messages due for an attempt at or before ``until``.

        Returns:
            Up to ``limit`` pairs of ``(next_attempt_at, message_id)`` for messages
            that are not held and have pending recipients, earliest first.
        """

    def close(self) -> None:
        """Release the backend's resources. Idempotent; the default does nothing."""


def check_distinct(emails: Sequence[PreparedEmail]) -> None:
    """Raise :class:`DuplicateMessageError` if an id repeats within ``emails``."""
    seen: set[str] = set()
    for email in emails:
        if email.message_id in seen:
            raise DuplicateMessageError(email.message_id)
        seen.add(email.message_id)


def wrap_error(exc: Exception, action: str) -> StorageError:
    """Return a :class:`StorageError` for a backend failure while doing ``action``.

    Raise it ``from exc`` so the cause stays chained.
    """
    return StorageError(f"storage failed to {action}: {exc}")
