"""The dispatcher: hands events to listeners on a thread of its own.

Producers (caller threads, delivery threads) put events in a bounded queue and
go on at once; one dispatcher thread calls the listeners. A slow listener
delays only other listeners, and a full queue drops events (counted in
:attr:`Dispatcher.dropped`) rather than block a producer.

Observers (:meth:`Dispatcher.observe`), such as the metrics' counters, are
called in the producer's thread instead, as the events are handed in: they
need no thread, no queue and no wake-up, so a mailer that only counts its
events runs no dispatcher thread at all.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence

from ..event import Event, Slot

__all__ = ["CAPACITY", "BatchObserver", "Dispatcher", "Listener", "Observer"]

log = logging.getLogger(__name__)

#: Called with each event, on the dispatcher's thread.
Listener = Callable[[Event], None]

#: Called with each event in the thread that produced it, as it is handed in;
#: it must be quick and thread-safe.
Observer = Callable[[Event], None]

#: Called as an :data:`Observer` is, but once with the events handed in
#: together (those of one step), in order: one call, say one lock taken, for
#: several events.
BatchObserver = Callable[[Sequence[Event]], None]

#: How many events the queue holds by default before it drops new ones.
CAPACITY = 10_000


class _Slot:
    __slots__ = ("events", "filled", "owner")

    def __init__(self, owner: Dispatcher) -> None:
        self.owner = owner
        self.events: Sequence[Event] = ()
        self.filled = False

    @property
    def heard(self) -> bool:
        return True  # queued for the listeners

    def fill(self, events: Sequence[Event]) -> None:
        self.owner.fill(self, events)


class _Dropped:
    __slots__ = ("owner",)

    def __init__(self, owner: Dispatcher) -> None:
        self.owner = owner

    @property
    def heard(self) -> bool:
        return True  # counted as dropped

    def fill(self, events: Sequence[Event]) -> None:
        self.owner.observed(events)
        self.owner.count_dropped(len(events))


class _Unheard:
    """The slot of events no listener hears: only the observers see them."""

    __slots__ = ("owner",)

    def __init__(self, owner: Dispatcher) -> None:
        self.owner = owner

    @property
    def heard(self) -> bool:
        return self.owner.observed_by_anyone

    def fill(self, events: Sequence[Event]) -> None:
        self.owner.observed(events)


class Dispatcher:
    """An :class:`~mailstrom_py.event.EventSink` that calls listeners on its
    own thread, in the order events were reserved or emitted, and observers
    in the producers' threads.

    Events of one step reserve their place before the step is stored (see
    :class:`~mailstrom_py.event.Slot`), so the events of each recipient arrive
    in the order they happened even when several threads produce them. The
    thread waits for a reserved slot to be filled before handing on what
    follows it; it is started by the first listener, and woken only when the
    slot it waits for is filled.

    Observers see every event as its slot is filled (or as it is emitted), in
    the producer's thread, before any listener does; events dropped because
    the queue is full are observed too. Producers racing each other may be
    observed in either order: an observer should count, not follow a
    sequence. With no listener and no observer (:attr:`heard` False),
    producers that do not journal their events need not build them.

    Args:
        capacity: the most events waiting at once; more are dropped and counted.
        journaling: whether producers also write events into storage with
            their outcomes (a durable webhook drains them there).
    """

    def __init__(self, *, capacity: int = CAPACITY, journaling: bool = False) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"capacity must be an integer >= 1, not {capacity!r}")
        self._capacity = capacity
        self._journaling = journaling
        self._cond = threading.Condition()
        self._slots: deque[_Slot] = deque()
        self._waiting = 0  # events in filled slots not yet handed on
        self._listeners: tuple[Listener, ...] = ()
        self._observers: tuple[Observer, ...] = ()
        self._batch_observers: tuple[BatchObserver, ...] = ()
        self._unheard = _Unheard(self)
        self._dropped = 0
        self._thread: threading.Thread | None = None
        self._asleep = False  # the thread waits for the first slot to fill
        self._stopping = False

    @property
    def journaling(self) -> bool:
        """Whether producers write events into storage with their outcomes."""
        return self._journaling

    @journaling.setter
    def journaling(self, value: bool) -> None:
        self._journaling = value

    @property
    def heard(self) -> bool:
        """Whether events handed in now would reach anyone: a listener or an
        observer (read without the lock, as :meth:`reserve` reads)."""
        return bool(self._listeners) or self.observed_by_anyone

    @property
    def observed_by_anyone(self) -> bool:
        """Whether an observer of either kind is registered."""
        return bool(self._observers or self._batch_observers)

    @property
    def dropped(self) -> int:
        """How many events were dropped because the queue was full."""
        return self._dropped

    @property
    def depth(self) -> int:
        """How many events wait for the dispatcher's thread."""
        return self._waiting

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` with every event from now on, on the dispatcher's
        thread (started now if need be). An exception from it is logged and
        the next event goes on.

        Returns:
            A function that unsubscribes it; calling it again does nothing.
        """
        with self._cond:
            self._listeners = (*self._listeners, listener)
            if self._thread is None and not self._stopping:
                self._thread = threading.Thread(
                    target=self._run, name="mailstrom-events", daemon=True
                )
                self._thread.start()

        def unsubscribe() -> None:
            with self._cond:
                listeners = list(self._listeners)
                if listener in listeners:
                    listeners.remove(listener)
                    self._listeners = tuple(listeners)

        return unsubscribe

    def observe(self, observer: Observer) -> None:
        """Call ``observer`` with every event from now on, in the thread that
        hands the event in, as it does (see the class docstring); for quick,
        thread-safe counting. No thread is started for it. An exception from
        it is logged and the event goes on to the others."""
        with self._cond:
            self._observers = (*self._observers, observer)

    def observe_batches(self, observer: BatchObserver) -> None:
        """Call ``observer`` as :meth:`observe` would, but once with the
        events handed in together, in order, rather than once per event."""
        with self._cond:
            self._batch_observers = (*self._batch_observers, observer)

    def reserve(self) -> Slot:
        """Reserve the next place in the queue; see the class docstring."""
        if not self._listeners:
            return self._unheard  # read without the lock: see subscribe()
        with self._cond:
            if not self._listeners or self._stopping:
                return self._unheard
            if len(self._slots) >= self._capacity:
                return _Dropped(self)
            slot = _Slot(self)
            self._slots.append(slot)
            return slot

    def emit(self, events: Sequence[Event]) -> None:
        """Queue ``events`` for the listeners."""
        if events:
            self.reserve().fill(events)

    def fill(self, slot: _Slot, events: Sequence[Event]) -> None:
        """Fill ``slot`` with ``events``, dropping them if the queue is full."""
        self.observed(events)
        with self._cond:
            if self._waiting + len(events) > self._capacity:
                self._dropped += len(events)
                events = ()
            slot.events = events
            slot.filled = True
            self._waiting += len(events)
            if self._asleep and self._slots[0] is slot:
                self._cond.notify()

    def observed(self, events: Sequence[Event]) -> None:
        """Show ``events`` to the observers, in this thread."""
        for batch_observer in self._batch_observers:
            if events:
                try:
                    batch_observer(events)
                except Exception:
                    log.exception(
                        "event observer %r raised on %s", batch_observer, events
                    )
        observers = self._observers
        if not observers:
            return
        for event in events:
            for observer in observers:
                try:
                    observer(event)
                except Exception:
                    log.exception("event observer %r raised on %s", observer, event)

    def count_dropped(self, count: int) -> None:
        """Count ``count`` events dropped."""
        with self._cond:
            self._dropped += count

    def stop(self, timeout: float | None = None) -> bool:
        """Hand on the events queued, then end the thread. Observers still
        see the events handed in later.

        Returns:
            True when the thread ended within ``timeout`` seconds.
        """
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def _run(self) -> None:
        while (slot := self._next()) is not None:
            listeners = self._listeners
            for event in slot.events:
                for listener in listeners:
                    try:
                        listener(event)
                    except Exception:
                        log.exception("event listener %r raised on %s", listener, event)
            with self._cond:
                self._waiting -= len(slot.events)

    def _next(self) -> _Slot | None:
        """The next filled slot, waiting for it; None once stopping and empty."""
        with self._cond:
            while not (self._slots and self._slots[0].filled):
                if self._stopping and not self._slots:
                    return None
                self._asleep = True
                try:
                    self._cond.wait(0.5 if self._stopping else None)
                finally:
                    self._asleep = False
                if self._stopping and self._slots and not self._slots[0].filled:
                    continue
            return self._slots.popleft()
