"""The exception tree of mailstrom_py.

Every exception the library raises on purpose derives from :class:`MailstromError`.
Errors caused by the caller's input also derive from :class:`ValueError` and lookups
of unknown ids from :class:`LookupError`, so code written against the builtins keeps
working. This module imports nothing from the package, so every other module can
import it.
"""

from __future__ import annotations

from collections.abc import Callable


class MailstromError(Exception):
    """Base class of every error raised by mailstrom_py."""


class ConfigError(MailstromError, ValueError):
    """Raised when a configuration value is invalid; raised when the value is built."""


class InvalidMessageError(MailstromError, ValueError):
    """Raised when a message or an address cannot be sent as given.

    Attributes:
        field: the header name or envelope field at fault (``"To"``, ``"mail_from"``,
            ``"body"``...), or ``None`` when the whole message is at fault.
        reason: what is wrong, in words.
        index: for a batch (``send_emails()``), the position of the message at
            fault; otherwise ``None``.
    """

    def __init__(
        self, reason: str, field: str | None = None, *, index: int | None = None
    ) -> None:
        self.field = field
        self.reason = reason
        self.index = index
        super().__init__(f"{field}: {reason}" if field else reason)

    def __reduce__(
        self,
    ) -> tuple[Callable[..., InvalidMessageError], tuple[object, ...]]:
        return (_rebuild_invalid, (type(self), self.reason, self.field, self.index))


def _rebuild_invalid(
    cls: type[InvalidMessageError], reason: str, field: str | None, index: int | None
) -> InvalidMessageError:
    return cls(reason, field, index=index)


class StorageError(MailstromError):
    """Raised when the storage backend cannot read or write.

    A ``StorageError`` from ``send_email()`` means the message was not stored.
    """


class MessageNotFound(StorageError, LookupError):
    """Raised when a message id is not known to the storage."""

    def __init__(self, message_id: str) -> None:
        self.message_id = message_id
        super().__init__(f"no message with id {message_id!r}")

    def __reduce__(self) -> tuple[type[MessageNotFound], tuple[str]]:
        return (type(self), (self.message_id,))


class DuplicateMessageError(StorageError, ValueError):
    """Raised when a message id (its Message-ID header) is already stored."""

    def __init__(self, message_id: str) -> None:
        self.message_id = message_id
        super().__init__(f"a message with id {message_id!r} is already stored")

    def __reduce__(self) -> tuple[type[DuplicateMessageError], tuple[str]]:
        return (type(self), (self.message_id,))


class MailerClosedError(MailstromError, RuntimeError):
    """Raised when a stopped mailer is asked to take more mail."""


class QueueFullError(MailstromError):
    """Raised by ``send_email()`` and ``send_emails()`` when the queue holds
    ``Config.max_queued`` pending messages, or a batch would take it past
    that; nothing was stored. A temporary condition: try again once the
    worker has delivered some of the queue.

    Attributes:
        queued: how many pending messages the queue was taken to hold.
        limit: ``Config.max_queued``.
        adding: how many messages were refused (the size of the batch).
    """

    def __init__(self, queued: int, limit: int, adding: int = 1) -> None:
        self.queued = queued
        self.limit = limit
        self.adding = adding
        held = f"{queued} pending message" + ("" if queued == 1 else "s")
        more = f"{adding} more" + (" message" if adding == 1 else " messages")
        super().__init__(
            f"the queue is full: it holds {held} and {more} would pass its"
            f" limit of {limit} (max_queued); nothing was stored"
        )

    def __reduce__(self) -> tuple[type[QueueFullError], tuple[int, int, int]]:
        return (type(self), (self.queued, self.limit, self.adding))


class WorkerError(MailstromError, RuntimeError):
    """Raised when the worker thread cannot start or is misused."""


class WebhookError(MailstromError):
    """Raised when a webhook POST fails: no connection, no answer in time, or
    an answer that is not 2xx. The events stay in the journal for the next
    try."""
