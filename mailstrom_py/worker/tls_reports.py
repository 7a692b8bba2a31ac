"""SMTP TLS reporting (RFC 8460) from the outcomes the worker records.

Every recorded recipient whose last session was held to a destination's
policy (``Remote.tls_policy``, "no-policy-found" included) counts as one
session of that policy's domain on that UTC day: the recipient domain, or
under DANE the exchanger's TLSA base domain (RFC 8460 §3), which is then
the domain whose ``_smtp._tls`` record gets the report. Recipients of one
attempt that shared a session count once.

After a day ends, the next recorded attempt queues one report per domain
that publishes ``_smtp._tls`` with a ``mailto:`` address, covering every
finished day gathered for it, so that a domain gets at most one report a
day. Results are kept in memory: a restart loses a day's count, never
sends a report twice over.

Only the last session of each recipient is known here: a failed session
before a successful one (an MTA-STS testing policy, another exchanger)
counts as the success.
"""

from __future__ import annotations

import datetime
import logging
import threading
from collections.abc import Callable, Sequence

from ..delivery.routing.dnsquery import DnsTrouble
from ..delivery.tlsrpt import RESULT_TYPES, ReportedPolicy, SessionResult
from ..delivery.tlsrpt_mail import report_email
from ..message import PreparedEmail
from ..message.preparer import Preparer
from ..status import MessageStatus, RecipientStatus, Remote

__all__ = ["MAX_DOMAINS", "TlsReporter"]

log = logging.getLogger(__name__)

#: The most policy domains gathered per day; sessions beyond are not counted.
MAX_DOMAINS = 10_000

Day = datetime.date


class TlsReporter:
    """Gathers TLS session results per policy domain and day, and queues the
    reports; a :class:`~mailstrom_py.worker.reporting.Reporter`. Thread-safe.

    Args:
        preparer: prepares (and DKIM-signs) each report as the mailer's own
            messages; its HELO name is the report's submitter.
        addresses: the report addresses of a domain (its ``_smtp._tls``
            record's ``mailto:`` URIs); may raise ``DnsTrouble``.
        sender: the From address and contact of the reports.
    """

    def __init__(
        self,
        preparer: Preparer,
        addresses: Callable[[str], tuple[str, ...]],
        *,
        sender: str,
    ) -> None:
        self._preparer = preparer
        self._addresses = addresses
        self._sender = sender
        self._lock = threading.Lock()
        self._days: dict[tuple[str, Day], list[SessionResult]] = {}

    def reports(
        self,
        email: PreparedEmail,
        before: MessageStatus,
        updates: Sequence[RecipientStatus],
        now: float,
    ) -> list[PreparedEmail]:
        """Count the sessions of ``updates`` on ``now``'s day, and return the
        reports due now: one per domain with finished days gathered."""
        today = _day(now)
        due = self._gather(updates, today)
        found: list[PreparedEmail] = []
        for domain, days in due.items():
            report = self._report(domain, days, now)
            if report is not None:
                found.append(report)
        return found

    def _gather(
        self, updates: Sequence[RecipientStatus], today: Day
    ) -> dict[str, dict[Day, list[SessionResult]]]:
        sessions = {
            (r.remote.host, r.remote.address, r.remote.tls_result): r.remote
            for r in updates
            if r.remote is not None and r.remote.tls_policy_domain is not None
        }
        with self._lock:
            for remote in sessions.values():
                key = (str(remote.tls_policy_domain), today)
                if key not in self._days and len(self._days) >= MAX_DOMAINS:
                    continue
                self._days.setdefault(key, []).append(_result(remote))
            due: dict[str, dict[Day, list[SessionResult]]] = {}
            for key in [k for k in self._days if k[1] < today]:
                due.setdefault(key[0], {})[key[1]] = self._days.pop(key)
        return due

    def _report(
        self, domain: str, days: dict[Day, list[SessionResult]], now: float
    ) -> PreparedEmail | None:
        try:
            to = self._addresses(domain)
        except DnsTrouble as exc:
            log.warning("no TLS report for %s: %s", domain, exc)
            return None
        if not to:
            return None
        submitter = self._preparer.helo_name
        start = datetime.datetime.combine(min(days), datetime.time(), datetime.UTC)
        end = datetime.datetime.combine(
            max(days), datetime.time(23, 59, 59), datetime.UTC
        )
        report_id = f"{start:%Y%m%d}-{end:%Y%m%d}.{domain}@{submitter}"
        results = [result for day in sorted(days) for result in days[day]]
        try:
            message = report_email(
                domain,
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
            log.exception("could not build the TLS report for %s", domain)
            return None


def _day(now: float) -> Day:
    return datetime.datetime.fromtimestamp(now, datetime.UTC).date()


def _result(remote: Remote) -> SessionResult:
    policy_type = remote.tls_policy
    domain = str(remote.tls_policy_domain)
    if policy_type == "sts":
        policy = ReportedPolicy("sts", domain)
    elif policy_type == "tlsa":
        strings = remote.tls_policy_strings
        policy = ReportedPolicy("tlsa", domain, strings, (remote.host,))
    else:
        policy = ReportedPolicy.none_found(domain)
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
