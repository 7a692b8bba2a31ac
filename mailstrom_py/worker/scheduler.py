"""The background worker: schedules attempts, runs them, records their results.

One scheduler thread owns the timetable: a heap of ``(due time, message id)``
fed by the results of attempts and by paging due work out of storage (so a
restart, or another process writing to the same storage, is picked up without a
rescan that resets anyone's backoff). Due messages go through a backlog to a
small pool of delivery threads, which take them in batches; mail that is due at
once (a fresh ``send_email()``) goes straight to the backlog without waking the
scheduler. What an attempt does is :mod:`mailstrom_py.worker.attempts`'s.
"""

from __future__ import annotations

import heapq
import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..delivery.base import Transport
from ..errors import WorkerError
from ..message.dsn import DsnReporter
from ..retry import RetryPolicy
from ..status import MessageStatus
from ..storage.base import Storage
from .attempts import Attempts
from .backlog import Backlog
from .waiters import Waiters

__all__ = ["Worker"]

log = logging.getLogger(__name__)

Clock = Callable[[], float]

# The most messages one delivery thread claims and delivers together: large
# enough to share a claim's transaction and SMTP round trips, small enough that
# a stop() waits for little. Outcomes are recorded one message at a time.
BATCH = 16

# How often a scheduler with due work but no room for it looks again, in case
# the delivery thread that made room did not see it waiting.
_STARVED_POLL = 0.05

# How often drain() looks whether the work due has been done.
_DRAIN_POLL = 0.02


@dataclass(frozen=True)
class _Send:
    message_id: str


@dataclass(frozen=True)
class _Done:
    """A batch of attempts is over; ``retries`` are ``(message id, next attempt)``."""

    retries: tuple[tuple[str, float], ...]


class _Stop:
    pass


_Command = _Send | _Done | _Stop


class Worker:
    """Delivers stored messages in the background and records what happened.

    Args:
        storage: where messages and statuses live.
        transport: how messages are delivered.
        policy: when to retry and when to give up.
        threads: how many delivery threads run; each takes a batch of up to
            :data:`BATCH` due messages at a time.
        clock: wall-clock time in seconds since the epoch.
        rng: randomness for retry jitter.
        refill_interval: how often, in seconds, storage is asked for due work
            that did not come through :meth:`notify` (mail added by another
            process, or more work than the in-memory timetable holds).
        max_scheduled: the most entries the in-memory timetable holds, and the
            most messages waiting for a delivery thread; beyond them, due work
            is paged in from storage as room frees up.
        reporter: decides which attempts call for a delivery status
            notification; each report is queued like any message.
    """

    def __init__(
        self,
        storage: Storage,
        transport: Transport,
        policy: RetryPolicy,
        *,
        threads: int = 4,
        clock: Clock = time.time,
        rng: random.Random | None = None,
        refill_interval: float = 1.0,
        max_scheduled: int = 10_000,
        reporter: DsnReporter | None = None,
    ) -> None:
        self._storage = storage
        self._attempts = Attempts(
            storage,
            transport,
            policy,
            clock=clock,
            rng=rng if rng is not None else random.Random(),
            reporter=reporter,
            queue=self.notify,
            recorded=lambda message_id: self._waiters.wake((message_id,)),
        )
        self._threads = threads
        self._clock = clock
        self._refill_interval = refill_interval
        self._max_scheduled = max_scheduled
        self._commands: queue.Queue[_Command] = queue.Queue()
        self._backlog = Backlog(takers=threads, batch=BATCH, limit=max_scheduled)
        self._heap: list[tuple[float, str]] = []
        self._scheduled: dict[str, float] = {}
        self._starved = False
        self._next_refill = 0.0
        self._scheduler: threading.Thread | None = None
        self._pool: list[threading.Thread] = []
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._waiters = Waiters()

    @property
    def running(self) -> bool:
        """True between a successful :meth:`start` and :meth:`stop`."""
        return self._scheduler is not None and self._scheduler.is_alive()

    def start(self, timeout: float = 30.0) -> None:
        """Start the scheduler and delivery threads and wait until they run.

        Raises:
            WorkerError: the worker was started before, or did not come up in time.
            Exception: whatever stopped the start-up (a storage error, say) is
                raised here, in the caller's thread.
        """
        if self._scheduler is not None:
            raise WorkerError("the worker can be started only once")
        self._scheduler = threading.Thread(
            target=self._run, name="mailstrom-scheduler", daemon=True
        )
        self._scheduler.start()
        if not self._ready.wait(timeout):
            raise WorkerError(f"the worker did not start within {timeout} seconds")
        if self._startup_error is not None:
            raise self._startup_error
        for n in range(self._threads):
            thread = threading.Thread(
                target=self._deliver_loop, name=f"mailstrom-delivery-{n}", daemon=True
            )
            thread.start()
            self._pool.append(thread)

    def stop(self, timeout: float | None = None) -> bool:
        """Stop taking work and wait for the deliveries in progress to finish.

        A batch of deliveries is never cut in half: each runs to its end (every
        step of it has a timeout). Work not yet begun stays due in storage.

        Returns:
            True when every thread has ended within ``timeout`` seconds; False
            when some delivery is still running (it finishes in the background).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        if self._scheduler is None:
            return True
        self._commands.put(_Stop())
        self._scheduler.join(_remaining(deadline))
        self._backlog.close()
        for thread in self._pool:
            thread.join(_remaining(deadline))
        return not any(t.is_alive() for t in (self._scheduler, *self._pool))

    def drain(self, timeout: float) -> bool:
        """Wait until no message is due now, nor being attempted: mail that is
        due gets its attempt meanwhile; deferred and held mail do not count.

        Returns:
            True once that holds; False if it did not within ``timeout``
            seconds, or at once if the worker's threads are not running.
        """
        deadline = time.monotonic() + timeout
        # Storage, then the backlog: a message claimed in between is in the latter.
        while not (
            self._backlog.idle()
            and not self._storage.due(self._clock(), 1)
            and self._backlog.idle()
        ):
            left = deadline - time.monotonic()
            if left <= 0 or not self.running:
                return False
            time.sleep(min(left, _DRAIN_POLL))
        return True

    def notify(self, message_id: str) -> None:
        """Tell the worker that ``message_id`` is stored and due now. Thread-safe."""
        # Straight to the delivery threads when there is room: the scheduler
        # need not wake for mail that is due at once. Before start() the
        # scheduler's first look at storage will find what does not fit.
        if not self._backlog.offer(message_id) and self._scheduler is not None:
            self._commands.put(_Send(message_id))

    def run_once(self, now: float | None = None) -> int:
        """Attempt every message due at ``now``, one after another, in this thread.

        For tests and tools that drive time themselves; the worker's threads must
        not be running.

        Returns:
            The number of messages attempted.

        Raises:
            WorkerError: the worker's threads are running.
        """
        if self._scheduler is not None:
            raise WorkerError("run_once() cannot be used while the worker runs")
        now = self._clock() if now is None else now
        self._backlog.clear()
        while True:
            try:
                self._commands.get_nowait()
            except queue.Empty:
                break
        attempted = 0
        for _, message_id in self._storage.due(now, self._max_scheduled):
            if self.attempt(message_id, now) is not None:
                attempted += 1
        return attempted

    def wait(
        self,
        message_id: str,
        predicate: Callable[[MessageStatus], bool],
        timeout: float,
    ) -> MessageStatus:
        """Wait until the status of ``message_id`` satisfies ``predicate``.

        Returns:
            The status that satisfied it, or the last one read when ``timeout``
            seconds passed first.

        Raises:
            MessageNotFound: the id is unknown.
        """
        return self._waiters.wait(
            message_id, lambda: self._storage.status(message_id), predicate, timeout
        )

    # -- attempts -------------------------------------------------------------------

    def attempt(self, message_id: str, now: float) -> MessageStatus | None:
        """Attempt one message if it is due at ``now`` and record the outcome.

        Returns:
            The status after the attempt, or None when the message was not
            attempted (unknown, held, complete, not yet due, or claimed elsewhere).
        """
        done = self.attempt_many([message_id], now)
        return done[0] if done else None

    def attempt_many(
        self, message_ids: Sequence[str], now: float
    ) -> list[MessageStatus]:
        """Attempt the messages of ``message_ids`` that are due at ``now``, together:
        one claim, deliveries over shared connections, each outcome recorded
        as soon as it is known.

        Returns:
            The statuses after the attempts, in order, of the messages attempted
            (see :meth:`attempt` for those that are not).
        """
        try:
            return self._attempts.run(message_ids, now)
        finally:
            self._waiters.wake(message_ids)

    # -- the scheduler thread -------------------------------------------------------

    def _run(self) -> None:
        try:
            self._refill(self._clock())
        except BaseException as exc:  # noqa: BLE001 (re-raised in start())
            self._startup_error = exc
            self._ready.set()
            return
        self._ready.set()
        while True:
            command: _Command | None
            try:
                command = self._commands.get(timeout=self._wait_time(self._clock()))
            except queue.Empty:
                command = None
            stopping = False
            while command is not None:
                stopping |= self._handle(command)
                try:
                    command = self._commands.get_nowait()
                except queue.Empty:
                    command = None
            if stopping:
                return
            try:
                self._dispatch(self._clock())
            except Exception:
                log.exception("the scheduler failed to dispatch; retrying shortly")
                self._next_refill = self._clock() + self._refill_interval

    def _handle(self, command: _Command) -> bool:
        if isinstance(command, _Stop):
            return True
        if isinstance(command, _Send):
            self._schedule(self._clock(), command.message_id)
        else:
            for message_id, next_attempt_at in command.retries:
                self._schedule(next_attempt_at, message_id)
        return False

    def _schedule(self, due: float, message_id: str) -> None:
        current = self._scheduled.get(message_id)
        if current is not None and current <= due:
            return
        if current is None and len(self._scheduled) >= self._max_scheduled:
            return  # storage still knows it; _refill() brings it back when due
        self._scheduled[message_id] = due
        heapq.heappush(self._heap, (due, message_id))

    def _refill(self, now: float) -> None:
        self._next_refill = now + self._refill_interval
        room = self._max_scheduled - len(self._scheduled)
        if room > 0:
            backlog = self._backlog
            for due, message_id in self._storage.due(self._next_refill, room):
                if message_id not in backlog:  # else its result reschedules it
                    self._schedule(due, message_id)

    def _dispatch(self, now: float) -> None:
        # A wall clock set back would otherwise put off the next refill by as
        # much as it jumped.
        if not self._next_refill - self._refill_interval <= now < self._next_refill:
            if self._room() > 0:
                self._refill(now)
            else:  # the delivery threads have work enough; look again later
                self._next_refill = now + self._refill_interval
        room = self._room()
        while self._heap and self._heap[0][0] <= now:
            due, message_id = self._heap[0]
            if self._scheduled.get(message_id) == due:
                if message_id not in self._backlog:
                    if room <= 0:
                        break
                    if self._backlog.offer(message_id):
                        room -= 1
                # else it is being attempted, and its result reschedules it
                del self._scheduled[message_id]
            heapq.heappop(self._heap)
        self._starved = bool(self._heap and self._heap[0][0] <= now)

    def _room(self) -> int:
        """How many more messages the delivery threads should have waiting."""
        return self._threads * BATCH - self._backlog.waiting()

    def _wait_time(self, now: float) -> float:
        wake = self._next_refill
        if self._starved:
            wake = min(wake, now + _STARVED_POLL)
        elif self._heap:
            wake = min(wake, self._heap[0][0])
        return max(0.0, min(wake - now, self._refill_interval))

    # -- the delivery threads -------------------------------------------------------

    def _deliver_loop(self) -> None:
        while (message_ids := self._backlog.take()) is not None:
            retries: list[tuple[str, float]] = []
            try:
                for status in self.attempt_many(message_ids, self._clock()):
                    if status.next_attempt_at is not None:
                        retries.append((status.message_id, status.next_attempt_at))
            except Exception:
                # Storage trouble: the claims recorded in storage bring the
                # messages back at their retry time through _refill().
                log.exception("attempts on %s failed", ", ".join(message_ids))
            finally:
                self._backlog.finish(message_ids)
            if retries or self._starved:
                self._commands.put(_Done(tuple(retries)))


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())
