"""What the overview and destinations pages show, read from a queue.

Counts of messages by state come from ``count()`` and are exact. The rest (the
chart of outcomes per minute, recent failures, the destinations) is derived
from a :class:`Scan`: the statuses of recent and pending messages, read with
``find()`` up to a budget. Two limits follow from what storage keeps:

* Only the last attempt of each recipient is stored. The chart counts each
  recipient once, at the start of its last attempt, with its result now: a
  recipient deferred twice and then delivered counts once, as delivered;
  deferrals show only for recipients still deferred.
* The scan reads messages created within the look-back (newest hours first)
  and every older pending message, at most ``budget`` of them. A message
  created before the look-back that completed within it is not seen. When the
  budget runs out, :attr:`Scan.partial` says so and the pages say it too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from ..status import DeliveryResult, MessageStatus, RecipientStatus
from ..storage import QueueFilter
from .source import QueueSource

__all__ = [
    "STATES",
    "Destination",
    "Failure",
    "Minute",
    "Scan",
    "StateCounts",
    "Timeline",
    "count_state",
    "count_states",
    "destinations",
    "domain_of",
    "oldest_pending",
    "recent_failures",
    "relay_key",
    "scan",
    "state_filter",
    "state_of",
    "timeline",
]

#: A message's states, in the order the pages list them.
STATES = ("queued", "deferred", "held", "delivered", "failed")
_HOUR = 3600.0
_MINUTE = 60.0


def state_of(status: MessageStatus) -> str:
    """Return a message's state: ``held`` (pending and on hold), ``deferred``
    (pending, a recipient deferred), ``queued`` (pending otherwise),
    ``failed`` (complete, a recipient failed) or ``delivered``."""
    results = {r.result for r in status.recipients}
    if not status.completed:
        if status.held:
            return "held"
        return "deferred" if DeliveryResult.DEFERRED in results else "queued"
    return "failed" if DeliveryResult.FAILED in results else "delivered"


@dataclass(frozen=True)
class StateCounts:
    """How many messages are in each state (see :func:`state_of`)."""

    queued: int
    deferred: int
    held: int
    delivered: int
    failed: int

    @property
    def depth(self) -> int:
        """The messages still to deliver: queued, deferred and held."""
        return self.queued + self.deferred + self.held

    def as_dict(self) -> dict[str, int]:
        """The counts by state name, in the order of :data:`STATES`."""
        return {state: getattr(self, state) for state in STATES}


def state_filter(
    state: str, base: QueueFilter
) -> tuple[QueueFilter, QueueFilter | None]:
    """Return the filters whose counts differ by the messages of ``state``
    among those ``base`` selects: ``(selecting, excluded)``; the state's
    messages are those ``selecting`` selects less those ``excluded`` does.

    Raises:
        ValueError: ``state`` is not one of :data:`STATES`.
    """
    replace = dataclasses.replace
    pending = replace(base, completed=False, held=False)
    complete = replace(base, completed=True)
    deferred = (DeliveryResult.DEFERRED,)
    failed = (DeliveryResult.FAILED,)
    if state == "queued":
        return pending, replace(pending, results=deferred)
    if state == "deferred":
        return replace(pending, results=deferred), None
    if state == "held":
        return replace(base, completed=False, held=True), None
    if state == "delivered":
        return complete, replace(complete, results=failed)
    if state == "failed":
        return replace(complete, results=failed), None
    raise ValueError(f"unknown state {state!r}; one of {', '.join(STATES)}")


def count_state(queue: QueueSource, state: str, base: QueueFilter) -> int:
    """How many messages selected by ``base`` are in ``state``.

    The two counts are separate reads, so a message changing state between
    them may be off by one; the result is never below 0.
    """
    selecting, excluded = state_filter(state, base)
    total = queue.count(selecting)
    if excluded is not None:
        total -= queue.count(excluded)
    return max(0, total)


def count_states(queue: QueueSource, base: QueueFilter | None = None) -> StateCounts:
    """Count the messages ``base`` selects (all by default) in each state."""
    where = base or QueueFilter()
    return StateCounts(**{state: count_state(queue, state, where) for state in STATES})


def oldest_pending(queue: QueueSource) -> MessageStatus | None:
    """The status of the oldest message still to deliver, or ``None``."""
    found = queue.find(QueueFilter(completed=False), 1)
    return found[0] if found else None


@dataclass(frozen=True)
class Scan:
    """Statuses read for the derived views.

    Attributes:
        statuses: the messages read: created at or after ``since``, then older
            pending ones.
        since: the start of the look-back.
        partial: the budget ran out, so some messages were not read.
    """

    statuses: tuple[MessageStatus, ...]
    since: float
    partial: bool


def scan(queue: QueueSource, now: float, lookback: float, budget: int) -> Scan:
    """Read the messages created in the last ``lookback`` seconds, newest hour
    first, then the older pending ones, at most ``budget`` in all."""
    since = now - lookback
    found: list[MessageStatus] = []
    upper: float | None = None  # the newest hour has no end: clocks differ
    start = now - _HOUR
    while upper is None or upper > since:
        lower = max(start, since)
        where = QueueFilter(created_after=lower, created_before=upper)
        found.extend(queue.find(where, budget - len(found)))
        if len(found) >= budget:
            return Scan(tuple(found), since, partial=True)
        upper, start = lower, lower - _HOUR
    older = QueueFilter(completed=False, created_before=since)
    left = budget - len(found)
    found.extend(queue.find(older, left))
    return Scan(tuple(found), since, partial=len(found) >= budget)


@dataclass(frozen=True)
class Minute:
    """Recipients whose last attempt began within one minute, by result now."""

    start: float
    delivered: int = 0
    deferred: int = 0
    failed: int = 0

    @property
    def total(self) -> int:
        return self.delivered + self.deferred + self.failed


@dataclass(frozen=True)
class Timeline:
    """Outcomes per minute, oldest minute first, up to the current minute."""

    minutes: tuple[Minute, ...]
    partial: bool

    @property
    def peak(self) -> int:
        """The most recipients in any one minute."""
        return max((m.total for m in self.minutes), default=0)

    def totals(self) -> dict[str, int]:
        """The recipients delivered, deferred and failed over the whole span."""
        return {
            name: sum(getattr(m, name) for m in self.minutes)
            for name in ("delivered", "deferred", "failed")
        }


_COUNTED = {
    DeliveryResult.DELIVERED: "delivered",
    DeliveryResult.DEFERRED: "deferred",
    DeliveryResult.FAILED: "failed",
}


def timeline(read: Scan, now: float, hours: float) -> Timeline:
    """Count the recipients of ``read`` per minute of the last ``hours``."""
    last = int(now // _MINUTE)
    count = max(1, round(hours * 60))
    first = last - count + 1
    tallies = [dict.fromkeys(_COUNTED.values(), 0) for _ in range(count)]
    for status in read.statuses:
        for r in status.recipients:
            name = _COUNTED.get(r.result)
            if name is None or r.last_attempt_at is None:
                continue
            index = int(r.last_attempt_at // _MINUTE) - first
            if 0 <= index < count:
                tallies[index][name] += 1
    minutes = tuple(
        Minute((first + i) * _MINUTE, **tally) for i, tally in enumerate(tallies)
    )
    return Timeline(minutes, read.partial)


@dataclass(frozen=True)
class Failure:
    """A recipient that failed, with its message."""

    message_id: str
    recipient: RecipientStatus


def recent_failures(read: Scan, since: float, limit: int) -> list[Failure]:
    """The recipients of ``read`` that failed at an attempt begun at or after
    ``since``, newest first, at most ``limit``."""
    failed = [
        Failure(status.message_id, r)
        for status in read.statuses
        for r in status.recipients
        if r.result is DeliveryResult.FAILED
        and r.last_attempt_at is not None
        and r.last_attempt_at >= since
    ]
    failed.sort(key=lambda f: f.recipient.last_attempt_at or 0.0, reverse=True)
    return failed[:limit]


@dataclass(frozen=True)
class Destination:
    """The recipients of one destination among the messages scanned.

    Attributes:
        name: the recipient domain, or the relay all mail goes through.
        pending: recipients still to deliver (queued or deferred; held too).
        deferred: of those, the deferred ones.
        held: of those, the ones in held messages.
        delivered: recipients delivered (within the look-back).
        failed: recipients failed (within the look-back).
        oldest_pending_at: when the oldest message with a pending recipient
            here was created.
        last: the recipient attempted most recently: its reply is the last
            reply of this destination.
        last_trouble: the recipient deferred or failed most recently.
    """

    name: str
    pending: int = 0
    deferred: int = 0
    held: int = 0
    delivered: int = 0
    failed: int = 0
    oldest_pending_at: float | None = None
    last: RecipientStatus | None = None
    last_trouble: RecipientStatus | None = None


def domain_of(address: str) -> str:
    """The domain of a recipient address, lower-cased."""
    return address.rpartition("@")[2].lower()


def destinations(
    read: Scan, key: Callable[[str], str] = domain_of
) -> list[Destination]:
    """Group the recipients of ``read`` by ``key(address)`` (the domain by
    default); most deferred first, then most pending, then by name."""
    groups: dict[str, Destination] = {}
    for status in read.statuses:
        for r in status.recipients:
            name = key(r.address)
            groups[name] = _tally(groups.get(name) or Destination(name), status, r)
    return sorted(groups.values(), key=lambda d: (-d.deferred, -d.pending, d.name))


def _tally(d: Destination, status: MessageStatus, r: RecipientStatus) -> Destination:
    pending = not r.completed
    oldest = d.oldest_pending_at
    if pending and (oldest is None or status.created_at < oldest):
        oldest = status.created_at
    trouble = r.result in _TROUBLE and _later(r, d.last_trouble)
    return Destination(
        name=d.name,
        pending=d.pending + pending,
        deferred=d.deferred + (r.result is DeliveryResult.DEFERRED),
        held=d.held + (pending and status.held),
        delivered=d.delivered + (r.result is DeliveryResult.DELIVERED),
        failed=d.failed + (r.result is DeliveryResult.FAILED),
        oldest_pending_at=oldest,
        last=r if _later(r, d.last) else d.last,
        last_trouble=r if trouble else d.last_trouble,
    )


_TROUBLE = (DeliveryResult.DEFERRED, DeliveryResult.FAILED)


def _later(r: RecipientStatus, than: RecipientStatus | None) -> bool:
    if r.last_attempt_at is None:
        return False
    return than is None or (than.last_attempt_at or 0.0) < r.last_attempt_at


def relay_key(relay: str) -> Callable[[str], str]:
    """A :func:`destinations` key that puts every recipient at ``relay``."""

    def key(address: str) -> str:
        return relay

    return key
