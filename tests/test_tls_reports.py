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

import trustme
from support.dane import ee_record, serving
from support.mxnet import NOW, MxNet, message
from support.tls import client_context, self_signed_server_context, server_context

from mailstrom_py import DeliveryResult, Mailstrom
from mailstrom_py.delivery.routing.tlsrpt_record import report_addresses

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


def parsed(data: bytes) -> EmailMessage:
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


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
        [attachment] = [p for p in report.iter_parts() if p.get_filename()]
        [entry] = json.loads(gzip.decompress(attachment.get_content()))["policies"]
        assert entry["summary"]["total-failure-session-count"] == 1
        [detail] = entry["failure-details"]
        assert detail["result-type"] == "certificate-not-trusted"
        assert detail["receiving-mx-hostname"] == "mx1.d.test"
        assert detail["receiving-ip"] == "127.0.0.2"

    def test_a_dane_session_is_reported_to_its_tlsa_base_domain(
        self, net: MxNet, ca: trustme.CA
    ) -> None:
        """d.test's MX mx1.d.test is an alias of mail.host.test, whose TLSA
        record authenticates the exchanger (DNSSEC throughout). The session
        is held to that record, so its policy domain is the TLSA base domain
        (RFC 8460 §3): the report goes to _smtp._tls.mail.host.test's rua and
        names the record as its policy string; d.test, though it asks for
        reports too, gets none for it."""
        leaf = ca.issue_cert("mail.host.test")
        net.zone.add("d.test", "MX", "10 mx1.d.test")
        net.zone.add("mx1.d.test", "CNAME", "mail.host.test")
        net.zone.add("mail.host.test", "A", "127.0.0.2")
        record = ee_record(leaf)
        net.zone.add(f"_{net.port}._tcp.mail.host.test", "TLSA", record)
        net.zone.sign("d.test").sign("host.test")
        net.mx("reports.test", (10, "mx.reports.test", "127.0.0.4"))
        for domain, to in (("d.test", "domain"), ("mail.host.test", "host")):
            net.zone.add(
                f"_smtp._tls.{domain}",
                "TXT",
                f"v=TLSRPTv1; rua=mailto:{to}@reports.test",
            )
        net.smtp("127.0.0.2", starttls_context=serving(leaf))
        reports = net.smtp("127.0.0.4")
        sender = mailer(net, tls_reports=True, dnssec=True)
        try:
            deliver(sender, "a@d.test", NOW)
            deliver(sender, "b@d.test", NOW + DAY)
            sender.run_once(NOW + DAY)
        finally:
            sender.stop(10)
        [received] = reports.handler.messages
        assert received.rcpt_tos == ("host@reports.test",)
        report = parsed(received.data)
        assert report["TLS-Report-Domain"] == "mail.host.test"
        [attachment] = [p for p in report.iter_parts() if p.get_filename()]
        [entry] = json.loads(gzip.decompress(attachment.get_content()))["policies"]
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
        try:
            deliver(sender, "a@d.test", NOW)
            deliver(sender, "b@d.test", NOW + DAY)
            sender.run_once(NOW + DAY)
        finally:
            sender.stop(10)
        assert reports.handler.messages == []
        assert ("_smtp._tls.d.test", "TXT") not in net.dns.queries


def test_the_report_record_gives_its_mailto_addresses() -> None:
    """Only mailto: URIs of the one v=TLSRPTv1 record count; two records, or
    none, mean no report."""
    assert report_addresses(
        ["v=TLSRPTv1; rua=mailto:a@r.test,https://r.test/x,mailto:b%40x@r.test"]
    ) == ("a@r.test", "b@x@r.test")
    assert report_addresses(["v=spf1 -all"]) == ()
    assert report_addresses(["v=TLSRPTv1; rua=mailto:a@r.test"] * 2) == ()
