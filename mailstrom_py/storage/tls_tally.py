"""SMTP TLS report counts (RFC 8460) kept in storage, shared by every worker.

A report goes to each report domain once a day and counts every session of
that day. Counts held in one process's memory are lost on a restart, and N
workers on one queue would each send their own part of the day under the same
report-id. A storage that implements :class:`TlsReportTally` keeps the counts
with the queue instead: each worker adds its counts
(:meth:`~TlsReportTally.tally_tls_sessions`), and after the day the first
worker to close it takes them all (:meth:`~TlsReportTally.take_tls_sessions`)
and sends the reports.

The storage keeps the policy and failure texts as given and never reads
them: what goes into a report is the reporter's business
(:mod:`mailstrom_py.worker.tls_reports`). :class:`MemoryTlsTally` keeps the
counts in a process, for storages that keep none.
"""

from __future__ import annotations

import datetime
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "MAX_SESSION_COUNT",
    "MAX_TALLY_TEXT",
    "MemoryTlsTally",
    "TlsReportTally",
    "TlsSessionCount",
    "check_day",
    "check_session_counts",
]

#: The longest policy or failure text of a count. A policy file is at most
#: 64 KiB (RFC 8461 §3.2); its JSON form stays well within this.
MAX_TALLY_TEXT = 256 * 1024
#: The largest count one row may add.
MAX_SESSION_COUNT = 2**31 - 1
#: The longest report domain kept (a domain name has at most 253 characters).
_MAX_DOMAIN = 255


@dataclass(frozen=True)
class TlsSessionCount:
    """How many sessions of one kind a report domain had on one day.

    Attributes:
        report_domain: the domain the report goes to, folded by the caller.
        day: the UTC day of the sessions, ``YYYY-MM-DD``.
        policy: the report's policy entry, as canonical JSON text.
        failure: ``""`` for successful sessions; for failures, what they are
            grouped by in the report's failure details, as canonical JSON text.
        count: how many sessions; at least 1.
    """

    report_domain: str
    day: str
    policy: str
    failure: str
    count: int


class TlsReportTally(ABC):
    """TLS session counts kept in a storage, per report domain, day, policy
    and failure.

    Contract for every backend, besides :class:`~mailstrom_py.Storage`'s
    (thread and process safety, ``StorageError`` for a failure of the
    backend):

    * :meth:`tally_tls_sessions` adds counts, all of them or none, in one
      atomic step that is durable once it returns; counts added by any
      process, concurrently or not, add up.
    * :meth:`take_tls_sessions` closes the days before a day: it removes and
      returns their counts in one atomic step, so that among any number of
      processes exactly one gets each count; and a day is closed once, so a
      later call with the same or an earlier day returns nothing, even for
      counts added since (those wait for the next later day's take).
    * Rows come back with the texts they were added with, one per report
      domain, day, policy and failure, with the sum of their counts.
    """

    @abstractmethod
    def tally_tls_sessions(self, rows: Sequence[TlsSessionCount]) -> None:
        """Add each row's count to the one kept for its report domain, day,
        policy and failure.

        Raises:
            ValueError: a row is bad (:func:`check_session_counts`); nothing
                was added.
        """

    @abstractmethod
    def take_tls_sessions(self, before_day: str) -> list[TlsSessionCount]:
        """Remove and return the counts of every day before ``before_day``
        (``YYYY-MM-DD``), unless a take with ``before_day`` or a later day
        was done already, by any process; then return nothing.

        Raises:
            ValueError: ``before_day`` is not a day written ``YYYY-MM-DD``.
        """


def check_day(day: object) -> str:
    """Return ``day`` if it is a day written ``YYYY-MM-DD``; else raise
    ``ValueError``."""
    if isinstance(day, str) and len(day) == 10:
        try:
            if datetime.date.fromisoformat(day).isoformat() == day:
                return day
        except ValueError:
            pass
    raise ValueError(f"not a day written YYYY-MM-DD: {day!r}")


def check_session_counts(rows: Iterable[TlsSessionCount]) -> None:
    """Raise ``ValueError`` unless every row of ``rows`` may be kept: a report
    domain of 1 to 255 characters, none of them white space or a control
    character; a day written ``YYYY-MM-DD``; policy and failure texts without
    NUL and of at most :data:`MAX_TALLY_TEXT` characters, the policy not
    empty; and a count from 1 to :data:`MAX_SESSION_COUNT`."""
    for row in rows:
        _check_domain(row.report_domain)
        check_day(row.day)
        for text in (row.policy, row.failure):
            if not isinstance(text, str) or len(text) > MAX_TALLY_TEXT or "\0" in text:
                raise ValueError(f"not a policy or failure text to count: {text!r:.80}")
        if not row.policy:
            raise ValueError("a session count needs its policy")
        count = row.count
        if (
            isinstance(count, bool)
            or not isinstance(count, int)
            or not 1 <= count <= MAX_SESSION_COUNT
        ):
            raise ValueError(f"not a session count: {count!r}")


def _check_domain(domain: object) -> None:
    if (
        not isinstance(domain, str)
        or not 0 < len(domain) <= _MAX_DOMAIN
        or not domain.isprintable()
        or any(c.isspace() for c in domain)
    ):
        raise ValueError(f"not a report domain to count sessions of: {domain!r}")


class MemoryTlsTally(TlsReportTally):
    """A :class:`TlsReportTally` in this process's memory: its counts are lost
    with the process and seen by no other. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str, str, str], int] = {}
        self._closed_before = ""

    def tally_tls_sessions(self, rows: Sequence[TlsSessionCount]) -> None:
        check_session_counts(rows)
        with self._lock:
            for row in rows:
                key = (row.report_domain, row.day, row.policy, row.failure)
                self._counts[key] = self._counts.get(key, 0) + row.count

    def take_tls_sessions(self, before_day: str) -> list[TlsSessionCount]:
        check_day(before_day)
        with self._lock:
            if before_day <= self._closed_before:
                return []
            self._closed_before = before_day
            taken = [key for key in self._counts if key[1] < before_day]
            return [TlsSessionCount(*key, self._counts.pop(key)) for key in taken]
