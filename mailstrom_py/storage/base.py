r"""The storage interface: where messages and their delivery status live.

A backend is a user plug point. Subclass :class:`Storage` (and
:class:`~mailstrom_py.storage.QueueAdmin`, for the queue operations), implement
every abstract method to the contract in its docstring, and run the contract
suite, :class:`mailstrom_py.testing.contract.StorageContract`, against it.

How mail flows through a storage: producers :meth:`~Storage.add` messages;
workers, in any number of threads and processes, :meth:`~Storage.claim_due`
what is due, each message under a claim with a token and a lease; a worker
:meth:`~Storage.record`\ s the outcome of each attempt under its claim, which
ends the claim. :meth:`~Storage.next_due` tells an idle worker when to look
again. What each step does to the recipients' statuses is
:mod:`mailstrom_py.storage.rules`.
"""

from __future__ import annotations

import itertools
import math
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from ..errors import DuplicateMessageError, StorageError
from ..message import PreparedEmail
from ..status import MessageStatus, RecipientStatus

__all__ = [
    "Claim",
    "Storage",
    "check_age",
    "check_claim",
    "check_distinct",
    "new_token",
    "wrap_error",
]


@dataclass(frozen=True, init=False)
class Claim:
    """A message claimed for one delivery attempt.

    Attributes:
        before: the status as found, before the claim.
        status: the status as claimed: each pending recipient counts one more
            attempt, begun at the claim's ``now``, and is due again when the
            lease ends (:func:`~mailstrom_py.storage.rules.attempt_begun`).
        email: the prepared message to deliver.
        token: the claim's own random token. The outcome is recorded under it,
            and refused once the claim has ended.
    """

    before: MessageStatus
    status: MessageStatus
    email: PreparedEmail
    token: str

    def __init__(
        self,
        before: MessageStatus,
        status: MessageStatus,
        email: PreparedEmail,
        token: str,
    ) -> None:
        # The dataclass's own __init__, written out to fill the frozen
        # instance's __dict__ directly (see RecipientStatus): a claim is made
        # for every message attempted. Same fields and order.
        fields = self.__dict__
        fields["before"] = before
        fields["status"] = status
        fields["email"] = email
        fields["token"] = token

    @property
    def message_id(self) -> str:
        """The id of the message claimed."""
        return self.status.message_id


class Storage(ABC):
    """Persists prepared messages and the delivery status of their recipients.

    Contract for every backend:

    * Thread and process safety: one instance is used at once by caller
      threads (``add``, ``status``) and by the worker's threads (everything),
      and a backend shared between processes or hosts by all of them. Every
      method is atomic with respect to the others, wherever they are called
      from: a reader never sees half of a write, and one message is never
      under two live claims.
    * Values: methods take and return frozen values; a backend never hands out
      an object it will later mutate.
    * Errors: an unknown id raises :class:`~mailstrom_py.errors.MessageNotFound`;
      a failure of the backend itself raises
      :class:`~mailstrom_py.errors.StorageError` (chained to the cause), and a
      failed write leaves nothing behind.
    * Durability: ``add`` has stored the message when it returns, to the degree
      the backend promises (in memory: for the life of the process).
    * States: what each method does to the recipients' statuses is the state
      machine of :mod:`mailstrom_py.storage.rules`, which backends call rather
      than restate.
    * Claims: a message is due when it is not held, has pending recipients,
      and its ``next_attempt_at`` (its pending recipients' earliest) has come.
      :meth:`claim_due` claims due messages for a lease of some seconds, during
      which they are due no more. A claim ends when an outcome is recorded
      under it, when the message is claimed again after the lease has ended
      (its claimant presumed dead), or when the message is dropped; an outcome
      recorded under a claim that has ended changes nothing.
    * Queue operations (``find``, ``kick``, ``drop``...) are another interface,
      :class:`~mailstrom_py.storage.admin.QueueAdmin`, which the backends the
      library ships implement as well.
    """

    #: Whether stored mail outlives the process (kept in a file or a database
    #: server). A mailer stopping with mail pending in storage that is not
    #: durable logs a warning with how many messages are lost.
    durable: ClassVar[bool] = False

    def add(
        self, email: PreparedEmail, now: float, *, send_at: float | None = None
    ) -> MessageStatus:
        """Store ``email`` with every recipient ``QUEUED`` and due at ``now``, or at
        ``send_at`` when it is given.

        Not abstract: the default is :meth:`add_many` of one message.

        Returns:
            The new status, with ``created_at`` equal to ``now``.

        Raises:
            DuplicateMessageError: a message with the same id is stored already;
                nothing changed.
            StorageError: the message could not be stored; nothing was stored.
        """
        if send_at is None:
            return self.add_many([email], now)[0]
        return self.add_many([email], now, send_at=send_at)[0]

    @abstractmethod
    def add_many(
        self,
        emails: Sequence[PreparedEmail],
        now: float,
        *,
        send_at: float | None = None,
    ) -> list[MessageStatus]:
        """Store several messages as :meth:`add` does, all or none of them, in one
        atomic step (one transaction, for a durable backend).

        Every recipient is ``QUEUED`` and due at ``now``, or at ``send_at`` when
        it is given (:func:`~mailstrom_py.storage.rules.initial_status`): a
        scheduled message is not claimed before then.

        ``send_at`` is an absolute time, in seconds since the epoch, kept as
        given whatever clock the backend uses for ``now`` (PostgreSQL's
        ``clock="database"`` among them). Callers pass it only when they
        schedule, so a backend written before it existed still takes
        unscheduled mail.

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
    def claim_due(self, now: float, limit: int, lease: float) -> list[Claim]:
        """Claim up to ``limit`` messages due at ``now`` for ``lease`` seconds, in
        one atomic step.

        The messages claimed are those due at ``now``
        (:func:`~mailstrom_py.storage.rules.is_claimable`), earliest due first,
        ties in the order added. Each gets a new claim token
        (:func:`new_token`) and becomes
        :func:`~mailstrom_py.storage.rules.attempt_begun` at ``now`` until
        ``now + lease``: every pending recipient counts one more attempt and
        is due again only when the lease ends. The attempt is counted before
        it is made, so a claimant that dies during it neither loses the
        message nor has it retried at once: it is claimed again when the
        lease has ended.

        A SQL backend does it in one transaction: select the due rows in
        order, ``LIMIT limit``, locking them (PostgreSQL: ``FOR UPDATE SKIP
        LOCKED``, so concurrent claims take different rows), then update them.

        Args:
            now: when the attempts begin.
            limit: the most messages to claim, at least 0.
            lease: how long the claims last, in seconds; finite and above 0.

        Returns:
            The claims, earliest due first; none when nothing is due.

        Raises:
            ValueError: ``limit`` or ``lease`` is out of range (:func:`check_claim`).
            StorageError: the claims could not be made; nothing was claimed.
        """

    @abstractmethod
    def next_due(self) -> float | None:
        """Return when the next message is due: the earliest ``next_attempt_at``
        among messages not held with pending recipients (for a message under a
        claim, when its lease ends), which may be past; ``None`` when there is
        no such message.
        """

    def record(
        self, claim: Claim, updates: Sequence[RecipientStatus]
    ) -> MessageStatus | None:
        """Record the outcome of the attempt made under ``claim``, ending the claim.

        If the claim has not ended, then in one atomic step ``updates`` replace
        the statuses of the recipients they name, matched by address
        (:func:`~mailstrom_py.storage.rules.merge_recipients`: a recipient
        already ``DELIVERED`` stays so, and strangers are ignored), and the
        claim ends: the message is due again at the earliest
        ``next_attempt_at`` of its pending recipients, which ``updates`` must
        set for each pending recipient it names. A claim whose lease has
        ended is still the message's claim until another claim replaces it:
        a late outcome is recorded.

        If the claim has ended (the message was dropped, was claimed again
        after the lease ended, or this claim was recorded already), the
        outcome is refused and nothing changes.

        Not abstract: the default is :meth:`record_many` of one.

        Returns:
            The status after the update, or ``None`` when the outcome was
            refused.
        """
        return self.record_many([(claim, updates)])[0]

    @abstractmethod
    def record_many(
        self, records: Sequence[tuple[Claim, Sequence[RecipientStatus]]]
    ) -> list[MessageStatus | None]:
        """:meth:`record` for each ``(claim, updates)``, in order, in one atomic
        step (one transaction, for a durable backend).

        A claim that repeats is refused the second time: the first record ended
        it.

        Returns:
            The status after each update, or ``None`` where it was refused.
        """

    def extend(self, claims: Sequence[Claim], now: float, lease: float) -> list[bool]:
        """Keep each of ``claims`` that has not ended for ``lease`` seconds more
        from ``now``, in one atomic step: its message stays claimed, due again
        only at ``now + lease`` (every pending recipient's ``next_attempt_at``
        becomes that time), and its token stays the claim's.

        A worker whose attempt runs long extends its claims before their lease
        ends, so that no other worker claims the messages meanwhile. A claim
        whose lease has ended but that no other claim has replaced is still
        the message's claim, and is extended. A claim that has ended
        (recorded, replaced, or its message dropped) is refused and nothing
        changes for it.

        Not abstract: the default extends nothing, and returns ``False`` for
        every claim; a backend that keeps claims should do better.

        Args:
            claims: the claims to extend.
            now: the time the new lease counts from.
            lease: seconds; finite and above 0.

        Returns:
            For each claim, in order, whether it was extended.

        Raises:
            ValueError: ``lease`` is out of range.
            StorageError: the claims could not be extended; none was.
        """
        check_claim(0, lease)
        return [False] * len(claims)

    def close(self) -> None:
        """Release the backend's resources. Idempotent; the default does nothing."""


class _Tokens:
    """Claim tokens: a random prefix drawn once per process and a count.

    A claim token needs only to differ from every other; drawing each from
    ``os.urandom`` cost a system call per claim, under the storage's lock. A
    forked child draws a prefix of its own, or it would repeat its parent's.
    """

    def __init__(self) -> None:
        self.draw()
        os.register_at_fork(after_in_child=self.draw)

    def draw(self) -> None:
        self._prefix = os.urandom(8).hex()
        self._count = itertools.count()

    def next(self) -> str:
        # itertools.count hands out each number once, whatever the threads.
        return self._prefix + format(next(self._count), "x")


_TOKENS = _Tokens()


def new_token() -> str:
    """Return a new claim token, unique in this process and, with
    overwhelming probability, among every process: 16 random hexadecimal
    digits drawn once per process, then a count."""
    return _TOKENS.next()


def check_claim(limit: int, lease: float) -> None:
    """Raise ``ValueError`` unless ``limit`` and ``lease`` are as
    :meth:`Storage.claim_due` takes them."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise ValueError(f"limit must be an integer >= 0, not {limit!r}")
    if not isinstance(lease, int | float) or not math.isfinite(lease) or lease <= 0:
        raise ValueError(f"lease must be a finite number of seconds > 0, not {lease!r}")


def check_age(older_than: float, batch: int) -> None:
    """Raise ``ValueError`` unless ``older_than`` (seconds) and ``batch`` are
    as ``purge_completed()`` takes them."""
    if (
        isinstance(older_than, bool)
        or not isinstance(older_than, int | float)
        or not math.isfinite(older_than)
        or older_than < 0
    ):
        raise ValueError(
            f"older_than must be a finite number of seconds >= 0, not {older_than!r}"
        )
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be an integer >= 1, not {batch!r}")


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
