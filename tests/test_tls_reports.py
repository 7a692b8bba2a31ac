"""SMTP TLS reports (RFC 8460) sent through the mailer's own queue.

Direct delivery on loopback: d.test publishes ``_smtp._tls.d.test`` with a
``mailto:`` address at reports.test, whose exchanger is another aiosmtpd
server. Time is driven with ``run_once(now)``.
"""

from __future__ import annotations

import email
import email.policy
import gzip
import json
from email.message import EmailMessage
from typing import Any

import pytest
import trustme
from support.dane import ee_record, serving
from support.https import HttpsServerFactory, Reply
from support.mxnet import NOW, MxNet, message
from support.tls import client_context, self_signed_server_context, server_context

from mailstrom_py import DeliveryResult, Mailstrom, Remote
from mailstrom_py.delivery.routing.tlsrpt_record import report_addresses
from mailstrom_py.worker.tls_reports import report_domains

DAY = 86_400.0
D = DeliveryResult.DELIVERED


def mailer(net: MxNet, **options: object) -> Mailstrom:
    mailer = Mailstrom(net.config(**options), clock=lambda: NOW)
    return mailer


def deliver(mailer: Mailstrom, to: str, now: float) -> None:
    message_id = mailer.send_email(message(to))
    mailer.run_once(now)
    [r] = mailer.query_status(message_id).recipients
    assert r.result is D, r


def dane_net(net: MxNet, leaf: trustme.LeafCert) -> None:
    """d.test's MX mx1.d.test, an alias of mail.host.test (127.0.0.2), whose
    DANE-EE record matches ``leaf``; d.test and host.test signed; the report
    addresses' exchanger at 127.0.0.4."""
    net.zone.add("d.test", "MX", "10 mx1.d.test")
    net.zone.add("mx1.d.test", "CNAME", "mail.host.test")
    net.zone.add("mail.host.test", "A", "127.0.0.2")
    net.zone.add(f"_{net.port}._tcp.mail.host.test", "TLSA", ee_record(leaf))
    net.zone.sign("d.test").sign("host.test")
    net.mx("reports.test", (10, "mx.reports.test", "127.0.0.4"))


def parsed(data: bytes) -> EmailMessage:
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def a_day_and_the_next(sender: Mailstrom) -> None:
    """Deliver to a@d.test on the first day and to b@d.test on the next, whose
    attempt queues the first day's reports, which then go out; stop."""
    try:
        deliver(sender, "a@d.test", NOW)
        deliver(sender, "b@d.test", NOW + DAY)
        sender.run_once(NOW + DAY)
    finally:
        sender.stop(10)


def policies_of(report: EmailMessage) -> list[dict[str, Any]]:
    """The policy entries of ``report``'s gzip'd JSON attachment."""
    [attachment] = [p for p in report.iter_parts() if p.get_filename()]
    policies: list[dict[str, Any]] = json.loads(
        gzip.decompress(attachment.get_content())
    )["policies"]
    return policies


class TestReports:
    def test_a_day_of_sessions_is_reported_once_the_next_day(
        self, net: MxNet, ca: trustme.CA
    ) -> None:
        """Sessions toward d.test on one day go out as one gzip'd JSON report
        (multipart/report; report-type=tlsrpt) to its rua, queued by the first
        attempt of the next day and delivered like any message; no second
        report goes that day."""
        net.mx("d.test", (10, "mx1.d.test", "127.0.0.2"))
        net.mx("reports.test", (10, "mx.reports.test", "127.0.0.4"))
        net.zone.add(
            "_smtp._tls.d.test", "TXT", "v=TLSRPTv1; rua=mailto:tlsrpt@reports.test"
        )
        net.smtp("127.0.0.2", starttls_context=server_context(ca, "mx1.d.test"))
        reports = net.smtp("127.0.0.4")
        sender = mailer(net, tls_reports=True)
        try:
            deliver(sender, "a@d.test", NOW)
            deliver(sender, "b@d.test", NOW + 60)
            assert reports.handler.messages == []
            deliver(sender, "c@d.test", NOW + DAY)
            sender.run_once(NOW + DAY)  # the report queued by c's attempt
            deliver(sender, "d@d.test", NOW + DAY + 60)
            sender.run_once(NOW + DAY + 60)
        finally:
            sender.stop(10)
        [received] = reports.handler.messages
        assert received.rcpt_tos == ("tlsrpt@reports.test",)
        report = parsed(received.data)
        assert report.get_content_type() == "multipart/report"
        assert report.get_param("report-type") == "tlsrpt"
        assert report["TLS-Report-Domain"] == "d.test"
        assert report["TLS-Report-Submitter"] == "client.test"
        assert received.mail_from == "postmaster@client.test"
        [attachment] = [
            part
            for part in report.iter_parts()
            if part.get_content_type() == "application/tlsrpt+gzip"
        ]
        filename = attachment.get_filename() or ""
        assert filename.startswith("client.test!d.test!") and filename.endswith(
            ".json.gz"
        )
        data = json.loads(gzip.decompress(attachment.get_content()))
        assert data["date-range"] == {
            "start-datetime": "2023-11-14T00:00:00Z",
            "end-datetime": "2023-11-14T23:59:59Z",
        }
        [entry] = data["policies"]
        assert entry["policy"] == {
            "policy-type": "no-policy-found",
            "policy-domain": "d.test",
        }
        assert entry["summary"] == {
            "total-successful-session-count": 2,
            "total-failure-session-count": 0,
        }

    def test_failures_are_reported_with_their_result_type(
        self, net: MxNet, ca: trustme.CA
    ) -> None:
        """A session that failed under a policy (verify_tls here, with a
        self-signed certificate) is counted as a failure with its RFC 8460
        result type and the exchanger it concerned."""
        net.mx("d.test", (10, "mx1.d.test", "127.0.0.2"))
        net.mx("reports.test", (10, "mx.reports.test", "127.0.0.4"))
        net.zone.add(
            "_smtp._tls.d.test", "TXT", "v=TLSRPTv1; rua=mailto:tlsrpt@reports.test"
        )
        net.smtp("127.0.0.2", starttls_context=self_signed_server_context("mx1.d.test"))
        reports = net.smtp(
            "127.0.0.4", starttls_context=server_context(ca, "mx.reports.test")
        )
        sender = mailer(
            net, tls_reports=True, verify_tls=True, ssl_context=client_context(ca)
        )
        try:
            sender.send_email(message("a@d.test"))
            sender.run_once(NOW)
            sender.send_email(message("b@reports.test"))
            sender.run_once(NOW + DAY)
            sender.run_once(NOW + DAY)
        finally:
            sender.stop(10)
        reported = [
            m
            for m in reports.handler.messages
            if m.rcpt_tos == ("tlsrpt@reports.test",)
        ]
        [received] = reported
        report = parsed(received.data)
        [entry] = policies_of(report)
        assert entry["summary"]["total-failure-session-count"] == 1
        [detail] = entry["failure-details"]
        assert detail["result-type"] == "certificate-not-trusted"
        assert detail["receiving-mx-hostname"] == "mx1.d.test"
        assert detail["receiving-ip"] == "127.0.0.2"

    def test_a_dane_session_is_reported_to_its_tlsa_base_domain(
        self, net: MxNet, ca: trustme.CA
    ) -> None:
        """d.test's MX mx1.d.test is an alias of mail.host.test, whose TLSA
        record authenticates the exchanger (DNSSEC throughout), and both
        d.test and mail.host.test publish _smtp._tls records. The rule: a
        DANE session is reported to its recipient domain, as Postfix does
        (the next-hop domain's record), and to its TLSA base domain, the
        policy domain of RFC 8460 §3 ("distributed via DNS from the Policy
        Domain's zone"), when that is another domain: receivers follow both
        readings. So two reports go out, one to each rua, each named for its
        report domain (TLS-Report-Domain, Subject, file name, report-id),
        and both hold the same policy entry: type tlsa, policy domain
        mail.host.test, the record as its policy string."""
        leaf = ca.issue_cert("mail.host.test")
        dane_net(net, leaf)
        record = ee_record(leaf)
        for domain, to in (("d.test", "domain"), ("mail.host.test", "host")):
            net.zone.add(
                f"_smtp._tls.{domain}",
                "TXT",
                f"v=TLSRPTv1; rua=mailto:{to}@reports.test",
            )
        net.smtp("127.0.0.2", starttls_context=serving(leaf))
        reports = net.smtp("127.0.0.4")
        sender = mailer(net, tls_reports=True, dnssec=True)
        a_day_and_the_next(sender)
        by_rcpt = {m.rcpt_tos: parsed(m.data) for m in reports.handler.messages}
        assert sorted(by_rcpt) == [("domain@reports.test",), ("host@reports.test",)]
        for to, report_domain in (("domain", "d.test"), ("host", "mail.host.test")):
            report = by_rcpt[(f"{to}@reports.test",)]
            assert report["TLS-Report-Domain"] == report_domain
            assert f"Report Domain: {report_domain} " in report["Subject"]
            [attachment] = [p for p in report.iter_parts() if p.get_filename()]
            filename = attachment.get_filename() or ""
            assert filename.startswith(f"client.test!{report_domain}!")
            data = json.loads(gzip.decompress(attachment.get_content()))
            assert data["report-id"] == f"20231114-20231114.{report_domain}@client.test"
            [entry] = data["policies"]
            assert entry["policy"] == {
                "policy-type": "tlsa",
                "policy-domain": "mail.host.test",
                "policy-string": [record],
                "mx-host": ["mx1.d.test"],
            }
            assert entry["summary"] == {
                "total-successful-session-count": 1,
                "total-failure-session-count": 0,
            }

    def test_a_tlsa_base_domain_without_a_record_leaves_the_recipient_domains(
        self, net: MxNet, ca: trustme.CA
    ) -> None:
        """Only d.test publishes _smtp._tls: its report, with the tlsa entry
        of policy domain mail.host.test, is the one report sent."""
        leaf = ca.issue_cert("mail.host.test")
        dane_net(net, leaf)
        net.zone.add(
            "_smtp._tls.d.test", "TXT", "v=TLSRPTv1; rua=mailto:domain@reports.test"
        )
        net.smtp("127.0.0.2", starttls_context=serving(leaf))
        reports = net.smtp("127.0.0.4")
        sender = mailer(net, tls_reports=True, dnssec=True)
        a_day_and_the_next(sender)
        [received] = reports.handler.messages
        assert received.rcpt_tos == ("domain@reports.test",)
        report = parsed(received.data)
        assert report["TLS-Report-Domain"] == "d.test"
        [entry] = policies_of(report)
        assert entry["policy"]["policy-domain"] == "mail.host.test"
        assert ("_smtp._tls.mail.host.test", "TXT") in net.dns.queries

    def test_unusable_tlsa_records_are_listed_in_the_report(
        self, net: MxNet, ca: trustme.CA
    ) -> None:
        """mx1.d.test's authenticated TLSA records are of PKIX usages only,
        none usable (RFC 7672 §3.1.3): the session goes over unauthenticated
        TLS under DANE, and d.test's report lists both records as the tlsa
        entry's policy strings, as Postfix lists every record it got."""
        leaf = ca.issue_cert("mx1.d.test")
        records = ["1" + ee_record(leaf)[1:], "0 0 1 " + "cd" * 32]
        net.mx("d.test", (10, "mx1.d.test", "127.0.0.2"))
        for record in records:
            net.zone.add(f"_{net.port}._tcp.mx1.d.test", "TLSA", record)
        net.zone.sign("d.test")
        net.mx("reports.test", (10, "mx.reports.test", "127.0.0.4"))
        net.zone.add(
            "_smtp._tls.d.test", "TXT", "v=TLSRPTv1; rua=mailto:tlsrpt@reports.test"
        )
        net.smtp("127.0.0.2", starttls_context=serving(leaf))
        reports = net.smtp("127.0.0.4")
        sender = mailer(net, tls_reports=True, dnssec=True)
        a_day_and_the_next(sender)
        [received] = reports.handler.messages
        report = parsed(received.data)
        [entry] = policies_of(report)
        policy = entry["policy"]
        assert (policy["policy-type"], policy["policy-domain"]) == (
            "tlsa",
            "mx1.d.test",
        )
        assert sorted(policy["policy-string"]) == sorted(records)
        assert policy["mx-host"] == ["mx1.d.test"]
        assert entry["summary"]["total-successful-session-count"] == 1

    def test_an_mta_sts_session_is_reported_with_its_policy_as_fetched(
        self, net: MxNet, ca: trustme.CA, https_server: HttpsServerFactory
    ) -> None:
        """d.test serves an MTA-STS policy over HTTPS (enforce, CRLF line
        ends, an unknown field, an mx pattern in capitals) and mx1.d.test
        verifies under it. The report to d.test's rua has an sts entry whose
        policy strings are the policy's lines as fetched and whose mx-host
        are its mx patterns (RFC 8460 §4.4)."""
        net.zone.add("mta-sts.d.test", "A", "127.0.0.9")
        net.zone.add("_mta-sts.d.test", "TXT", "v=STSv1; id=1")
        body = (
            "version: STSv1\r\nmode: enforce\r\nmx: MX1.d.test\r\n"
            "mx: *.backup.d.test\r\nmax_age: 86400\r\nowner: postmaster\r\n"
        )
        https = https_server(
            server_context(ca, "mta-sts.d.test"), host="127.0.0.9", port=443
        )
        https.replies["/.well-known/mta-sts.txt"] = Reply(body=body.encode())
        net.mx("d.test", (10, "mx1.d.test", "127.0.0.2"))
        net.mx("reports.test", (10, "mx.reports.test", "127.0.0.4"))
        net.zone.add(
            "_smtp._tls.d.test", "TXT", "v=TLSRPTv1; rua=mailto:tlsrpt@reports.test"
        )
        net.smtp("127.0.0.2", starttls_context=server_context(ca, "mx1.d.test"))
        reports = net.smtp("127.0.0.4")
        sender = mailer(net, tls_reports=True, mta_sts_context=client_context(ca))
        a_day_and_the_next(sender)
        [received] = reports.handler.messages
        report = parsed(received.data)
        [entry] = policies_of(report)
        assert entry["policy"] == {
            "policy-type": "sts",
            "policy-domain": "d.test",
            "policy-string": [
                "version: STSv1",
                "mode: enforce",
                "mx: MX1.d.test",
                "mx: *.backup.d.test",
                "max_age: 86400",
                "owner: postmaster",
            ],
            "mx-host": ["mx1.d.test", "*.backup.d.test"],
        }
        assert entry["summary"] == {
            "total-successful-session-count": 1,
            "total-failure-session-count": 0,
        }

    def test_reports_are_off_by_default(self, net: MxNet, ca: trustme.CA) -> None:
        """Without ``tls_reports`` nothing is gathered or sent."""
        net.mx("d.test", (10, "mx1.d.test", "127.0.0.2"))
        net.mx("reports.test", (10, "mx.reports.test", "127.0.0.4"))
        net.zone.add(
            "_smtp._tls.d.test", "TXT", "v=TLSRPTv1; rua=mailto:tlsrpt@reports.test"
        )
        net.smtp("127.0.0.2", starttls_context=server_context(ca, "mx1.d.test"))
        reports = net.smtp("127.0.0.4")
        sender = mailer(net)
        a_day_and_the_next(sender)
        assert reports.handler.messages == []
        assert ("_smtp._tls.d.test", "TXT") not in net.dns.queries


class TestReportDomains:
    """Where a session is reported (``report_domains``): the recipient
    domain, and a DANE session's TLSA base domain too, once each."""

    @pytest.mark.parametrize(
        ("policy", "policy_domain", "expected"),
        [
            ("tlsa", "mail.host.test", ("d.test", "mail.host.test")),
            ("tlsa", "d.test", ("d.test",)),
            ("sts", "d.test", ("d.test",)),
            ("no-policy-found", "d.test", ("d.test",)),
        ],
        ids=["dane-elsewhere", "dane-same-domain", "sts", "no-policy"],
    )
    def test_the_domains_a_session_is_reported_to(
        self, policy: str, policy_domain: str, expected: tuple[str, ...]
    ) -> None:
        """A DANE session whose TLSA base domain is another domain is
        reported to both; one whose base domain is the recipient domain,
        and an MTA-STS or no-policy session, to the recipient domain alone;
        the recipient domain is folded to lower case."""
        remote = Remote(
            "mx1.d.test",
            "192.0.2.1",
            25,
            tls_policy=policy,
            tls_policy_domain=policy_domain,
        )
        assert report_domains("a@D.Test", remote) == expected

    def test_an_address_literal_has_no_report_domain(self) -> None:
        """user@[192.0.2.1] has no zone that could publish _smtp._tls."""
        remote = Remote(
            "192.0.2.1",
            "192.0.2.1",
            25,
            tls_policy="no-policy-found",
            tls_policy_domain="[192.0.2.1]",
        )
        assert report_domains("a@[192.0.2.1]", remote) == ()


def test_the_report_record_gives_its_mailto_addresses() -> None:
    """Only mailto: URIs of the one v=TLSRPTv1 record count; two records, or
    none, mean no report."""
    assert report_addresses(
        ["v=TLSRPTv1; rua=mailto:a@r.test,https://r.test/x,mailto:b%40x@r.test"]
    ) == ("a@r.test", "b@x@r.test")
    assert report_addresses(["v=spf1 -all"]) == ()
    assert report_addresses(["v=TLSRPTv1; rua=mailto:a@r.test"] * 2) == ()
