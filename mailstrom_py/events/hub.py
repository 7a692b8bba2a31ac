"""The events of one outbox or mailer: their dispatcher, their metrics, and
the ``queued`` events written with the messages they describe."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from ..config import Config
from ..errors import ConfigError
from ..event import Event, EventKind
from ..message import PreparedEmail
from ..storage import QueueAdmin, QueueFilter, Storage
from ..storage.journal import EventJournal
from .dispatch import Dispatcher, Listener
from .metrics import Metrics

__all__ = ["EventHub", "watch_queue"]


class EventHub:
    """What an :class:`~mailstrom_py.Outbox` knows of events.

    Args:
        config: ``event_queue_size`` bounds the dispatcher's queue; with
            ``webhook`` set, events are journaled in storage.
        storage: where messages (and journaled events) are stored.

    Raises:
        ConfigError: ``config.webhook`` is set and ``storage`` keeps no journal.
    """

    def __init__(self, config: Config, storage: Storage) -> None:
        journaling = config.webhook is not None
        if journaling and not isinstance(storage, EventJournal):
            raise ConfigError(
                f"needs a storage that keeps an event journal;"
                f" {type(storage).__name__} does not",
                "webhook",
            )
        self.dispatcher = Dispatcher(
            capacity=config.event_queue_size, journaling=journaling
        )
        self._storage = storage
        self._metrics: Metrics | None = None
        self._lock = threading.Lock()

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """See :meth:`~mailstrom_py.Outbox.subscribe`."""
        return self.dispatcher.subscribe(listener)

    @property
    def metrics(self) -> Metrics:
        """The metrics, counting from their first use."""
        with self._lock:
            if self._metrics is None:
                self._metrics = self._start_metrics()
            return self._metrics

    def _start_metrics(self) -> Metrics:
        """New metrics with the dispatcher's and the queue's gauges, counting
        each event in the thread that produces it (an observer of the
        dispatcher: no dispatcher thread runs for them)."""
        metrics = Metrics()
        dispatcher, storage = self.dispatcher, self._storage
        metrics.gauge(
            "mailstrom_events_dropped_total",
            "Events dropped because listeners fell behind.",
            lambda: dispatcher.dropped,
        )
        metrics.gauge(
            "mailstrom_event_queue_depth",
            "Events waiting for listeners.",
            lambda: dispatcher.depth,
        )
        if isinstance(storage, QueueAdmin):
            watch_queue(metrics, storage)
        self.dispatcher.observe_batches(metrics.count)
        return metrics

    def store(
        self,
        emails: Sequence[PreparedEmail],
        now: float,
        send_at: float | None = None,
    ) -> None:
        """Store ``emails`` (due at ``send_at`` when given, else now) and emit
        their ``queued`` events (one per recipient), written with them into a
        journaling storage. The events keep their place ahead of any event of
        a delivery of these messages; they are not built when nobody would
        see them (no journal, listener or observer)."""
        slot = self.dispatcher.reserve()
        events: list[Event] = []
        try:
            storage = self._storage
            if self.dispatcher.journaling and isinstance(storage, EventJournal):
                queued = _queued(emails, now)
                storage.add_journaled(
                    emails, now, [e.to_json() for e in queued], send_at=send_at
                )
                events = queued
            else:
                if len(emails) == 1:
                    storage.add(emails[0], now, send_at=send_at)
                else:
                    storage.add_many(emails, now, send_at=send_at)
                if slot.heard:
                    events = _queued(emails, now)
        finally:
            slot.fill(events)


def _queued(emails: Sequence[PreparedEmail], now: float) -> list[Event]:
    """The ``queued`` events of ``emails`` stored at ``now``."""
    return [
        Event(EventKind.QUEUED, e.message_id, r, now, queued_at=now)
        for e in emails
        for r in e.recipients
    ]


def watch_queue(metrics: Metrics, queue: QueueAdmin) -> None:
    """Add gauges of ``queue``'s depth to ``metrics``, read from storage each
    time metrics are read: pending messages, and those of them held."""
    metrics.gauge(
        "mailstrom_queue_depth",
        "Messages stored with recipients pending.",
        lambda: queue.count(QueueFilter(completed=False)),
    )
    metrics.gauge(
        "mailstrom_queue_held",
        "Messages on hold.",
        lambda: queue.count(QueueFilter(completed=False, held=True)),
    )
