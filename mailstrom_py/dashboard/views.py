"""The data of each page, read in one go: :class:`Overview` and
:class:`DestinationsView`, shaped by :class:`Options`."""

from __future__ import annotations

from dataclasses import dataclass

from ..status import MessageStatus
from .facts import (
    Destination,
    Failure,
    StateCounts,
    Timeline,
    count_states,
    destinations,
    oldest_pending,
    recent_failures,
    relay_key,
    scan,
    timeline,
)
from .source import QueueSource

__all__ = [
    "DestinationsView",
    "Options",
    "Overview",
    "read_destinations",
    "read_overview",
]


@dataclass(frozen=True)
class Options:
    """What the dashboard shows and allows.

    Attributes:
        read_only: serve the pages without any action.
        relay: ``host:port`` of the relay all mail goes through, or ``None``
            when mail goes to each domain's MX hosts.
        chart_hours: the span of the overview's chart.
        lookback: how far back (seconds) the chart, the failures and the
            destinations read messages; at least the chart's span.
        budget: the most messages one page reads for them.
        failures: the most recent failures the overview lists.
    """

    read_only: bool = False
    relay: str | None = None
    chart_hours: float = 3.0
    lookback: float = 24 * 3600.0
    budget: int = 20_000
    failures: int = 20

    def __post_init__(self) -> None:
        if not 0 < self.chart_hours <= 48:
            raise ValueError("chart_hours must be more than 0 and at most 48")
        if self.lookback < self.chart_hours * 3600:
            raise ValueError("lookback must cover the chart")
        if self.budget < 1 or self.failures < 0:
            raise ValueError("budget must be at least 1, failures at least 0")


@dataclass(frozen=True)
class Overview:
    """The overview page.

    Attributes:
        now: when it was read.
        counts: messages by state.
        oldest: the oldest message still to deliver.
        timeline: outcomes per minute over the chart's span.
        failures: recipients failed within the last hour, newest first.
        scanned: how many messages the chart and failures were derived from.
    """

    now: float
    counts: StateCounts
    oldest: MessageStatus | None
    timeline: Timeline
    failures: tuple[Failure, ...]
    scanned: int


def read_overview(queue: QueueSource, now: float, options: Options) -> Overview:
    """Read the overview of ``queue`` at ``now``."""
    counts = count_states(queue)
    oldest = oldest_pending(queue)
    read = scan(queue, now, options.lookback, options.budget)
    return Overview(
        now=now,
        counts=counts,
        oldest=oldest,
        timeline=timeline(read, now, options.chart_hours),
        failures=tuple(recent_failures(read, now - 3600, options.failures)),
        scanned=len(read.statuses),
    )


@dataclass(frozen=True)
class DestinationsView:
    """The destinations page.

    Attributes:
        now: when it was read.
        since: the start of the look-back for delivered and failed counts.
        relay: the relay, in relay mode (then ``destinations`` is that one).
        destinations: by the relay, or by recipient domain.
        domains: by recipient domain, in relay mode; else empty.
        scanned: how many messages they were derived from.
        partial: not every message of the look-back was read.
    """

    now: float
    since: float
    relay: str | None
    destinations: tuple[Destination, ...]
    domains: tuple[Destination, ...]
    scanned: int
    partial: bool


def read_destinations(
    queue: QueueSource, now: float, options: Options
) -> DestinationsView:
    """Read the destinations of ``queue`` at ``now``."""
    read = scan(queue, now, options.lookback, options.budget)
    by_domain = tuple(destinations(read))
    if options.relay is None:
        return DestinationsView(
            now, read.since, None, by_domain, (), len(read.statuses), read.partial
        )
    through = tuple(destinations(read, relay_key(options.relay)))
    return DestinationsView(
        now,
        read.since,
        options.relay,
        through,
        by_domain,
        len(read.statuses),
        read.partial,
    )
