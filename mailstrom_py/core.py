"""The Mailstrom facade: wires configuration, storage, transport and worker together."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from email.message import EmailMessage, Message
from types import TracebackType

from .config import Config
from .delivery import Transport, build_transport
from .errors import InvalidMessageError, MailerClosedError
from .message import PreparedEmail, prepare_email
from .message.dkim import DkimSigner
from .message.dsn import DsnReporter
from .message.tls_options import with_tls_options
from .status import DeliveryResult, MessageStatus
from .storage import MemoryStorage, QueueAdmin, QueueFilter, Storage, queue_admin
from .worker import Clock, Worker

__all__ = ["Mailstrom"]

log = logging.getLogger(__name__)

# kick() and release() tell the worker about at most this many messages; the
# rest are due in storage, and the worker pages them in within a second, so a
# kick of the whole queue does not flood its command queue.
_NOTIFY_AT_MOST = 1000


class Mailstrom:
    """A background mailer: hand it messages, ask it what became of them.

    ``send_email()`` validates and stores a message and returns at once; a worker
    thread delivers it and records a status for each recipient, which
    ``query_status()`` reads. Use it as a context manager, or call ``start()`` and
    ``stop()``. Messages sent before ``start()`` wait in storage until then.

    Args:
        config: what to deliver through and how.
        storage: where messages and statuses live; a new
            :class:`~mailstrom_py.MemoryStorage` by default. The mailer closes it
            when it stops. The queue operations need it to be a
            :class:`~mailstrom_py.storage.QueueAdmin` as well (every backend
            of the library is); they raise ``TypeError`` otherwise.
        transport: how to deliver; built from ``config.delivery`` by default.
        clock: wall-clock seconds since the epoch, for tests that drive time.
        rng: the randomness behind retry jitter, for reproducible tests.

    Raises:
        ConfigError: the transport or the DKIM signer cannot be built from
            ``config``.
    """

    def __init__(
        self,
        config: Config,
        storage: Storage | None = None,
        *,
        transport: Transport | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._config = config
        self._storage = storage if storage is not None else MemoryStorage()
        self._transport = (
            transport if transport is not None else build_transport(config)
        )
        self._clock = clock if clock is not None else time.time
        self._signer = DkimSigner(config.dkim_keys) if config.dkim_keys else None
        self._worker = Worker(
            self._storage,
            self._transport,
            config.retry,
            threads=config.delivery_threads,
            clock=self._clock,
            rng=rng,
            reporter=self._reporter(config),
        )
        self._closed = False
        self._lock = threading.Lock()

    @property
    def config(self) -> Config:
        """The configuration the mailer was built with."""
        return self._config

    @property
    def storage(self) -> Storage:
        """The storage the mailer uses."""
        return self._storage

    def start(self) -> None:
        """Start the worker thread; stored messages that are due go out.

        Raises:
            MailerClosedError: the mailer was stopped.
            WorkerError: the worker is running already or did not come up.
            StorageError: the storage failed while the worker loaded due work.
        """
        with self._lock:
            if self._closed:
                raise MailerClosedError("this mailer has been stopped")
            self._worker.start()

    def stop(self, timeout: float | None = 60.0, *, drain: float | None = None) -> bool:
        """Stop taking mail, give mail that is due its attempt, stop delivering,
        wait for deliveries in progress, and close the storage and transport.

        First, for up to ``drain`` seconds (``Config.drain_timeout``, 30, when
        None), mail already due gets its attempt, as :meth:`flush` does. Then
        the worker stops and the deliveries in progress get up to ``timeout``
        seconds. No SMTP transaction is cut short; if one outlasts
        ``timeout``, the storage and transport stay open so its result is
        still recorded. Messages not yet delivered stay in storage; in storage
        that is not durable (:class:`~mailstrom_py.MemoryStorage`) they are
        lost with the process, and a WARNING says how many. Further
        ``send_email()`` calls raise. Calling it again does nothing.

        Returns:
            True when every delivery finished in time.
        """
        with self._lock:
            if self._closed:
                return True
            self._closed = True
        drain = self._config.drain_timeout if drain is None else drain
        if drain > 0 and self._worker.running and not self._worker.drain(drain):
            log.warning("stopping with mail due that got no attempt in %gs", drain)
        finished = self._worker.stop(timeout)
        if not self._storage.durable and isinstance(self._storage, QueueAdmin):
            lost = self._storage.count(QueueFilter(completed=False))
            if lost:
                log.warning(
                    "%d %s not yet delivered %s lost: %s keeps mail only in memory",
                    lost,
                    "message" if lost == 1 else "messages",
                    "is" if lost == 1 else "are",
                    type(self._storage).__name__,
                )
        if finished:
            self._transport.close()
            self._storage.close()
        else:
            # A delivery still runs and will record its result: leave the
            # storage open for it rather than lose that result.
            log.warning("stopped with deliveries still in progress")
        return finished

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until no message is due now, nor being attempted.

        Mail that is due gets its attempt meanwhile (the mailer must be
        started); mail deferred to a later retry, and held mail, is not
        waited for.

        Returns:
            True once the queue has drained so, False if it had not after
            ``timeout`` seconds.
        """
        return self._worker.drain(timeout)

    def __enter__(self) -> Mailstrom:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def send_email(
        self,
        message: EmailMessage | Message | bytes | str,
        *,
        mail_from: str | None = None,
        rcpt_to: Sequence[str] | None = None,
        require_tls: bool = False,
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

        Returns:
            The message id: the Message-ID without angle brackets.

        Raises:
            InvalidMessageError: the message or an address is unusable, its
                ``TLS-Required`` header says anything but ``No``, or it cannot be
                DKIM-signed (a ``ValueError``); nothing was stored.
            DuplicateMessageError: a message with the same Message-ID is stored.
            StorageError: the message could not be stored.
            MailerClosedError: the mailer was stopped.
        """
        if self._closed:
            raise MailerClosedError("this mailer has been stopped")
        now = self._clock()
        prepared = self._prepare(message, now, mail_from, rcpt_to, require_tls)
        self._storage.add(prepared, now)
        self._worker.notify(prepared.message_id)
        return prepared.message_id

    def send_emails(
        self, messages: Iterable[EmailMessage | Message | bytes | str]
    ) -> list[str]:
        """Prepare and store many messages at once, all or none; return their ids.

        Each message is prepared as by :meth:`send_email` (envelope from its
        headers), then all are stored in one storage transaction, which with
        :class:`~mailstrom_py.SqliteStorage` costs one disk sync for the batch.

        Returns:
            The message ids, in the order of ``messages``.

        Raises:
            InvalidMessageError: a message is unusable; ``index`` tells which
                (counting from 0). Nothing was stored.
            DuplicateMessageError: a Message-ID is stored already or repeats in
                the batch; nothing was stored.
            StorageError: the messages could not be stored; none was stored.
            MailerClosedError: the mailer was stopped.
        """
        if self._closed:
            raise MailerClosedError("this mailer has been stopped")
        now = self._clock()
        prepared = []
        for index, message in enumerate(messages):
            try:
                prepared.append(self._prepare(message, now, None, None, False))
            except InvalidMessageError as exc:
                raise InvalidMessageError(
                    f"message {index}: {exc.reason}", exc.field, index=index
                ) from exc
        self._storage.add_many(prepared, now)
        for email in prepared:
            self._worker.notify(email.message_id)
        return [email.message_id for email in prepared]

    def _prepare(
        self,
        message: EmailMessage | Message | bytes | str,
        now: float,
        mail_from: str | None,
        rcpt_to: Sequence[str] | None,
        require_tls: bool,
    ) -> PreparedEmail:
        prepared = prepare_email(
            message,
            helo_name=self._config.helo_name,
            mail_from=mail_from,
            rcpt_to=rcpt_to,
            allow_8bit=self._config.allow_8bit,
            now=datetime.fromtimestamp(now, UTC),
        )
        return self._finish(with_tls_options(prepared, require_tls=require_tls))

    def _finish(self, email: PreparedEmail) -> PreparedEmail:
        """Sign a prepared message once, over the bytes every attempt will send."""
        return self._signer.sign(email) if self._signer is not None else email

    def _reporter(self, config: Config) -> DsnReporter | None:
        policy = config.dsn_policy
        if policy is None:
            return None
        return DsnReporter(
            policy,
            helo_name=config.helo_name,
            retry_until=lambda created: created + config.retry.max_age,
            finish=self._finish,
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
        status to tell which.

        Raises:
            MessageNotFound: the id is unknown.
        """
        return self._worker.wait(
            message_id,
            lambda s: all(r.result is not DeliveryResult.QUEUED for r in s.recipients),
            timeout,
        )

    def run_once(self, now: float | None = None) -> int:
        """Attempt, in the calling thread, every message due at ``now``.

        For tests and tools that drive time without the worker thread; the
        mailer must not be started.

        Returns:
            How many messages were attempted.

        Raises:
            WorkerError: the worker thread is running.
        """
        return self._worker.run_once(now)

    # -- queue operations -------------------------------------------------------------

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
        """Make the selected messages due now and wake the worker to attempt them.

        Pending recipients due later are made due now; their attempt counts and
        backoff stay. Held messages stay held until released.

        Returns:
            The ids of the selected messages with pending recipients.
        """
        kicked = queue_admin(self._storage).kick(where, self._clock())
        for message_id in kicked[:_NOTIFY_AT_MOST]:
            self._worker.notify(message_id)
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
            self._worker.notify(message_id)
        return released

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
