"""SMTP TLS reports (RFC 8460 §4): session results gathered into the JSON report.

These are pure values: no network is involved in building a report.
"""

from __future__ import annotations

import datetime
import json
import threading

import pytest

from mailstrom_py.delivery.routing.dane import TlsaRecord
from mailstrom_py.delivery.routing.mta_sts import parse_policy
from mailstrom_py.delivery.tlsrpt import (
    ReportedPolicy,
    SessionResult,
    TlsReportCollector,
    build_report,
    report_json,
)

START = datetime.datetime(2026, 3, 1, tzinfo=datetime.UTC)
END = datetime.datetime(2026, 3, 1, 23, 59, 59, tzinfo=datetime.UTC)
FIELDS = {
    "organization-name": "Example Sender",
    "contact-info": "tls-reports@sender.test",
    "report-id": "2026-03-01.d.test",
}
STS = ReportedPolicy.sts(
    "d.test",
    parse_policy(
        "version: STSv1\nmode: enforce\nmx: mx.d.test\nmx: *.d.test\nmax_age: 86400\n"
    ),
)
TLSA = ReportedPolicy.tlsa(
    "mail.host.test", "mx.e.test", [TlsaRecord(3, 1, 1, b"\xab" * 32)]
)


def report(results: list[SessionResult]) -> dict[str, object]:
    return build_report(
        results,
        organization_name=FIELDS["organization-name"],
        contact_info=FIELDS["contact-info"],
        report_id=FIELDS["report-id"],
        start=START,
        end=END,
    )


def test_a_report_counts_sessions_per_policy_and_groups_failures() -> None:
    """Successes and failures are summed per policy; equal failures share one detail."""
    bad = SessionResult(
        STS,
        "sts-webpki-invalid",
        receiving_mx_hostname="mx.d.test",
        receiving_ip="192.0.2.1",
    )
    results = [SessionResult(STS), bad, SessionResult(STS), bad, SessionResult(TLSA)]
    data = report(results)
    assert data == {
        "organization-name": "Example Sender",
        "date-range": {
            "start-datetime": "2026-03-01T00:00:00Z",
            "end-datetime": "2026-03-01T23:59:59Z",
        },
        "contact-info": "tls-reports@sender.test",
        "report-id": "2026-03-01.d.test",
        "policies": [
            {
                "policy": {
                    "policy-type": "sts",
                    "policy-domain": "d.test",
                    "policy-string": [
                        "version: STSv1",
                        "mode: enforce",
                        "mx: mx.d.test",
                        "mx: *.d.test",
                        "max_age: 86400",
                    ],
                    "mx-host": ["mx.d.test", "*.d.test"],
                },
                "summary": {
                    "total-successful-session-count": 2,
                    "total-failure-session-count": 2,
                },
                "failure-details": [
                    {
                        "result-type": "sts-webpki-invalid",
                        "receiving-mx-hostname": "mx.d.test",
                        "receiving-ip": "192.0.2.1",
                        "failed-session-count": 2,
                    }
                ],
            },
            {
                "policy": {
                    "policy-type": "tlsa",
                    "policy-domain": "mail.host.test",
                    "policy-string": ["3 1 1 " + "ab" * 32],
                    "mx-host": ["mx.e.test"],
                },
                "summary": {
                    "total-successful-session-count": 1,
                    "total-failure-session-count": 0,
                },
            },
        ],
    }


def test_different_failures_get_their_own_details() -> None:
    """Failures differing in result type or host are listed apart, in order seen."""
    none = ReportedPolicy.none_found("f.test")
    results = [
        SessionResult(none, "starttls-not-supported", receiving_mx_hostname="a.f.test"),
        SessionResult(none, "starttls-not-supported", receiving_mx_hostname="b.f.test"),
        SessionResult(none, "certificate-expired", receiving_mx_hostname="a.f.test"),
    ]
    [entry] = report(results)["policies"]  # type: ignore[misc]
    assert entry["policy"] == {
        "policy-type": "no-policy-found",
        "policy-domain": "f.test",
    }
    assert [
        (d["result-type"], d["receiving-mx-hostname"]) for d in entry["failure-details"]
    ] == [
        ("starttls-not-supported", "a.f.test"),
        ("starttls-not-supported", "b.f.test"),
        ("certificate-expired", "a.f.test"),
    ]


def test_the_json_text_is_the_report() -> None:
    """report_json serialises build_report's data."""
    results = [SessionResult(TLSA, "tlsa-invalid", failure_reason_code="no match")]
    text = report_json(
        results,
        organization_name="Example Sender",
        contact_info="c@sender.test",
        report_id="r1",
        start=START,
        end=END,
    )
    [entry] = json.loads(text)["policies"]
    assert entry["failure-details"] == [
        {
            "result-type": "tlsa-invalid",
            "failure-reason-code": "no match",
            "failed-session-count": 1,
        }
    ]


def test_times_are_written_in_utc_and_must_be_aware() -> None:
    """A start given in another zone is written in UTC; a naive time is refused."""
    paris = datetime.timezone(datetime.timedelta(hours=1))
    data = build_report(
        [],
        organization_name="o",
        contact_info="c",
        report_id="r",
        start=datetime.datetime(2026, 3, 1, 1, 0, tzinfo=paris),
        end=END,
    )
    assert data["date-range"]["start-datetime"] == "2026-03-01T00:00:00Z"
    with pytest.raises(ValueError, match="timezone-aware"):
        build_report(
            [],
            organization_name="o",
            contact_info="c",
            report_id="r",
            start=datetime.datetime(2026, 3, 1),
            end=END,
        )


def test_an_unknown_result_type_is_refused() -> None:
    """Result types are those of RFC 8460 §4.3; a typo raises ValueError."""
    with pytest.raises(ValueError, match="unknown RFC 8460 result type"):
        SessionResult(STS, "sts-policy-missing")


def test_the_collector_gathers_from_many_threads_and_hands_results_over_once() -> None:
    """Results recorded from eight threads are all taken, by domain or all at once."""
    collector = TlsReportCollector()

    def record(n: int) -> None:
        for _ in range(100):
            collector.record(SessionResult(STS if n % 2 else TLSA))

    threads = [threading.Thread(target=record, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(collector.take("d.test")) == 400
    assert collector.take("d.test") == []
    rest = collector.take()
    assert len(rest) == 400
    assert {result.policy.policy_domain for result in rest} == {"mail.host.test"}
    assert collector.take() == []
