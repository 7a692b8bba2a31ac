"""The Mailstrom facade: an Outbox with a worker of its own, in one process."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Self

from ..config import Config, DirectConfig
from ..delivery import Transport, build_transport
from ..delivery.routing.mx import build_resolver
from ..delivery.routing.tlsrpt_record import lookup_report_addresses
from ..delivery.shaping import shaper_for
from ..errors import MailerClosedError
from ..event import Event
from ..events import Metrics, WebhookSender
from ..status import MessageStatus
from ..storage import EventJournal, MemoryStorage, Storage
from ..storage.controls import Suspension
from ..storage.policies import PolicyCache
from ..storage.tls_tally import TlsReportTally
from ..worker import Worker
from ..worker.reporting import Reporter, Reporters
from ..worker.tls_reports import TlsReporter
from .outbox import Clock, Outbox
from .policy_store import StoredPolicies

__all__ = ["Mailstrom"]

log = logging.getLogger(__name__)


class Mailstrom(Outbox):
    """A background mailer: hand it messages, ask it what became of them.

    ``send_email()`` validates and stores a message and returns at once; a worker
    thread delivers it and records a status for each recipient, which
    ``query_status()`` reads. Use it as a context manager, or call ``start()`` and
    ``stop()``. Messages sent before ``start()`` wait in storage until then.

    It is an :class:`~mailstrom_py.Outbox` whose notices of new mail go to its
    own worker, and whose ``wait()`` that worker wakes.

    Args:
        config: what to deliver through and how.
        storage: where messages and statuses live; a new
            :class:`~mailstrom_py.MemoryStorage` by default. The mailer closes it
            when it stops.
        transport: how to deliver; built from ``config.delivery`` by default.
        clock: wall-clock seconds since the epoch, for tests that drive time.
        rng: the randomness behind retry jitter, for reproducible tests.

    Raises:
        ConfigError: the transport or the DKIM signer cannot be built from
            ``config``.
    """

    _CLOSED = "this mailer has been stopped"

    def __init__(
        self,
        config: Config,
        storage: Storage | None = None,
        *,
        transport: Transport | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        clock = clock if clock is not None else time.time
        super().__init__(
            config,
            storage if storage is not None else MemoryStorage(),
            clock=clock,
            notify=self._notify_worker,
        )
        self._shaper = shaper_for(config, clock=clock)
        self._transport = (
            transport
            if transport is not None
            else build_transport(
                config, shaper=self._shaper, policy_store=self._policy_store()
            )
        )
        self._tls_reporter = self._tls_reporter_of(config)
        self._worker = Worker(
            self.storage,
            self._transport,
            config.retry,
            threads=config.delivery_threads,
            clock=clock,
            rng=rng,
            lease=config.claim_lease,
            reporter=self._worker_reporter(),
            events=self._events,
            suppression=config.suppression,
            controls=self._controls,
            shaper=self._shaper,
        )
        self._webhook = self._webhook_sender(config)
        self._watch(self.metrics)

    @property
    def webhook(self) -> WebhookSender | None:
        """The sender posting events to ``config.webhook``, if one is set."""
        return self._webhook

    def start(self) -> None:
        """Start the worker thread; stored messages that are due go out.

        Raises:
            MailerClosedError: the mailer was stopped.
            WorkerError: the worker is running already or did not come up.
            StorageError: the storage failed while the worker loaded due work.
        """
        with self._lock:
            if self._closed:
                raise MailerClosedError(self._CLOSED)
            self._worker.start()
            if self._webhook is not None:
                self._webhook.start()

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
        if self._tls_reporter is not None:
            # Before the storage closes: the next worker on it reports them.
            self._tls_reporter.flush()
        self._warn_of_loss()
        self._events.stop(timeout)
        if self._webhook is not None:
            # Durable storage keeps what is not posted for the next mailer.
            self._webhook.stop(min(drain, 2.0) if self._storage.durable else drain)
        if finished:
            self._transport.close()
            self._storage.close()
        else:
            # A delivery still runs and will record its result: leave the
            # storage open for it rather than lose that result.
            log.warning("stopped with deliveries still in progress")
        return finished

    def close(self) -> None:
        """Stop as :meth:`stop` does, with its default timeouts."""
        self.stop()

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

    def __enter__(self) -> Self:
        self.start()
        return self

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

    def suspend(
        self, destination: str, duration: float, *, reason: str = "a command"
    ) -> Suspension:
        """Suspend ``destination`` as :meth:`Outbox.suspend` does, in this
        mailer's worker at once."""
        entry = super().suspend(destination, duration, reason=reason)
        self._shaper.add_suspension(entry.destination, entry.reason, entry.until)
        return entry

    def resume(self, destination: str) -> bool:
        """End the suspension of ``destination``, and any slowing of it a
        reply caused, in storage and in this mailer's worker at once; whether
        it had a suspension kept in storage."""
        resumed = super().resume(destination)
        self._shaper.resume(destination.strip().lower())
        return resumed

    def _notify_worker(self, message_id: str) -> None:
        self._worker.notify(message_id)

    def _wait_until(
        self,
        message_id: str,
        predicate: Callable[[MessageStatus], bool],
        timeout: float,
    ) -> MessageStatus:
        # The worker wakes the waiters of a message as its outcome is recorded.
        return self._worker.wait(message_id, predicate, timeout)

    def _policy_store(self) -> StoredPolicies | None:
        """Where direct delivery keeps MTA-STS policies: in the storage, shared
        by every process on it, when the storage keeps them."""
        storage = self.storage
        return StoredPolicies(storage) if isinstance(storage, PolicyCache) else None

    def _tls_reporter_of(self, config: Config) -> TlsReporter | None:
        """The TLS reporter ``config`` asks for, counting in the storage when
        it keeps TLS report counts, else in memory; or None."""
        direct = config.delivery
        if not isinstance(direct, DirectConfig) or not direct.tls_reports:
            return None
        resolver = build_resolver(direct)
        storage = self.storage
        return TlsReporter(
            self._preparer,
            lambda domain: lookup_report_addresses(resolver, domain),
            sender=direct.tls_report_from or f"postmaster@{config.helo_name}",
            tally=storage if isinstance(storage, TlsReportTally) else None,
        )

    def _worker_reporter(self) -> Reporter | None:
        """The DSN reporter of the queue operations, with the TLS reporter
        when there is one."""
        reporters: list[Reporter] = []
        if self._reporter is not None:
            reporters.append(self._reporter)
        if self._tls_reporter is not None:
            reporters.append(self._tls_reporter)
        if len(reporters) > 1:
            return Reporters(*reporters)
        return reporters[0] if reporters else None

    def _watch(self, metrics: Metrics) -> None:
        """Add the webhook's counts to ``metrics``."""
        sender = self._webhook
        if sender is None:
            return
        metrics.gauge(
            "mailstrom_webhook_posted_total",
            "Events the webhook receiver acknowledged.",
            lambda: sender.posted,
        )
        metrics.gauge(
            "mailstrom_webhook_failures_total",
            "Webhook POSTs that failed.",
            lambda: sender.failures,
        )

    def _webhook_sender(self, config: Config) -> WebhookSender | None:
        storage = self._storage
        if config.webhook is None or not isinstance(storage, EventJournal):
            return None
        sender = WebhookSender(storage, config.webhook)

        def wake(event: Event) -> None:
            sender.wake()

        # Journaled events are in storage once handed in: wake the sender
        # from the producer's thread, with no dispatcher thread between.
        self._events.observe(wake)
        return sender
