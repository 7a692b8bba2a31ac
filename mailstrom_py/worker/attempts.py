"""Delivery attempts: deliver claimed messages, record and report the outcomes.

This module and the worker are the only ones that know both storage and delivery;
the worker decides when and where attempts run, this module what one does.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Iterable, Sequence

from ..codes import OTHER_SYSTEM_TRANSIENT
from ..delivery.base import BatchTransport, OnOutcome, Outcome, Transport
from ..errors import StorageError
from ..event import (
    NO_EVENTS,
    Event,
    EventKind,
    EventSink,
    outcome_events,
    started_events,
)
from ..lograte import WarningRate
from ..message import PreparedEmail
from ..retry import RetryPolicy
from ..status import DeliveryResult, MessageStatus, RecipientStatus
from ..storage.base import Claim, Storage
from ..storage.journal import EventJournal
from ..storage.rules import apply_outcomes
from .reporting import Reporter
from .suppression import Screened, SuppressionGate

__all__ = ["Attempts"]

# Outcomes are logged under the worker's name, where users configure them.
log = logging.getLogger("mailstrom_py.worker")


class Attempts:
    """Runs delivery attempts on batches of messages. Thread-safe.

    Args:
        storage: where messages and statuses live.
        transport: how messages are delivered.
        policy: when to retry and when to give up.
        clock: wall-clock seconds, read only to tell how long an attempt took.
        rng: randomness for retry jitter.
        reporter: decides which attempts call for a delivery status
            notification; each report is stored and passed to ``queue``.
        queue: called with the id of each report stored, to have it delivered.
        recorded: called with the status of each message whose outcome was
            just recorded.
        events: where the events of attempts go: ``attempt_started`` as a
            batch is taken on, ``tls`` and the outcomes as each is recorded,
            ``dsn_queued`` as a report is stored. Events the sink says nobody
            hears, and that are not journaled, are not built. When it is journaling and
            the storage is an :class:`~mailstrom_py.storage.EventJournal`,
            the outcome events are written with the outcome, in one step.
        gate: the suppression list: recipients on it fail before delivery,
            and each outcome recorded updates it; none by default.
    """

    def __init__(
        self,
        storage: Storage,
        transport: Transport,
        policy: RetryPolicy,
        *,
        clock: Callable[[], float],
        rng: random.Random,
        reporter: Reporter | None,
        queue: Callable[[str], None],
        recorded: Callable[[MessageStatus], None],
        events: EventSink = NO_EVENTS,
        gate: SuppressionGate | None = None,
    ) -> None:
        self._storage = storage
        self._transport = transport
        # Checked once: a runtime protocol check looks at every method.
        self._batcher = transport if isinstance(transport, BatchTransport) else None
        self._policy = policy
        self._clock = clock
        self._rng = rng
        self._rng_lock = threading.Lock()
        self._reporter = reporter
        self._queue = queue
        self._recorded = recorded
        self._warnings = WarningRate()
        self._events = events
        self._gate = gate

    def run(self, claims: Sequence[Claim], now: float) -> list[MessageStatus]:
        """Attempt the messages of ``claims``, claimed at ``now``: deliver them
        (over shared connections where the transport can), record each
        outcome under its claim, queue the reports.

        Each message's outcome is recorded as soon as the transport has it
        final (its final dot answered), while the rest of the batch is still
        being delivered: a crash then sends again only the messages whose
        outcome was in flight, not the whole batch.

        The next attempt of a deferred recipient counts from the end of this
        one, so an attempt that outlasts the retry delay (a server silent
        after the final dot) is not repeated the moment it ends. The attempt
        on a message ends ``now`` plus the time the clock says passed until
        its outcome was known.

        Returns:
            The statuses after the attempts, in order; messages whose outcome
            was refused (dropped, or claimed again, meanwhile) are left out.

        Raises:
            Exception: an outcome could not be recorded (a ``StorageError``,
                say), raised once every message of the batch was attempted;
                that message comes back when its claim's lease ends.
        """
        if not claims:
            return []
        if self._events.heard:
            begun: list[Event] = []
            for c in claims:
                begun += started_events(c.message_id, c.status.pending, now)
            self._events.emit(begun)
        started = self._clock()
        done: dict[int, MessageStatus | None] = {}
        failures: list[Exception] = []

        def settle(index: int, outcomes: list[Outcome]) -> None:
            if index in done:
                return  # reported before: the first report holds
            done[index] = None
            end = now + max(0.0, self._clock() - started)
            try:
                done[index] = self._record(claims[index], outcomes, now, end)
            except Exception as exc:  # noqa: BLE001 (raised after the batch)
                failures.append(exc)

        self._deliver(claims, self._screen(claims, now), settle)
        for index in range(len(claims)):
            settle(index, [])  # a transport that left one out: deferred
        if self._gate is not None:
            self._gate.delivered(_delivered_at(done.values(), now), now)
        if failures:
            raise failures[0]
        return [s for i in range(len(claims)) if (s := done[i]) is not None]

    def _screen(self, claims: Sequence[Claim], now: float) -> list[Screened]:
        """Each claimed message's pending recipients to deliver, and the
        outcomes of those the suppression list refuses."""
        if self._gate is None:
            return [([r.address for r in c.status.pending], []) for c in claims]
        return self._gate.screen(claims, now)

    def _record(
        self, claim: Claim, outcomes: list[Outcome], now: float, end: float
    ) -> MessageStatus | None:
        """Record the outcomes of the attempt on ``claim`` begun at ``now`` and
        ended at ``end``, and queue its reports; None if it was refused."""
        message_id = claim.message_id
        pending = claim.status.pending
        updates = apply_outcomes(
            pending,
            outcomes,
            now,
            self._retry_at(claim.before, end) if _defers(pending, outcomes) else None,
            before=claim.before.recipients,
        )
        status = self._store(claim, updates, end)
        if status is not None and self._gate is not None:
            self._gate.learn(updates, end)
        if status is None:
            log.info(
                "%s was dropped, or claimed again, during its attempt;"
                " its outcome is not recorded",
                message_id,
            )
            return None
        informing = log.isEnabledFor(logging.INFO)
        for r in updates:
            # A final failure warns once a minute per domain and status code.
            warn = r.result is DeliveryResult.FAILED and self._warnings.warn(
                r.address.rpartition("@")[2].lower(), str(r.status_code), now
            )
            if warn or informing:
                log.log(
                    logging.WARNING if warn else logging.INFO,
                    "%s to %s: %s (%s)",
                    message_id,
                    r.address,
                    r.result,  # a StrEnum: logged as its value
                    r.detail,
                )
        self._recorded(status)
        self._report(claim.email, claim.before, updates, now)
        return status

    def _store(
        self, claim: Claim, updates: list[RecipientStatus], end: float
    ) -> MessageStatus | None:
        """Record ``updates`` under ``claim`` and emit their events, in order
        with the events of whatever follows the record (the next claim)."""
        slot = self._events.reserve()
        events: list[Event] = []
        try:
            journal = self._journal() if self._events.journaling else None
            if journal is None:
                status = self._storage.record(claim, updates)
                if status is not None and slot.heard:
                    events = self._outcome_events(claim, updates, end)
                return status
            events = self._outcome_events(claim, updates, end)
            [status] = journal.record_journaled(
                [(claim, updates)], [[e.to_json() for e in events]]
            )
            if status is None:
                events = []
            return status
        except BaseException:
            events = []
            raise
        finally:
            slot.fill(events)

    @staticmethod
    def _outcome_events(
        claim: Claim, updates: list[RecipientStatus], end: float
    ) -> list[Event]:
        return outcome_events(claim.message_id, updates, end, claim.before.created_at)

    def _journal(self) -> EventJournal | None:
        """The storage, when events are written into it with the outcomes."""
        storage = self._storage
        if self._events.journaling and isinstance(storage, EventJournal):
            return storage
        return None

    def _retry_at(self, before: MessageStatus, end: float) -> float | None:
        """When to try again after an attempt on ``before`` that ended at
        ``end``, or None to give up. ``max_age`` counts from when the
        message was first due (:attr:`MessageStatus.retry_since`)."""
        with self._rng_lock:
            return self._policy.next_attempt_at(
                before.attempts + 1, before.retry_since, end, self._rng
            )

    def _deliver(
        self, claims: Sequence[Claim], screened: Sequence[Screened], on: OnOutcome
    ) -> None:
        """Deliver each claimed message to the recipients ``screened`` left
        for delivery, telling ``on`` each message's outcomes, with those
        ``screened`` settled already, once they are final."""

        def settle(index: int, outcomes: list[Outcome]) -> None:
            on(indices[index], screened[indices[index]][1] + outcomes)

        for index, (recipients, early) in enumerate(screened):
            if not recipients:
                on(index, early)  # nobody left to deliver to
        indices = [i for i, (recipients, _) in enumerate(screened) if recipients]
        batch = [(claims[i].email, screened[i][0]) for i in indices]
        if not batch:
            return
        batcher = self._batcher
        if len(batch) > 1 and batcher is not None:
            try:
                results = batcher.deliver_many(batch, settle)
            except Exception as exc:
                log.exception("delivery of a batch raised; deferring what is left")
                results = [_internal_error(recipients, exc) for _, recipients in batch]
            for index, outcomes in enumerate(results):
                settle(index, outcomes)  # those the transport did not report
            return
        for index, (email, recipients) in enumerate(batch):
            try:
                outcomes = self._transport.deliver(email, recipients)
            except Exception as exc:
                log.exception("delivery of %s raised; deferring it", email.message_id)
                outcomes = _internal_error(recipients, exc)
            settle(index, outcomes)

    def _report(
        self,
        email: PreparedEmail,
        before: MessageStatus,
        updates: list[RecipientStatus],
        now: float,
    ) -> None:
        """Queue the delivery status notification an attempt calls for, if any."""
        if self._reporter is None:
            return
        for report in self._reporter.reports(email, before, updates, now):
            event = Event(
                EventKind.DSN_QUEUED,
                email.message_id,
                None,
                now,
                report_id=report.message_id,
            )
            journal = self._journal()
            try:
                if journal is None:
                    self._storage.add(report, now)
                else:
                    journal.add_journaled([report], now, [event.to_json()])
            except StorageError:
                log.exception("could not queue the report on %s", email.message_id)
                continue
            log.info("%s: report %s queued", email.message_id, report.message_id)
            self._events.emit([event])
            self._queue(report.message_id)


def _defers(pending: Sequence[RecipientStatus], outcomes: Sequence[Outcome]) -> bool:
    """Whether ``outcomes`` leave one of ``pending`` deferred by the retry
    policy (reported deferred and not held back, or not reported), so that
    :func:`apply_outcomes` needs a retry time; the policy's random jitter is
    drawn only then."""
    by_address = {o.address: o for o in outcomes}
    for r in pending:
        outcome = by_address.get(r.address)
        if outcome is None or (
            outcome.result is DeliveryResult.DEFERRED and outcome.held_until is None
        ):
            return True
    return False


def _delivered_at(statuses: Iterable[MessageStatus | None], now: float) -> list[str]:
    """The recipients of ``statuses`` delivered by the attempt begun at ``now``."""
    return [
        r.address
        for status in statuses
        if status is not None
        for r in status.recipients
        if r.result is DeliveryResult.DELIVERED and r.last_attempt_at == now
    ]


def _internal_error(recipients: Sequence[str], exc: Exception) -> list[Outcome]:
    detail = f"internal error: {exc!r}"
    return [
        Outcome(a, DeliveryResult.DEFERRED, OTHER_SYSTEM_TRANSIENT, detail)
        for a in recipients
    ]
