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

After a day ends, the next recorded attempt queues one report per report
domain that publishes ``_smtp._tls`` with a ``mailto:`` address, covering
every finished day gathered for it, so that a domain gets at most one
report a day. Results are kept in memory: a restart loses a day's count,
never sends a report twice over.

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
from ..delivery.routing.mta_sts import PolicyError, parse_policy
from ..delivery.tlsrpt import RESULT_TYPES, ReportedPolicy, SessionResult
from ..delivery.tlsrpt_mail import report_email
from ..message import PreparedEmail
from ..message.preparer import Preparer
from ..status import MessageStatus, RecipientStatus, Remote

__all__ = ["MAX_DOMAINS", "TlsReporter", "report_domains"]

log = logging.getLogger(__name__)

#: The most report domains gathered per day; sessions beyond are not counted.
MAX_DOMAINS = 10_000

Day = datetime.date


class TlsReporter:
    """Gathers TLS session results per report domain and day, and queues the
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
        reports due now: one per report domain with finished days gathered."""
        today = _day(now)
        due = self._gather(updates, today)
        found: list[PreparedEmail] = []
        for report_domain, days in due.items():
            report = self._report(report_domain, days, now)
            if report is not None:
                found.append(report)
        return found

    def _gather(
        self, updates: Sequence[RecipientStatus], today: Day
    ) -> dict[str, dict[Day, list[SessionResult]]]:
        with self._lock:
            for report_domain, remote in _sessions(updates):
                day = (report_domain, today)
                if day not in self._days and len(self._days) >= MAX_DOMAINS:
                    continue
                self._days.setdefault(day, []).append(_result(remote))
            due: dict[str, dict[Day, list[SessionResult]]] = {}
            for ended in [key for key in self._days if key[1] < today]:
                due.setdefault(ended[0], {})[ended[1]] = self._days.pop(ended)
        return due

    def _report(
        self, report_domain: str, days: dict[Day, list[SessionResult]], now: float
    ) -> PreparedEmail | None:
        try:
            to = self._addresses(report_domain)
        except DnsTrouble as exc:
            log.warning("no TLS report for %s: %s", report_domain, exc)
            return None
        if not to:
            return None
        submitter = self._preparer.helo_name
        start = datetime.datetime.combine(min(days), datetime.time(), datetime.UTC)
        end = datetime.datetime.combine(
            max(days), datetime.time(23, 59, 59), datetime.UTC
        )
        report_id = f"{start:%Y%m%d}-{end:%Y%m%d}.{report_domain}@{submitter}"
        results = [result for day in sorted(days) for result in days[day]]
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
