"""Metrics: counters and histograms fed by events, read from Python or as
Prometheus text.

:class:`Metrics` is called with each event and counts what it reports;
:class:`~mailstrom_py.Mailstrom` has it observe its dispatcher a batch at a
time (see :meth:`~mailstrom_py.events.Dispatcher.observe_batches`), so each
event is counted in
the thread that produced it, as it is produced, and no dispatcher thread runs
for the metrics.
Values read at the moment of asking (the queue's depth, dropped events, the
webhook's posts) come from gauges, functions registered with :meth:`Metrics.gauge`.
:meth:`Metrics.text` renders everything in the Prometheus text format, version
0.0.4, with no dependency.
"""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from ..event import Event, EventKind

__all__ = ["BUCKETS", "MAX_DESTINATIONS", "Metrics", "Sample"]

#: The upper bounds, in seconds, of the delivery latency histogram's buckets.
BUCKETS: tuple[float, ...] = (
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    900.0,
    3600.0,
    14400.0,
    86400.0,
)

#: The most destinations counted by name; the rest count as ``"other"``, so a
#: mailer sending to many domains keeps a bounded number of series.
MAX_DESTINATIONS = 200

Labels = tuple[tuple[str, str], ...]

_OUTCOMES = {
    EventKind.DELIVERED: "delivered",
    EventKind.DEFERRED: "deferred",
    EventKind.FAILED: "failed",
    EventKind.POSSIBLY_DELIVERED: "possibly_delivered",
    EventKind.SUPPRESSED: "suppressed",
}

# The counter that each event of a kind adds one to, for kinds counted alone.
_COUNTED: dict[EventKind, tuple[str, Labels]] = {
    EventKind.QUEUED: ("mailstrom_queued_total", ()),
    EventKind.ATTEMPT_STARTED: ("mailstrom_attempts_total", ()),
    EventKind.DSN_QUEUED: ("mailstrom_dsn_queued_total", ()),
}

_HELP = {
    "mailstrom_recipients_total": (
        "counter",
        "Recipient outcomes, by result and destination.",
    ),
    "mailstrom_queued_total": ("counter", "Recipients queued."),
    "mailstrom_attempts_total": ("counter", "Delivery attempts, per recipient."),
    "mailstrom_bounces_total": (
        "counter",
        "Deferred and failed recipients, by bounce category.",
    ),
    "mailstrom_tls_total": (
        "counter",
        "Servers talked to, by TLS version (none for plaintext) and verification.",
    ),
    "mailstrom_dsn_queued_total": ("counter", "Delivery status notifications queued."),
    "mailstrom_delivery_latency_seconds": (
        "histogram",
        "Seconds from queueing to delivery, per delivered recipient.",
    ),
}


@dataclass(frozen=True)
class Sample:
    """One value of a metric.

    Attributes:
        name: the series' name (``mailstrom_queued_total``,
            ``mailstrom_delivery_latency_seconds_bucket``...).
        labels: its labels, as ``(name, value)`` pairs.
        value: the value.
    """

    name: str
    labels: Labels
    value: float


class _Histogram:
    __slots__ = ("count", "counts", "total")

    def __init__(self, size: int) -> None:
        self.counts = [0] * size
        self.count = 0
        self.total = 0.0


class Metrics:
    """Counts what events report. Thread-safe; call it with each event.

    Args:
        buckets: the latency histogram's upper bounds, in seconds, ascending.
    """

    def __init__(self, buckets: Sequence[float] = BUCKETS) -> None:
        if list(buckets) != sorted(set(buckets)) or not buckets:
            raise ValueError("buckets must be distinct and ascending")
        self._buckets = tuple(float(b) for b in buckets)
        self._lock = threading.Lock()
        self._counters: dict[tuple[str, Labels], float] = {}
        self._latency = _Histogram(len(self._buckets))
        self._destinations: set[str] = set()
        self._gauges: dict[str, tuple[str, Callable[[], float]]] = {}

    def gauge(self, name: str, help: str, read: Callable[[], float]) -> None:
        """Report ``read()`` as the gauge (or, for a name ending ``_total``, the
        counter) ``name`` whenever metrics are read."""
        with self._lock:
            self._gauges[name] = (help, read)

    def __call__(self, event: Event) -> None:
        """Count ``event``."""
        self.count((event,))

    def count(self, events: Sequence[Event]) -> None:
        """Count each of ``events``, the lock taken once (a
        :data:`~mailstrom_py.events.BatchObserver`)."""
        counters = self._counters
        with self._lock:
            for event in events:
                kind = event.kind
                key = _COUNTED.get(kind)
                if key is None and kind is EventKind.TLS:
                    key = (
                        "mailstrom_tls_total",
                        (
                            ("version", event.tls_version or "none"),
                            ("verified", "true" if event.tls_verified else "false"),
                        ),
                    )
                if key is not None:
                    counters[key] = counters.get(key, 0.0) + 1.0
                elif kind in _OUTCOMES:
                    self._outcome(event, _OUTCOMES[kind])

    def samples(self) -> list[Sample]:
        """Every value now, counters and histograms first, then gauges."""
        with self._lock:
            found = [
                Sample(name, labels, value)
                for (name, labels), value in sorted(self._counters.items())
            ]
            found.extend(self._latency_samples())
            gauges = list(self._gauges.items())
        found.extend(Sample(name, (), float(read())) for name, (_, read) in gauges)
        return found

    def value(self, name: str, **labels: str) -> float:
        """The value of the series ``name`` with exactly ``labels``; 0 if none."""
        wanted = tuple(sorted(labels.items()))
        for sample in self.samples():
            if sample.name == name and tuple(sorted(sample.labels)) == wanted:
                return sample.value
        return 0.0

    def describe(self, name: str) -> tuple[str, str, str]:
        """The family a series ``name`` belongs to, its type (``counter``,
        ``gauge`` or ``histogram``) and its help text."""
        family = _family(name)
        kind, help = _HELP.get(family, ("", ""))
        if not kind:
            with self._lock:
                help = self._gauges[family][0] if family in self._gauges else ""
            kind = "counter" if family.endswith("_total") else "gauge"
        return family, kind, help

    def text(self) -> str:
        """Every metric in the Prometheus text exposition format (0.0.4)."""
        lines: list[str] = []
        described: set[str] = set()
        for sample in self.samples():
            family, kind, help = self.describe(sample.name)
            if family not in described:
                described.add(family)
                lines.append(f"# HELP {family} {help}")
                lines.append(f"# TYPE {family} {kind}")
            lines.append(
                f"{sample.name}{_labels(sample.labels)} {_number(sample.value)}"
            )
        return "\n".join(lines) + "\n"

    def _outcome(self, event: Event, result: str) -> None:
        destination = self._destination(event)
        self._add(
            "mailstrom_recipients_total",
            (("destination", destination), ("result", result)),
        )
        if event.category is not None and result in ("deferred", "failed"):
            self._add("mailstrom_bounces_total", (("category", event.category.value),))
        if result == "delivered" and event.queued_at is not None:
            self._observe(max(0.0, event.time - event.queued_at))

    def _destination(self, event: Event) -> str:
        name = event.destination
        if name is None and event.recipient is not None:
            name = event.recipient.rpartition("@")[2]
        name = (name or "unknown").lower()
        if name in self._destinations:
            return name
        if len(self._destinations) >= MAX_DESTINATIONS:
            return "other"
        self._destinations.add(name)
        return name

    def _add(self, name: str, labels: Labels) -> None:
        key = (name, labels)
        self._counters[key] = self._counters.get(key, 0.0) + 1.0

    def _observe(self, seconds: float) -> None:
        latency = self._latency
        index = bisect.bisect_left(self._buckets, seconds)
        if index < len(latency.counts):
            latency.counts[index] += 1
        latency.count += 1
        latency.total += seconds

    def _latency_samples(self) -> Iterable[Sample]:
        name = "mailstrom_delivery_latency_seconds"
        running = 0
        for bound, count in zip(self._buckets, self._latency.counts, strict=True):
            running += count
            yield Sample(f"{name}_bucket", (("le", _number(bound)),), running)
        yield Sample(f"{name}_bucket", (("le", "+Inf"),), self._latency.count)
        yield Sample(f"{name}_sum", (), self._latency.total)
        yield Sample(f"{name}_count", (), self._latency.count)


def _family(name: str) -> str:
    for suffix in ("_bucket", "_sum", "_count"):
        if name.startswith("mailstrom_delivery_latency_seconds") and name.endswith(
            suffix
        ):
            return name.removesuffix(suffix)
    return name


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)
