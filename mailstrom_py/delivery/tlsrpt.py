"""SMTP TLS reporting (RFC 8460): per-session results and the JSON report.

Delivery records one :class:`SessionResult` per connection attempt toward a
domain with a TLS policy (MTA-STS, DANE) or without one; a
:class:`TlsReportCollector` gathers them, and :func:`build_report` turns them
into the aggregate report of RFC 8460 §4: one entry per policy, with success
and failure counts and the failures grouped by what went wrong. Each policy
entry names its policy domain (:attr:`ReportedPolicy.policy_domain`), the
domain that published the policy; the domain the report is sent to, the
report domain, is chosen by the caller and may be another (a DANE session
is reported to its recipient domain as well as to its TLSA base domain, see
:mod:`mailstrom_py.worker.tls_reports`). Sending the report (to the report
domain's ``_smtp._tls`` ``rua``) is not done here.
"""

from __future__ import annotations

import datetime
import json
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from .routing.dane import TlsaRecord
    from .routing.mta_sts import StsPolicy

__all__ = [
    "RESULT_TYPES",
    "ReportedPolicy",
    "SessionResult",
    "TlsReportCollector",
    "build_report",
    "report_json",
]

#: The result types of RFC 8460 §4.3: negotiation failures (§4.3.1), then
#: DANE (§4.3.2.1) and MTA-STS (§4.3.2.2) policy failures.
RESULT_TYPES = frozenset(
    {
        "starttls-not-supported",
        "certificate-host-mismatch",
        "certificate-expired",
        "certificate-not-trusted",
        "validation-failure",
        "tlsa-invalid",
        "dnssec-invalid",
        "dane-required",
        "sts-policy-fetch-error",
        "sts-policy-invalid",
        "sts-webpki-invalid",
    }
)


@dataclass(frozen=True)
class ReportedPolicy:
    """The policy a session was held to (RFC 8460 §4.4 "policy").

    Attributes:
        policy_type: ``sts``, ``tlsa`` or ``no-policy-found``.
        policy_domain: the policy domain (RFC 8460 §3), written as the
            entry's ``policy-domain``: the recipient domain of an MTA-STS
            policy or of none, the TLSA base domain of TLSA records (the MX
            host name, or its CNAME-expanded name where the records were
            found, RFC 7672 §2.2.2). It need not be the domain the report
            goes to (the report domain, see :func:`.tlsrpt_mail.report_email`).
        strings: the policy: the lines of an MTA-STS policy, or the TLSA
            records in presentation form (RFC 8460 §4.4).
        mx_hosts: the MX patterns of an MTA-STS policy, or the MX host name
            of TLSA records.
    """

    policy_type: Literal["sts", "tlsa", "no-policy-found"]
    policy_domain: str
    strings: tuple[str, ...] = ()
    mx_hosts: tuple[str, ...] = ()

    @classmethod
    def sts(cls, policy_domain: str, policy: StsPolicy) -> ReportedPolicy:
        """An MTA-STS policy of ``policy_domain``: its lines as fetched (or,
        for a policy built rather than fetched, as it would be served) and
        its MX patterns."""
        return cls("sts", policy_domain, policy.served_lines, policy.mx)

    @classmethod
    def tlsa(
        cls, base_domain: str, mx_host: str, records: Iterable[TlsaRecord]
    ) -> ReportedPolicy:
        """The TLSA records of MX host ``mx_host``, found at ``base_domain``,
        its TLSA base domain, which is their policy domain."""
        return cls("tlsa", base_domain, tuple(str(r) for r in records), (mx_host,))

    @classmethod
    def none_found(cls, policy_domain: str) -> ReportedPolicy:
        """``policy_domain`` (the recipient domain) has no TLS policy."""
        return cls("no-policy-found", policy_domain)

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "policy-type": self.policy_type,
            "policy-domain": self.policy_domain,
        }
        if self.strings:
            data["policy-string"] = list(self.strings)
        if self.mx_hosts:
            data["mx-host"] = list(self.mx_hosts)
        return data


@dataclass(frozen=True)
class SessionResult:
    """The TLS outcome of one connection attempt (RFC 8460 §4.4).

    Attributes:
        policy: the policy the session was held to.
        result_type: None for a successful session; for a failure, one of
            :data:`RESULT_TYPES`.
        receiving_mx_hostname: the MX host dialled.
        receiving_ip: the address dialled.
        sending_mta_ip: the address the session came from.
        receiving_mx_helo: the name the server greeted with.
        failure_reason_code: a free-form reason, e.g. the TLS alert.

    Raises:
        ValueError: an unknown result type.
    """

    policy: ReportedPolicy
    result_type: str | None = None
    receiving_mx_hostname: str = ""
    receiving_ip: str = ""
    sending_mta_ip: str = ""
    receiving_mx_helo: str = ""
    failure_reason_code: str = ""

    def __post_init__(self) -> None:
        if self.result_type is not None and self.result_type not in RESULT_TYPES:
            raise ValueError(f"unknown RFC 8460 result type {self.result_type!r}")

    @property
    def succeeded(self) -> bool:
        return self.result_type is None

    def failure_key(self) -> tuple[str, ...]:
        """What failures are grouped by in a report's failure details."""
        return (
            str(self.result_type),
            self.sending_mta_ip,
            self.receiving_mx_hostname,
            self.receiving_mx_helo,
            self.receiving_ip,
            self.failure_reason_code,
        )


_DETAIL_FIELDS = (
    "result-type",
    "sending-mta-ip",
    "receiving-mx-hostname",
    "receiving-mx-helo",
    "receiving-ip",
    "failure-reason-code",
)


def build_report(
    results: Iterable[SessionResult],
    *,
    organization_name: str,
    contact_info: str,
    report_id: str,
    start: datetime.datetime,
    end: datetime.datetime,
) -> dict[str, Any]:
    """The aggregate report of ``results`` (RFC 8460 §4.4), as JSON data.

    ``start`` and ``end`` (aware datetimes) bound the period reported; they
    are written in UTC, RFC 3339. Policies appear in the order first seen;
    empty fields of a failure are left out.
    """
    successes: Counter[ReportedPolicy] = Counter()
    failures: dict[ReportedPolicy, Counter[tuple[str, ...]]] = {}
    for result in results:
        groups = failures.setdefault(result.policy, Counter())
        if result.succeeded:
            successes[result.policy] += 1
        else:
            groups[result.failure_key()] += 1
    policies = []
    for policy, groups in failures.items():
        entry: dict[str, Any] = {
            "policy": policy.as_json(),
            "summary": {
                "total-successful-session-count": successes[policy],
                "total-failure-session-count": sum(groups.values()),
            },
        }
        if groups:
            entry["failure-details"] = [
                _detail(key, count) for key, count in groups.items()
            ]
        policies.append(entry)
    return {
        "organization-name": organization_name,
        "date-range": {
            "start-datetime": _timestamp(start),
            "end-datetime": _timestamp(end),
        },
        "contact-info": contact_info,
        "report-id": report_id,
        "policies": policies,
    }


def report_json(results: Iterable[SessionResult], **fields: Any) -> str:
    """:func:`build_report` serialised (UTF-8 JSON text, RFC 8460 §4.4)."""
    return json.dumps(build_report(results, **fields), ensure_ascii=False)


class TlsReportCollector:
    """Gathers session results from delivery threads until a report takes them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._results: list[SessionResult] = []

    def record(self, result: SessionResult) -> None:
        """Add one session's result."""
        with self._lock:
            self._results.append(result)

    def take(self, policy_domain: str | None = None) -> list[SessionResult]:
        """Remove and return the results gathered (only those of policies of
        ``policy_domain`` if given), oldest first."""
        taken: list[SessionResult] = []
        kept: list[SessionResult] = []
        with self._lock:
            for result in self._results:
                wanted = (
                    policy_domain is None
                    or result.policy.policy_domain == policy_domain
                )
                (taken if wanted else kept).append(result)
            self._results = kept
        return taken


def _detail(key: tuple[str, ...], count: int) -> dict[str, Any]:
    detail: dict[str, Any] = {
        name: value for name, value in zip(_DETAIL_FIELDS, key, strict=True) if value
    }
    detail["failed-session-count"] = count
    return detail


def _timestamp(moment: datetime.datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("report times must be timezone-aware")
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
