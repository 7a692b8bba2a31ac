"""The background worker: delivery threads that claim due mail from storage,
attempt it and record what happened.

Storage decides what is due and hands it out under claims
(:meth:`~mailstrom_py.Storage.claim_due`), so any number of workers, in this
process or others, take mail from one storage without two of them taking the
same message. Each delivery thread claims a batch of due messages at a time
(an even share of a burst stored here, up to :data:`BATCH`), attempts it
(:mod:`mailstrom_py.worker.attempts`), and claims again while there is more.
Idle threads wait on a :class:`~.timetable.Timetable` that knows only when
next to look: at the next due time it has heard of (a fresh
``send_email()`` is due at once), and at least every ``refill_interval``
seconds for mail stored by other processes.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Callable, Sequence

from ..config import SuppressionPolicy
from ..delivery.base import Transport
from ..delivery.shaping import Shaper
from ..errors import WorkerError
from ..event import NO_EVENTS, EventSink
from ..retry import RetryPolicy
from ..status import MessageStatus
from ..storage.base import Claim, Storage
from ..storage.controls import Controls, MemoryControls
from .attempts import Attempts
from .leases import LeaseKeeper
from .reporting import Reporter
from .shaping import SuspensionSync
from .suppression import SuppressionGate
from .timetable import Look, Timetable
from .waiters import Waiters
from .wakeups import WakeSource, Wakeups

__all__ = ["BATCH", "MIN_LEASE", "Clock", "Worker"]

log = logging.getLogger(__name__)

Clock = Callable[[], float]

#: The most messages one delivery thread claims and delivers together: large
#: enough to share a claim's transaction and SMTP round trips, small enough that
#: a stop() waits for little. Outcomes are recorded one message at a time.
BATCH = 16

#: The shortest lease of a claim by default, in seconds (see ``Worker``).
MIN_LEASE = 30.0

# How often drain() looks whether the work due has been done.
_DRAIN_POLL = 0.02


class Worker:
    """Delivers stored messages in the background and records what happened.

    Args:
        storage: where messages and statuses live.
        transport: how messages are delivered.
        policy: when to retry and when to give up.
        threads: how many delivery threads run; each claims a batch of up to
            :data:`BATCH` due messages at a time, never more than its share of
            those stored in this process, so that a short queue is spread over
            every thread.
        clock: wall-clock time in seconds since the epoch.
        rng: randomness for retry jitter.
        refill_interval: how often, in seconds, an idle worker asks storage
            for due work it was not told of (mail added by another process, a
            claim whose lease ended). A storage that can tell of mail made due
            anywhere (``wait_for_work()``, as PostgreSQL's does) wakes the
            worker at once besides.
        lease: how long a claim lasts, in seconds: a message whose attempt
            records no outcome (the process died during it) is attempted again
            when the lease ends. While an attempt runs, its claims are
            extended at each half lease (:meth:`~mailstrom_py.Storage.extend`),
            so a slow attempt keeps its messages from other workers. By
            default the policy's first retry delay, and at least
            :data:`MIN_LEASE`.
        reporter: decides which attempts call for a delivery status
            notification; each report is queued like any message.
        events: where the events of attempts go (see
            :class:`~mailstrom_py.worker.attempts.Attempts`).
        suppression: the suppression list's policy, the list being kept in
            ``storage`` (or, for a storage that keeps no
            :class:`~mailstrom_py.storage.controls.Controls`, in this worker).
        controls: where the suppression list and suspensions are kept;
            ``storage`` when it keeps them.
        shaper: the transport's traffic shaper, whose suspensions the worker
            keeps in ``controls`` and reads back from there before attempts
            (at most once a second).

    Raises:
        ValueError: ``lease`` is not a finite number of seconds above 0.
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
        lease: float | None = None,
        reporter: Reporter | None = None,
        events: EventSink = NO_EVENTS,
        suppression: SuppressionPolicy | None = None,
        controls: Controls | None = None,
        shaper: Shaper | None = None,
    ) -> None:
        lease = max(policy.first_delay, MIN_LEASE) if lease is None else lease
        if not math.isfinite(lease) or lease <= 0:
            raise ValueError(f"lease must be a finite number of seconds > 0: {lease!r}")
        self._storage = storage
        self._lease = lease
        if controls is None:
            controls = storage if isinstance(storage, Controls) else MemoryControls()
        self._controls = controls
        self._suspensions = (
            SuspensionSync(shaper, controls) if shaper is not None else None
        )
        self._leases = LeaseKeeper(storage, lease, clock)
        self._attempts = Attempts(
            storage,
            transport,
            policy,
            clock=clock,
            rng=rng if rng is not None else random.Random(),
            reporter=reporter,
            queue=self.notify,
            recorded=self._recorded,
            events=events,
            gate=SuppressionGate(
                self._controls,
                suppression if suppression is not None else SuppressionPolicy(),
            ),
        )
        self._threads = threads
        self._clock = clock
        self._timetable = Timetable(clock, refill_interval, takers=threads, batch=BATCH)
        self._wakeups = (
            Wakeups(storage, self._woken, refill_interval)
            if isinstance(storage, WakeSource)
            else None
        )
        self._pool: list[threading.Thread] = []
        self._started = False
        self._waiters = Waiters()

    @property
    def running(self) -> bool:
        """True between a successful :meth:`start` and :meth:`stop`."""
        return any(thread.is_alive() for thread in self._pool)

    def start(self) -> None:
        """Start the delivery threads.

        Raises:
            WorkerError: the worker was started before.
            Exception: storage failed to say what is due (a ``StorageError``,
                say); no thread was started.
        """
        if self._started:
            raise WorkerError("the worker can be started only once")
        self._started = True
        self._storage.next_due()  # a storage that cannot answer fails here
        self._leases.start()
        for n in range(self._threads):
            thread = threading.Thread(
                target=self._deliver_loop, name=f"mailstrom-delivery-{n}", daemon=True
            )
            thread.start()
            self._pool.append(thread)
        if self._wakeups is not None:
            self._wakeups.start()

    def stop(self, timeout: float | None = None) -> bool:
        """Stop taking work and wait for the deliveries in progress to finish.

        A batch of deliveries is never cut in half: each runs to its end (every
        step of it has a timeout). Work not yet claimed stays due in storage.

        Returns:
            True when every thread has ended within ``timeout`` seconds; False
            when some delivery is still running (it finishes in the background).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        if self._wakeups is not None:
            self._wakeups.stop()
        self._timetable.close()
        for thread in self._pool:
            thread.join(
                None if deadline is None else max(0.0, deadline - time.monotonic())
            )
        # Deliveries left running past the timeout lose their claims' upkeep:
        # the storage is about to close under them.
        self._leases.stop()
        return not self.running

    def drain(self, timeout: float) -> bool:
        """Wait until no message is due now, nor being attempted: mail that is
        due gets its attempt meanwhile; deferred and held mail do not count.

        Returns:
            True once that holds; False if it did not within ``timeout``
            seconds, or at once if the worker's threads are not running.
        """
        deadline = time.monotonic() + timeout
        # Idle, then nothing due, then idle still: a claim made in between
        # is an attempt under way.
        timetable = self._timetable
        while not (timetable.idle() and not self._due_now() and timetable.idle()):
            left = deadline - time.monotonic()
            if left <= 0 or not self.running:
                return False
            time.sleep(min(left, _DRAIN_POLL))
        return True

    def notify(self, message_id: str) -> None:
        """Tell the worker that ``message_id`` is stored and due now: a delivery
        thread looks for it at once. Thread-safe."""
        self._timetable.stored(self._clock())

    def run_once(self, now: float | None = None) -> int:
        """Attempt every message due at ``now`` in this thread, a batch at a
        time, as the delivery threads do.

        For tests and tools that drive time themselves; the worker's threads must
        not be running. A message made due at ``now`` again by its own attempt
        (a retry delay of zero, say) is attempted at most twice.

        Returns:
            The number of messages attempted.

        Raises:
            WorkerError: the worker's threads are running.
        """
        if self._started:
            raise WorkerError("run_once() cannot be used while the worker runs")
        now = self._clock() if now is None else now
        if self._suspensions is not None:
            self._suspensions.refresh(self._clock(), force=True)
        attempted: set[str] = set()
        count = 0
        while claims := self._storage.claim_due(now, BATCH, self._lease):
            self._attempt(claims, now)
            count += len(claims)
            ids = {claim.message_id for claim in claims}
            if len(claims) < BATCH or not ids.isdisjoint(attempted):
                break
            attempted |= ids
        return count

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

    # -- the delivery threads -------------------------------------------------------

    def _deliver_loop(self) -> None:
        timetable = self._timetable
        while (look := timetable.wait()) is not None:
            try:
                self._look(look)
            except Exception:
                # Storage trouble: what was claimed comes back when its lease
                # ends, and the next look is within the refill interval.
                log.exception("attempting due mail failed; looking again shortly")
            finally:
                timetable.done()

    def _look(self, look: Look) -> None:
        """Claim the share of due mail ``look`` allows, if any, and attempt it."""
        if not look.expected:
            due = self._storage.next_due()
            if due is None:
                return
            if due > look.now:
                self._timetable.due(due)
                return
        claims = self._storage.claim_due(look.now, look.share, self._lease)
        self._timetable.claimed(look, len(claims))
        self._attempt(claims, look.now)

    def _attempt(self, claims: Sequence[Claim], now: float) -> None:
        try:
            if self._suspensions is not None:
                self._suspensions.refresh(self._clock())
            with self._leases.keeping(claims):
                self._attempts.run(claims, now)
        finally:
            self._waiters.wake(claim.message_id for claim in claims)

    def _woken(self) -> None:
        """Storage says mail may be due: a thread looks at once."""
        self._timetable.due(self._clock())

    def _recorded(self, status: MessageStatus) -> None:
        """An outcome was just recorded: wake its waiters, and a thread when its
        retry is due."""
        self._waiters.wake((status.message_id,))
        due = status.next_attempt_at
        if due is not None and not status.held:
            self._timetable.due(due)

    def _due_now(self) -> bool:
        due = self._storage.next_due()
        return due is not None and due <= self._clock()
