"""The Django email backend: Django's messages, queued in an Outbox.

Each message goes as Django writes it (``message().as_bytes()``) with the
envelope Django's SMTP backend would give it: ``from_email`` as the sender and
``recipients()`` (To, Cc and Bcc) as the recipients. Bcc is in the envelope
only, never in the header.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from email.headerregistry import HeaderRegistry
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.mail import EmailMessage
from django.core.mail.backends.base import BaseEmailBackend

from ...core import Outbox
from ...errors import ConfigError, InvalidMessageError, QueueFullError, StorageError
from ...message.envelope import read_address_header
from .process import get_outbox

__all__ = ["EmailBackend"]

log = logging.getLogger(__name__)


class EmailBackend(BaseEmailBackend):  # type: ignore[misc]
    """Queues Django's email in mailstrom_py's storage for a worker to deliver.

    Name it in ``settings.EMAIL_BACKEND`` as
    ``"mailstrom_py.contrib.django.EmailBackend"``; the mailer's own settings
    are described in :mod:`mailstrom_py.contrib.django.conf`. Sending only
    prepares and stores each message, in the caller's thread: no connection
    is opened, and no thread started unless the settings ask for a worker in
    the process. Each message queued gets its id as its ``mailstrom_id``
    attribute, for ``get_outbox().query_status()``.

    Args:
        fail_silently: when true, a message that cannot be queued (an
            :class:`~mailstrom_py.InvalidMessageError`, a
            :class:`~mailstrom_py.StorageError` or a
            :class:`~mailstrom_py.QueueFullError`) is logged and left out of
            the count instead of raising.
        outbox: the outbox to queue in; by default the one of the process
            (:func:`~mailstrom_py.contrib.django.get_outbox`), opened from
            the settings at the first message.
    """

    def __init__(
        self,
        fail_silently: bool = False,
        *,
        outbox: Outbox | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(fail_silently=fail_silently, **kwargs)
        self._outbox = outbox

    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        """Queue the messages; return how many were queued.

        A message without recipients is skipped, as Django's SMTP backend
        skips it.

        Raises:
            InvalidMessageError: a message cannot be sent as it is (unless
                ``fail_silently``); the ones before it are queued.
            StorageError: the storage cannot be opened or written (unless
                ``fail_silently``).
            QueueFullError: the queue holds ``max_queued`` pending messages
                (unless ``fail_silently``); the ones before are queued.
            ImproperlyConfigured: the mailer's settings are missing or
                invalid, whatever ``fail_silently`` says.
        """
        if not email_messages:
            return 0
        try:
            outbox = self._outbox if self._outbox is not None else get_outbox()
        except ConfigError as exc:
            raise ImproperlyConfigured(str(exc)) from exc
        except StorageError:
            if not self.fail_silently:
                raise
            log.warning("cannot open the queue; no message queued", exc_info=True)
            return 0
        return sum(self._queue(outbox, message) for message in email_messages)

    def _queue(self, outbox: Outbox, message: EmailMessage) -> bool:
        recipients = message.recipients()
        if not recipients:
            return False
        try:
            message.mailstrom_id = outbox.send_email(
                _as_bytes(message),
                mail_from=_envelope_address(message.from_email, "from_email"),
                rcpt_to=[_envelope_address(r, "recipients") for r in recipients],
            )
        except (InvalidMessageError, StorageError, QueueFullError):
            if not self.fail_silently:
                raise
            log.warning("a message was not queued", exc_info=True)
            return False
        return True


def _as_bytes(message: EmailMessage) -> bytes:
    """The message as Django writes it, line ends and all (the preparer makes
    them CRLF)."""
    try:
        data: bytes = message.message().as_bytes()
    except ValueError as exc:  # BadHeaderError: a line break in a header
        raise InvalidMessageError(str(exc)) from exc
    return data


def _envelope_address(text: str, field: str) -> str:
    """The addr-spec of one address as Django has it (``"Ann <ann@x.org>"``)."""
    listed = read_address_header(field, text, HeaderRegistry())
    if len(listed.addresses) != 1 or listed.has_group:
        raise InvalidMessageError(f"{text!r} is not one address", field)
    return listed.addresses[0]
