"""SMTP TLS reporting (RFC 8460) from the outcomes the worker records.

Two domains are named for every session, and kept apart here:

- the **policy domain** (RFC 8460 §3), the domain that published the policy
  the session was held to (``Remote.tls_policy_domain``): the recipient
  domain under MTA-STS or no policy, the exchanger's TLSA base domain under
  DANE. It goes into the report, as the ``policy-domain`` of the session's
  policy entry;
- the **report domain**, the domain whose ``_smtp._tls`` record says where
  a report goes; it names the report (TLS-Report-Domain, Subject, file name
  and report-id).

Every recorded recipient whose last session was held to a destination's
policy ("no-policy-found" included) counts as one session toward its
recipient domain, which is the report domain of MTA-STS and no-policy
sessions. A DANE session also counts toward its TLSA base domain when that
is another domain. RFC 8460 §3 has reports "distributed via DNS from the
Policy Domain's zone", which for DANE is the TLSA base domain; Postfix
sends a DANE session's report to the next-hop (recipient) domain, with the
TLSA base domain as the policy domain inside. Receivers follow both
readings, so both domains get it, once each. Recipients of one attempt
that shared a session count once per report domain.

Counts are kept where every worker on the queue sees them: in the storage
when it is a :class:`~mailstrom_py.storage.tls_tally.TlsReportTally` (SQLite,
PostgreSQL), else in this process's memory (a
:class:`~mailstrom_py.storage.tls_tally.MemoryTlsTally`). Each reporter counts
in memory between flushes (a write for every recorded attempt would cost
every delivery) and adds its counts to the tally at most every
:data:`FLUSH_INTERVAL` seconds of its clock (the ``now`` of the attempts), and
when the mailer stops (:meth:`TlsReporter.flush`). A restart thus loses
nothing kept in storage, and the counts of N workers add up.

Once a new UTC day is :data:`TAKE_DELAY` old (two flush intervals, so that
every busy worker's last counts of the day are in), the next flush takes the
counts of the days before it from the tally, which gives them to one worker
of the queue only and closes those days, and queues one report per report
domain that publishes ``_smtp._tls`` with a ``mailto:`` address: one report a
day per report domain, across all workers. A report covers every day the
take holds for its domain, up to the day before the take: counts that come
late for a day already taken (a worker that was idle since before midnight
flushes them later) go with the next day's take, whose date range then
starts at their day. Report-ids, named for that range, so never repeat. A
report domain beyond :data:`MAX_DOMAINS` of a day in one flush interval is
not counted; counts that cannot be flushed (a storage failure) are logged
and kept for the next flush, and a take that fails is tried again at the
next flush. Counts left in memory are lost with the process.

Only the last session of each recipient is known here: a failed session
before a successful one (an MTA-STS testing policy, another exchanger)
counts as the success.
"""

from __future__ import annotations

import datetime
import itertools
import logging
import math
import threading
from collections.abc import Callable, Iterable, Sequence

from ..delivery.routing.dnsquery import DnsTrouble
from ..delivery.routing.mta_sts import PolicyError, parse_policy
from ..delivery.tlsrpt import RESULT_TYPES, ReportedPolicy, SessionResult
from ..delivery.tlsrpt_mail import report_email
from ..errors import StorageError
from ..message import PreparedEmail
from ..message.preparer import Preparer
from ..status import MessageStatus, RecipientStatus, Remote
from ..storage.tls_tally import (
    MemoryTlsTally,
    TlsReportTally,
    TlsSessionCount,
    check_session_counts,
)
from .tls_counts import count_key, counted_session

__all__ = [
    "FLUSH_INTERVAL",
    "MAX_DOMAINS",
    "TAKE_DELAY",
    "TlsReporter",
    "report_domains",
]

log = logging.getLogger(__name__)

#: The most report domains of a day counted in memory between flushes;
#: sessions beyond are not counted.
MAX_DOMAINS = 10_000
#: Seconds between a reporter's flushes of its counts to the tally, at most.
FLUSH_INTERVAL = 60.0
#: Seconds into a UTC day before the days before it are taken and reported.
TAKE_DELAY = 2 * FLUSH_INTERVAL

# The most servers' count keys remembered (TlsReporter._count_key).
_MAX_KEYS = 4096

Day = datetime.date
# A count's report domain, day, policy and failure (see TlsSessionCount).
Key = tuple[str, str, str, str]


class TlsReporter:
    """Counts TLS sessions per report domain and day, and queues the reports;
    a :class:`~mailstrom_py.worker.reporting.Reporter`. Thread-safe.

    Args:
        preparer: prepares (and DKIM-signs) each report as the mailer's own
            messages; its HELO name is the report's submitter.
        addresses: the report addresses of a domain (its ``_smtp._tls``
            record's ``mailto:`` URIs); may raise ``DnsTrouble``.
        sender: the From address and contact of the reports.
        tally: where the counts of every worker on the queue are kept (the
            storage, when it keeps them); by default, this reporter's memory.
    """

    def __init__(
        self,
        preparer: Preparer,
        addresses: Callable[[str], tuple[str, ...]],
        *,
        sender: str,
        tally: TlsReportTally | None = None,
    ) -> None:
        self._preparer = preparer
        self._addresses = addresses
        self._sender = sender
        self._tally = tally if tally is not None else MemoryTlsTally()
        self._lock = threading.Lock()
        self._counts: dict[Key, int] = {}
        self._days: set[tuple[str, str]] = set()
        self._flushed_at = -math.inf
        self._taken_before = ""
        # Reads and writes of a dict are atomic: no lock for this cache.
        self._keys: dict[Remote, tuple[str, str]] = {}

    def reports(
        self,
        email: PreparedEmail,
        before: MessageStatus,
        updates: Sequence[RecipientStatus],
        now: float,
    ) -> list[PreparedEmail]:
        """Count the sessions of ``updates`` on ``now``'s day; when a flush is
        due, flush the counts, and return the reports due now: one per report
        domain with counts of ended days, once the new day is
        :data:`TAKE_DELAY` old."""
        today = _day(now).isoformat()
        counted = [
            (report_domain, today, *self._count_key(remote))
            for report_domain, remote in _sessions(updates)
        ]
        with self._lock:
            self._add((key, 1) for key in counted)
            if now < self._flushed_at + FLUSH_INTERVAL:
                return []
            self._flushed_at = now
        self.flush()
        return self._take(now)

    def _count_key(self, remote: Remote) -> tuple[str, str]:
        """The policy and failure texts a session with ``remote`` counts
        under; remembered, as sessions with one server repeat all day."""
        key = self._keys.get(remote)
        if key is None:
            key = count_key(_result(remote))
            if len(self._keys) >= _MAX_KEYS:
                self._keys.clear()
            self._keys[remote] = key
        return key

    def flush(self) -> None:
        """Add the counts held in memory to the tally (the mailer calls this
        when it stops); on a storage failure they are logged and kept."""
        with self._lock:
            counts, self._counts, self._days = self._counts, {}, set()
        if not counts:
            return
        rows = [TlsSessionCount(*key, count) for key, count in counts.items()]
        try:
            self._tally.tally_tls_sessions(_valid(rows))
        except StorageError as exc:
            log.warning("TLS report counts kept for the next flush: %s", exc)
        except Exception:
            # Never into a delivery; a tally's bug shows with its traceback.
            log.exception("TLS report counts kept for the next flush")
        else:
            return
        with self._lock:
            self._add(counts.items())

    def _add(self, counts: Iterable[tuple[Key, int]]) -> None:
        """Add ``counts`` to those in memory, within :data:`MAX_DOMAINS`
        report domains a day; the caller holds the lock."""
        for key, count in counts:
            day = key[:2]
            if day not in self._days:
                if len(self._days) >= MAX_DOMAINS:
                    continue
                self._days.add(day)
            self._counts[key] = self._counts.get(key, 0) + count

    def _take(self, now: float) -> list[PreparedEmail]:
        """The reports of the days before ``now``'s, taken from the tally once
        a day, :data:`TAKE_DELAY` into it."""
        today = _day(now)
        before_day = today.isoformat()
        midnight = datetime.datetime.combine(today, datetime.time(), datetime.UTC)
        with self._lock:
            if self._taken_before >= before_day:
                return []
        if now < midnight.timestamp() + TAKE_DELAY:
            return []
        try:
            rows = self._tally.take_tls_sessions(before_day)
        except StorageError as exc:
            log.warning("TLS report counts not taken, trying again later: %s", exc)
            return []
        except Exception:
            log.exception("TLS report counts not taken, trying again later")
            return []
        with self._lock:
            self._taken_before = max(self._taken_before, before_day)
        last = today - datetime.timedelta(days=1)
        found: list[PreparedEmail] = []
        for report_domain, (days, results) in _by_domain(rows).items():
            report = self._report(report_domain, min(days), last, results, now)
            if report is not None:
                found.append(report)
        return found

    def _report(
        self,
        report_domain: str,
        first: Day,
        last: Day,
        results: list[SessionResult],
        now: float,
    ) -> PreparedEmail | None:
        try:
            to = self._addresses(report_domain)
        except DnsTrouble as exc:
            log.warning("no TLS report for %s: %s", report_domain, exc)
            return None
        if not to:
            return None
        submitter = self._preparer.helo_name
        start = datetime.datetime.combine(first, datetime.time(), datetime.UTC)
        end = datetime.datetime.combine(last, datetime.time(23, 59, 59), datetime.UTC)
        report_id = f"{start:%Y%m%d}-{end:%Y%m%d}.{report_domain}@{submitter}"
        try:
            message = report_email(
                report_domain,
                results,
                submitter=submitter,
                sender=self._sender,
                to=to,
                report_id=report_id,
                start=start,
                end=end,
            )
            return self._preparer.prepare(
                message,
                mail_from=self._sender,
                rcpt_to=list(to),
                now=datetime.datetime.fromtimestamp(now, datetime.UTC),
            )
        except Exception:
            log.exception("could not build the TLS report for %s", report_domain)
            return None


def report_domains(address: str, remote: Remote) -> tuple[str, ...]:
    """The domains a session of recipient ``address`` held to ``remote``'s
    policy is reported to: the recipient domain, and for a DANE session its
    TLSA base domain (the policy domain) too when that is another domain;
    none for an address literal, which has no zone to publish a record in.
    """
    recipient_domain = address.rpartition("@")[2].lower()
    if recipient_domain.startswith("["):
        return ()
    policy_domain = remote.tls_policy_domain
    if remote.tls_policy != "tlsa" or policy_domain in (None, recipient_domain):
        return (recipient_domain,)
    return (recipient_domain, str(policy_domain))


def _sessions(updates: Sequence[RecipientStatus]) -> list[tuple[str, Remote]]:
    """The sessions of ``updates`` held to a destination's policy, each with
    a domain it is reported to: once per report domain and session, where
    recipients sharing a session (one server, address and result) count
    once."""
    sessions: dict[tuple[str, str | None, str, str, str | None], Remote] = {}
    for r in updates:
        remote = r.remote
        if remote is None or remote.tls_policy_domain is None:
            continue
        for report_domain in report_domains(r.address, remote):
            key = (
                report_domain,
                remote.tls_policy_domain,
                remote.host,
                remote.address,
                remote.tls_result,
            )
            sessions[key] = remote
    return [(key[0], remote) for key, remote in sessions.items()]


def _sts_policy(policy_domain: str, strings: tuple[str, ...]) -> ReportedPolicy:
    """The MTA-STS policy of ``policy_domain`` whose lines are ``strings``,
    its MX patterns read from them; without them (a status recorded before
    they were kept) the entry names the policy's type and domain alone."""
    try:
        policy = parse_policy("\n".join(strings))
    except PolicyError:
        return ReportedPolicy("sts", policy_domain, strings)
    return ReportedPolicy.sts(policy_domain, policy)


def _valid(rows: list[TlsSessionCount]) -> list[TlsSessionCount]:
    """``rows`` but those a tally refuses (a report domain it cannot keep),
    which are logged and dropped rather than kept for ever."""
    try:
        check_session_counts(rows)
    except ValueError:
        good = []
        for row in rows:
            try:
                check_session_counts([row])
            except ValueError as exc:
                log.warning("TLS sessions not counted: %s", exc)
                continue
            good.append(row)
        return good
    return rows


def _by_domain(
    rows: Sequence[TlsSessionCount],
) -> dict[str, tuple[set[Day], list[SessionResult]]]:
    """The days and sessions of ``rows`` per report domain; a row that is not
    a count this module wrote is logged and passed over."""
    found: dict[str, tuple[set[Day], list[SessionResult]]] = {}
    for row in rows:
        try:
            session = counted_session(row.policy, row.failure)
            day = datetime.date.fromisoformat(row.day)
        except ValueError as exc:
            log.warning(
                "a TLS report count of %s is unreadable: %s", row.report_domain, exc
            )
            continue
        days, results = found.setdefault(row.report_domain, (set(), []))
        days.add(day)
        results.extend(itertools.repeat(session, row.count))
    return found


def _day(now: float) -> Day:
    return datetime.datetime.fromtimestamp(now, datetime.UTC).date()


def _result(remote: Remote) -> SessionResult:
    policy_type = remote.tls_policy
    policy_domain = str(remote.tls_policy_domain)
    if policy_type == "sts":
        policy = _sts_policy(policy_domain, remote.tls_policy_strings)
    elif policy_type == "tlsa":
        strings = remote.tls_policy_strings
        policy = ReportedPolicy("tlsa", policy_domain, strings, (remote.host,))
    else:
        policy = ReportedPolicy.none_found(policy_domain)
    # A session without a TLS result went in plaintext: STARTTLS was missing.
    outcome = remote.tls_result or "starttls-not-supported"
    failed = outcome != "success"
    result_type = None
    if failed:
        result_type = outcome if outcome in RESULT_TYPES else "validation-failure"
    return SessionResult(
        policy,
        result_type,
        receiving_mx_hostname=remote.host,
        receiving_ip=remote.address,
        failure_reason_code=remote.tls_failure or "" if failed else "",
    )
