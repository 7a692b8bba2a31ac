"""The Outbox: prepares messages, stores them, and tells a worker about them.

An :class:`Outbox` is the producer's half of the mailer: it delivers nothing,
starts no thread and builds no transport, so a process that only queues mail
(a web process next to a ``mailstrom-py worker``) pays for none of that.
:class:`~mailstrom_py.Mailstrom` is an Outbox with a worker of its own.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime
from email.message import EmailMessage, Message
from types import TracebackType
from typing import Self

from ..config import Config
from ..errors import InvalidMessageError, MailerClosedError
from ..events import EventHub, Listener, Metrics
from ..message import PreparedEmail, Preparer
from ..message.dsn import DsnReporter
from ..status import DeliveryResult, MessageStatus
from ..storage import QueueAdmin, QueueFilter, Storage, queue_admin
from ..storage.controls import MemoryControls
from .controls import ControlCommands, controls_of
from .intake import intake_limit
from .queueing import QueueOperations
from .schedule import send_time

__all__ = ["Clock", "Notify", "Outbox", "attempted"]

log = logging.getLogger(__name__)

#: Wall-clock seconds since the epoch.
Clock = Callable[[], float]
#: Told the id of a message that is stored and due now.
Notify = Callable[[str], None]

# wait() with no worker to wake it reads the status after 10 ms, then ever
# less often, up to every 200 ms: a quick answer from a worker nearby, and
# little load on storage shared with a slow one.
_POLL_FIRST = 0.01
_POLL_MOST = 0.2


class Outbox(QueueOperations, ControlCommands):
    """Hand it messages to deliver and ask what became of them; it delivers none.

    ``send_email()`` validates, prepares (and DKIM-signs) a message, stores it,
    calls ``notify`` and returns its id at once. A worker that reads the
    same storage delivers it: the one of a :class:`~mailstrom_py.Mailstrom`,
    or ``mailstrom-py worker`` in another process, which finds new mail by
    looking at storage (within a second). ``query_status()`` and ``wait()``
    read storage, and the queue operations
    (:class:`~mailstrom_py.core.queueing.QueueOperations`) work on it.

    An Outbox starts no thread, opens no connection and builds no transport;
    ``config.delivery`` is not used. Use it as a context manager, or call
    ``close()``. It is thread-safe. The suppression list and destination
    suspensions (``suppress()``, ``suspend()``...) are kept in storage, beside
    the queue; a storage that keeps no controls keeps them in the Outbox.

    Args:
        config: how to prepare messages (``helo_name``, ``allow_8bit``, DKIM
            keys); the rest is the worker's.
        storage: where messages and statuses live, shared with the worker. The
            outbox closes it when it is closed. The queue operations need it to
            be a :class:`~mailstrom_py.storage.QueueAdmin` as well (every
            backend of the library is); they raise ``TypeError`` otherwise.
        clock: wall-clock seconds since the epoch, for tests that drive time.
        notify: called with the id of each message stored or made due now, in
            the caller's thread, after storage has it; by default nobody is
            told. It should return quickly. An exception from it is logged and
            otherwise ignored: the message is stored, and a worker looking at
            storage finds it.

    With ``config.max_queued`` set, sending raises
    :class:`~mailstrom_py.QueueFullError` while the queue holds that many
    pending messages. The Outbox counts the queue at most once a second (of
    ``clock``), at a send, and in between adds what it stored itself: exact
    for this Outbox between counts, approximate across producers, whose mail
    it sees at the next count. A failure to count lets the mail through and
    logs a WARNING; the count is tried again a second later.

    Raises:
        ConfigError: a DKIM key of ``config`` cannot be loaded; or
            ``config.webhook`` is set and ``storage`` is no
            :class:`~mailstrom_py.storage.EventJournal`; or
            ``config.max_queued`` is set and ``storage`` is no
            :class:`~mailstrom_py.storage.QueueAdmin`.
    """

    #: What ``send_email()`` says once the outbox is closed.
    _CLOSED = "this outbox has been closed"

    def __init__(
        self,
        config: Config,
        storage: Storage,
        *,
        clock: Clock | None = None,
        notify: Notify | None = None,
    ) -> None:
        self._config = config
        clock = clock if clock is not None else time.time
        self._preparer = Preparer.from_config(config, clock=clock)
        super().__init__(storage, clock, notify, _reporter(config, self._preparer))
        self._controls = controls_of(storage, MemoryControls)
        self._intake = intake_limit(config.max_queued, storage, clock)
        self._closed = False
        self._lock = threading.Lock()
        self._hub = EventHub(config, storage)
        self._events = self._hub.dispatcher

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` with each :class:`~mailstrom_py.Event` from now on.

        An Outbox emits ``queued`` (one per recipient, once the message is
        stored); a :class:`~mailstrom_py.Mailstrom` emits the worker's events
        too. Listeners run on a dispatcher thread, started by the first
        subscription, never on a caller's or a delivery thread; an exception
        from one is logged. Events wait in a bounded queue
        (``Config.event_queue_size``); when it is full, new ones are dropped
        and counted (:attr:`events_dropped`).

        Returns:
            A function that unsubscribes ``listener``.
        """
        return self._hub.subscribe(listener)

    @property
    def events_dropped(self) -> int:
        """How many events were dropped because the listeners fell behind."""
        return self._events.dropped

    @property
    def metrics(self) -> Metrics:
        """Counters and histograms of what happened, from the first use of
        this property (a :class:`~mailstrom_py.Mailstrom` uses it at once),
        with gauges read when asked: see ``Metrics.samples()`` and
        ``Metrics.value()``."""
        return self._hub.metrics

    def metrics_text(self) -> str:
        """The metrics in the Prometheus text exposition format."""
        return self._hub.metrics.text()

    @property
    def config(self) -> Config:
        """The configuration the outbox was built with."""
        return self._config

    @property
    def storage(self) -> Storage:
        """The storage the outbox keeps messages in."""
        return self._storage

    @property
    def closed(self) -> bool:
        """True once the outbox is closed; sending then raises."""
        return self._closed

    def close(self) -> None:
        """Stop taking mail and close the storage. Calling it again does nothing.

        Stored mail stays in storage for a worker to deliver; in storage that
        is not durable (:class:`~mailstrom_py.MemoryStorage`) it is lost with
        the process, and a WARNING says how many messages that is.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._warn_of_loss()
        self._events.stop(self._config.drain_timeout)
        self._storage.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def send_email(
        self,
        message: EmailMessage | Message | bytes | str,
        *,
        mail_from: str | None = None,
        rcpt_to: Sequence[str] | None = None,
        require_tls: bool = False,
        send_at: datetime | None = None,
    ) -> str:
        """Validate, prepare and store a message for delivery; return its id at once.

        The envelope comes from the headers (From or Sender; To, Cc and Bcc) unless
        ``mail_from`` or ``rcpt_to`` is given. Date and Message-ID are added when
        missing; Bcc is removed. With DKIM keys configured the message is signed
        here. The prepared bytes are final: every attempt sends exactly them.
        Nothing waits for the network.

        ``require_tls=True`` asks for RFC 8689 REQUIRETLS: the message goes only
        over verified TLS to a server that offers REQUIRETLS, and fails with
        5.7.30 where that cannot be had.

        ``send_at`` schedules the message: it is not attempted before that
        time, a datetime with a time zone at most 60 days ahead. A time already
        past means at once. The retry policy's ``max_age`` counts from when the
        message was stored, so keep it above the wait.

        Returns:
            The message id: the Message-ID without angle brackets.

        Raises:
            InvalidMessageError: the message or an address is unusable, its
                ``TLS-Required`` header says anything but ``No``, it cannot be
                DKIM-signed, or ``send_at`` has no time zone or is more than 60
                days ahead (a ``ValueError``); nothing was stored.
            DuplicateMessageError: a message with the same Message-ID is stored.
            StorageError: the message could not be stored.
            QueueFullError: the queue holds ``Config.max_queued`` pending
                messages; nothing was stored.
            MailerClosedError: the outbox was closed (the mailer stopped).
        """
        if self._closed:
            raise MailerClosedError(self._CLOSED)
        now = self._clock()
        due = None if send_at is None else send_time(send_at, now)
        with self._admit(1):
            prepared = self._prepare(message, now, mail_from, rcpt_to, require_tls)
            self._hub.store([prepared], now, due)
        if due is None:
            self._notify(prepared.message_id)
        # Else not due now: the worker finds it by asking storage what is next.
        return prepared.message_id

    def send_emails(
        self,
        messages: Iterable[EmailMessage | Message | bytes | str],
        *,
        send_at: datetime | None = None,
    ) -> list[str]:
        """Prepare and store many messages at once, all or none; return their ids.

        Each message is prepared as by :meth:`send_email` (envelope from its
        headers), then all are stored in one storage transaction, which with
        :class:`~mailstrom_py.SqliteStorage` costs one disk sync for the batch.
        ``send_at`` schedules every message of the batch for one time, as
        :meth:`send_email` does one.

        Returns:
            The message ids, in the order of ``messages``.

        Raises:
            InvalidMessageError: a message is unusable; ``index`` tells which
                (counting from 0); or ``send_at`` is (``index`` is None).
                Nothing was stored.
            DuplicateMessageError: a Message-ID is stored already or repeats in
                the batch; nothing was stored.
            StorageError: the messages could not be stored; none was stored.
            QueueFullError: the batch would take the queue past
                ``Config.max_queued`` pending messages; none was stored.
            MailerClosedError: the outbox was closed (the mailer stopped).
        """
        if self._closed:
            raise MailerClosedError(self._CLOSED)
        now = self._clock()
        due = None if send_at is None else send_time(send_at, now)
        batch = list(messages)
        with self._admit(len(batch)):
            prepared = []
            for index, message in enumerate(batch):
                try:
                    prepared.append(self._prepare(message, now, None, None, False))
                except InvalidMessageError as exc:
                    raise InvalidMessageError(
                        f"message {index}: {exc.reason}", exc.field, index=index
                    ) from exc
            self._hub.store(prepared, now, due)
        if due is None:
            for email in prepared:
                self._notify(email.message_id)
        return [email.message_id for email in prepared]

    def _admit(self, adding: int) -> AbstractContextManager[None]:
        """Room in the queue for ``adding`` messages while they are stored."""
        if self._intake is None:
            return nullcontext()
        return self._intake.admit(adding)

    def _prepare(
        self,
        message: EmailMessage | Message | bytes | str,
        now: float,
        mail_from: str | None,
        rcpt_to: Sequence[str] | None,
        require_tls: bool,
    ) -> PreparedEmail:
        return self._preparer.prepare(
            message,
            mail_from=mail_from,
            rcpt_to=rcpt_to,
            require_tls=require_tls,
            now=datetime.fromtimestamp(now, UTC),
        )

    def query_status(self, message_id: str) -> MessageStatus:
        """Return the delivery status of a message, one entry per recipient.

        Raises:
            MessageNotFound: the id is unknown (a ``LookupError``).
        """
        return self._storage.status(message_id)

    def wait(self, message_id: str, timeout: float = 30.0) -> MessageStatus:
        """Wait until every recipient of a message has an outcome from an attempt.

        Returns once no recipient is ``QUEUED`` (each is delivered, failed or
        deferred), or when ``timeout`` seconds have passed; check the returned
        status to tell which. An Outbox with no worker in its process reads
        the status again and again, every 10 ms at first and every 200 ms at
        most; a :class:`~mailstrom_py.Mailstrom` is woken by its worker.

        Raises:
            MessageNotFound: the id is unknown.
        """
        return self._wait_until(message_id, attempted, timeout)

    def _wait_until(
        self,
        message_id: str,
        predicate: Callable[[MessageStatus], bool],
        timeout: float,
    ) -> MessageStatus:
        deadline = time.monotonic() + timeout
        pause = _POLL_FIRST
        while True:
            status = self._storage.status(message_id)
            left = deadline - time.monotonic()
            if predicate(status) or left <= 0:
                return status
            time.sleep(min(pause, left))
            pause = min(pause * 2, _POLL_MOST)

    def _warn_of_loss(self) -> None:
        """Say how many messages pending in storage that is not durable are lost."""
        if self._storage.durable or not isinstance(self._storage, QueueAdmin):
            return
        lost = queue_admin(self._storage).count(QueueFilter(completed=False))
        if lost:
            log.warning(
                "%d %s not yet delivered %s lost: %s keeps mail only in memory",
                lost,
                "message" if lost == 1 else "messages",
                "is" if lost == 1 else "are",
                type(self._storage).__name__,
            )


def _reporter(config: Config, preparer: Preparer) -> DsnReporter | None:
    """The reporter of ``config``'s DSN policy, or None when reports are off."""
    policy = config.dsn_policy
    if policy is None:
        return None
    return DsnReporter(
        policy,
        preparer,
        retry_until=lambda since: since + config.retry.max_age,
    )


def attempted(status: MessageStatus) -> bool:
    """Whether every recipient has an outcome from an attempt (none is
    ``QUEUED``): what :meth:`Outbox.wait` waits for."""
    return all(r.result is not DeliveryResult.QUEUED for r in status.recipients)
