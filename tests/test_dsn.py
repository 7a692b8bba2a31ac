"""Delivery status notifications: reports to senders, through the mailer's own queue.

Reports are read back the way a sender's mail program reads them: parsed with
the standard library's email parser, field by field.
"""

from __future__ import annotations

from collections.abc import Iterator
from email import message_from_bytes
from email.message import EmailMessage, Message
from email.policy import default
from email.utils import format_datetime, parsedate_to_datetime

import pytest
from support.dkimverify import Published, verify_all
from support.smtpd import RecordingHandler, SmtpServer

from mailstrom_py import (
    Config,
    ConfigError,
    DeliveryResult,
    DsnPolicy,
    InvalidMessageError,
    Mailstrom,
    MessageStatus,
    PreparedEmail,
    RecipientStatus,
    RelayConfig,
    Remote,
    RetryPolicy,
    SmtpReply,
    Timeouts,
    build_dsn,
)
from mailstrom_py.message.dkim import generate_key, txt_record

NOW = 1_700_000_000.0
SENDER = "sender@example.test"


@pytest.fixture
def server() -> Iterator[SmtpServer]:
    with SmtpServer() as srv:
        yield srv


def mailer_for(server: SmtpServer, **config: object) -> Mailstrom:
    config.setdefault("dsn", True)
    return Mailstrom(
        Config(
            helo_name="mx.example.test",
            delivery=RelayConfig(host=server.host, port=server.port, tls="none"),
            retry=RetryPolicy(initial_delay=60, max_delay=600, jitter=0, max_age=3600),
            timeouts=Timeouts.uniform(5),
            **config,  # type: ignore[arg-type]
        ),
        clock=lambda: NOW,
    )


def message(to: str, sender: str = SENDER) -> bytes:
    return (
        f"From: Sender <{sender}>\r\nTo: {to}\r\nSubject: quarterly report\r\n"
        "Message-ID: <orig.1@example.test>\r\n\r\nHello.\r\n"
    ).encode()


def reports(server: SmtpServer) -> list[EmailMessage]:
    """The reports the server received (mail from the null reverse-path)."""
    found = []
    for received in server.handler.messages:
        if received.mail_from in ("", "<>"):
            parsed = message_from_bytes(received.data, policy=default)
            assert isinstance(parsed, EmailMessage)
            found.append(parsed)
    return found


def status_blocks(report: EmailMessage) -> list[Message]:
    """The blocks of the message/delivery-status part: per message, then per rcpt."""
    parts = list(report.iter_parts())
    assert [p.get_content_type() for p in parts] == [
        "text/plain",
        "message/delivery-status",
        "text/rfc822-headers",
    ]
    blocks = parts[1].get_payload()
    assert isinstance(blocks, list)
    return blocks


def run(mailer: Mailstrom, *times: float) -> None:
    for now in times:
        mailer.run_once(now)


class TestFailureReports:
    def test_a_failed_recipient_is_reported_to_the_sender(
        self, server: SmtpServer
    ) -> None:
        """A 550 recipient yields a multipart/report from <> to the sender, with every
        RFC 3464 field, while the delivered recipient is not mentioned."""
        mailer = mailer_for(server)
        mailer.send_email(message("ok@example.test, p5gone@example.test"))
        run(mailer, NOW, NOW + 1)
        [report] = reports(server)
        dsn_wire = next(m for m in server.handler.messages if m.mail_from == "<>")
        assert dsn_wire.rcpt_tos == (SENDER,)
        commands = [c for session in server.handler.sessions for c in session.commands]
        assert "MAIL FROM:<>" in commands
        assert report.get_content_type() == "multipart/report"
        assert report.get_param("report-type") == "delivery-status"
        assert report["To"].addresses[0].addr_spec == SENDER
        assert report["From"].addresses[0].addr_spec == "MAILER-DAEMON@mx.example.test"
        assert report["Subject"] == "Undelivered Mail Returned to Sender"
        assert report["Auto-Submitted"] == "auto-replied"
        per_message, per_recipient = status_blocks(report)
        assert per_message["Reporting-MTA"] == "dns; mx.example.test"
        assert parsedate_to_datetime(per_message["Arrival-Date"]).timestamp() == NOW
        assert dict(per_recipient.items()) == {
            "Original-Recipient": "rfc822; p5gone@example.test",
            "Final-Recipient": "rfc822; p5gone@example.test",
            "Action": "failed",
            "Status": "5.1.1",
            "Remote-MTA": "dns; 127.0.0.1",
            "Diagnostic-Code": "smtp; 550 5.1.1 no such user",
            "Last-Attempt-Date": per_recipient["Last-Attempt-Date"],
        }
        assert parsedate_to_datetime(
            per_recipient["Last-Attempt-Date"]
        ).timestamp() == (NOW)
        text, _, headers = report.iter_parts()
        assert "p5gone@example.test" in text.get_content()
        assert "no such user" in text.get_content()
        assert "ok@example.test" not in text.get_content()
        original = message_from_bytes(headers.get_content().encode(), policy=default)
        assert original["Subject"] == "quarterly report"
        assert original["Message-ID"] == "<orig.1@example.test>"
        mailer.stop()

    def test_recipients_that_fail_together_share_one_report(
        self, server: SmtpServer
    ) -> None:
        """Two 550s in one attempt give one report with two recipient blocks."""
        mailer = mailer_for(server)
        mailer.send_email(message("p5a@example.test, ok@example.test, p5b@x.test"))
        run(mailer, NOW, NOW + 1)
        [report] = reports(server)
        _, *recipients = status_blocks(report)
        assert [b["Final-Recipient"] for b in recipients] == [
            "rfc822; p5a@example.test",
            "rfc822; p5b@x.test",
        ]
        mailer.stop()

    def test_reports_are_off_by_default(self, server: SmtpServer) -> None:
        """Without Config(dsn=...) a failure is only a status: no report is queued."""
        mailer = mailer_for(server, dsn=False)
        mailer.send_email(message("p5gone@example.test"))
        run(mailer, NOW, NOW + 1, NOW + 600)
        assert reports(server) == []
        assert mailer.storage.next_due() is None
        mailer.stop()

    def test_a_failed_report_is_never_reported(self) -> None:
        """No loops: a report whose own delivery fails (sender refused) gets none."""
        with SmtpServer() as server:
            mailer = mailer_for(server)
            mailer.send_email(message("p5gone@example.test", sender="p5me@x.test"))
            run(mailer, NOW, NOW + 1, NOW + 2)
            mails = [
                line
                for session in server.handler.sessions
                for line in session.commands
                if line.startswith("MAIL")
            ]
            assert mails == ["MAIL FROM:<p5me@x.test>", "MAIL FROM:<>"]
            assert mailer.storage.next_due() is None
            mailer.stop()

    def test_a_give_up_after_retries_is_reported(self, server: SmtpServer) -> None:
        """Retries running out fail the recipient with 5.4.7, and that is reported."""
        mailer = mailer_for(server)
        mailer.send_email(message("t4busy@example.test"))
        now = NOW
        while not reports(server) and now < NOW + 7200:
            mailer.run_once(now)
            now += 300
        [report] = reports(server)
        _, block = status_blocks(report)
        assert (block["Action"], block["Status"]) == ("failed", "5.4.7")
        assert block["Diagnostic-Code"] == "smtp; 450 4.2.0 mailbox busy"
        mailer.stop()

    def test_reports_flow_through_the_running_worker(self, server: SmtpServer) -> None:
        """With the worker thread running, the report follows the failure unasked."""
        mailer = mailer_for(server)
        with mailer:
            mailer.send_email(message("p5gone@example.test"))
            server.handler.wait_for(1, timeout=30)
        assert len(reports(server)) == 1

    def test_a_report_is_dkim_signed_for_the_reporting_domain(
        self, server: SmtpServer
    ) -> None:
        """The report's From domain (the HELO name's) picks its DKIM key, like any mail."""
        key = generate_key("example.test", "dsn", "ed25519-sha256")
        mailer = mailer_for(server, dkim=key)
        mailer.send_email(message("p5gone@example.test"))
        run(mailer, NOW, NOW + 1)
        dsn_wire = next(m for m in server.handler.messages if m.mail_from == "<>")
        assert verify_all(dsn_wire.data, Published(txt_record(key))) == [True]
        mailer.stop()


class TestDelayReports:
    def test_a_delay_is_reported_once_after_n_attempts(self) -> None:
        """DsnPolicy(delay_after_attempts=2): one 'delayed' report at the second
        attempt, none after; the final give-up is reported as a failure."""
        with SmtpServer() as server:
            policy = DsnPolicy(delay_after_attempts=2)
            mailer = mailer_for(server, dsn=policy)
            mailer.send_email(message("t4busy@example.test, ok@example.test"))
            run(mailer, NOW)
            assert reports(server) == []
            run(mailer, NOW + 60, NOW + 61)
            [delayed] = reports(server)
            assert delayed["Subject"] == "Delayed Mail (still being retried)"
            _, block = status_blocks(delayed)
            assert block["Action"] == "delayed"
            assert block["Status"] == "4.2.0"
            until = parsedate_to_datetime(block["Will-Retry-Until"]).timestamp()
            assert until == NOW + 3600
            now = NOW + 180
            while len(reports(server)) < 2 and now < NOW + 7200:
                mailer.run_once(now)
                now += 300
            assert [r["Subject"] for r in reports(server)] == [
                "Delayed Mail (still being retried)",
                "Undelivered Mail Returned to Sender",
            ]
            mailer.stop()

    @pytest.mark.parametrize(
        ("delay_after", "reported_at"), [(100, 2), (0, 0), (10_000, None)]
    )
    def test_a_delay_is_reported_once_after_some_time(
        self, server: SmtpServer, delay_after: float, reported_at: int | None
    ) -> None:
        """DsnPolicy(delay_after=s): reported with the first attempt s seconds after
        the message was stored, and never again."""
        mailer = mailer_for(server, dsn=DsnPolicy(delay_after=delay_after))
        mailer.send_email(message("t4busy@example.test"))
        seen = []
        for index, at in enumerate([NOW, NOW + 60, NOW + 180, NOW + 420, NOW + 900]):
            mailer.run_once(at)
            mailer.run_once(at + 1)  # delivers a report queued by the attempt
            seen += [index] * (len(reports(server)) - len(seen))
        assert seen == ([] if reported_at is None else [reported_at])
        mailer.stop()

    def test_failure_reports_can_be_turned_off(self, server: SmtpServer) -> None:
        """DsnPolicy(on_failure=False) sends no report for a failure."""
        mailer = mailer_for(server, dsn=DsnPolicy(on_failure=False))
        mailer.send_email(message("p5gone@example.test"))
        run(mailer, NOW, NOW + 1)
        assert reports(server) == []
        mailer.stop()


def prepared(recipients: tuple[str, ...], sender: str = SENDER) -> PreparedEmail:
    data = (
        f"From: {sender}\r\nSubject: s\r\nMessage-ID: <m.1@example.test>\r\n"
        "\r\nbody\r\n"
    ).encode()
    return PreparedEmail("m.1@example.test", sender, recipients, data, False, False)


class TestBuildDsn:
    def test_any_status_can_be_reported_with_actions_from_results(self) -> None:
        """build_dsn() maps DELIVERED, DEFERRED and FAILED to delivered, delayed and
        failed, and gives Will-Retry-Until to delays only."""
        reply = SmtpReply(250, "2.0.0", "ok")
        status = MessageStatus(
            "m.1@example.test",
            (
                RecipientStatus(
                    "a@x.test", DeliveryResult.DELIVERED, 1, reply, "2.0.0"
                ),
                RecipientStatus("b@x.test", DeliveryResult.DEFERRED, 2, None, "4.4.1"),
                RecipientStatus("c@x.test", DeliveryResult.FAILED, 1),
            ),
            NOW,
        )
        email = prepared(("a@x.test", "b@x.test", "c@x.test"))
        report = build_dsn(
            status, email, reporting_mta="mta.example.test", retry_until=NOW + 10
        )
        _, *blocks = status_blocks(report)
        assert [(b["Action"], b["Status"]) for b in blocks] == [
            ("delivered", "2.0.0"),
            ("delayed", "4.4.1"),
            ("failed", "5.0.0"),
        ]
        assert [b["Will-Retry-Until"] for b in blocks] == [
            None,
            format_datetime(parsedate_to_datetime("Tue, 14 Nov 2023 22:13:30 +0000")),
            None,
        ]
        assert blocks[0]["Diagnostic-Code"] == "smtp; 250 2.0.0 ok"
        assert blocks[1]["Diagnostic-Code"] is None
        assert report["Subject"] == "Undelivered Mail Returned to Sender"

    def test_only_the_chosen_recipients_are_reported(self) -> None:
        """recipients= limits the report; an address not of the message is refused."""
        status = MessageStatus(
            "m.1@example.test",
            (
                RecipientStatus("a@x.test", DeliveryResult.FAILED),
                RecipientStatus("b@x.test", DeliveryResult.FAILED),
            ),
            NOW,
        )
        email = prepared(("a@x.test", "b@x.test"))
        report = build_dsn(
            status, email, reporting_mta="mta.test", recipients=["b@x.test"]
        )
        _, block = status_blocks(report)
        assert block["Final-Recipient"] == "rfc822; b@x.test"
        with pytest.raises(InvalidMessageError, match="not a recipient"):
            build_dsn(status, email, reporting_mta="mta.test", recipients=["z@x"])

    def test_a_null_sender_gets_no_report(self) -> None:
        """A message from <> (a report itself) cannot be reported on."""
        status = MessageStatus(
            "m.1@example.test",
            (RecipientStatus("a@x.test", DeliveryResult.FAILED),),
            NOW,
        )
        with pytest.raises(InvalidMessageError, match="null"):
            build_dsn(status, prepared(("a@x.test",), sender=""), reporting_mta="m")

    def test_server_text_is_one_line_of_ascii(self) -> None:
        """A multi-line, non-ASCII reply becomes one field line; the remote is named."""
        reply = SmtpReply(550, "5.7.1", "rejected\nby pölicy\r\nsee https://x")
        remote = Remote("mx1.x.test", "192.0.2.1", 25)
        status = MessageStatus(
            "m.1@example.test",
            (
                RecipientStatus(
                    "a@x.test", DeliveryResult.FAILED, 1, reply, remote=remote
                ),
            ),
            NOW,
        )
        report = build_dsn(status, prepared(("a@x.test",)), reporting_mta="m.test")
        _, block = status_blocks(report)
        assert block["Diagnostic-Code"] == (
            "smtp; 550 5.7.1 rejected by p?licy see https://x"
        )
        assert block["Remote-MTA"] == "dns; mx1.x.test"

    def test_utf8_recipients_use_the_global_report_type(self) -> None:
        """RFC 6533: a UTF-8 address makes the part message/global-delivery-status."""
        status = MessageStatus(
            "m.1@example.test",
            (RecipientStatus("jö@x.test", DeliveryResult.FAILED),),
            NOW,
        )
        report = build_dsn(status, prepared(("jö@x.test",)), reporting_mta="m.test")
        part = list(report.iter_parts())[1]
        assert part.get_content_type() == "message/global-delivery-status"
        assert "Final-Recipient: utf-8; jö@x.test".encode() in report.as_bytes()


def test_reporting_with_a_recording_handler_reply() -> None:
    """A report about a 5xx at the end of DATA carries that reply."""
    handler = RecordingHandler(data_reply="554 5.6.0 content rejected")
    with SmtpServer(handler=handler) as server:
        mailer = mailer_for(server)
        mailer.send_email(message("a@example.test"))
        mailer.run_once(NOW)
        handler.data_reply = None
        mailer.run_once(NOW + 1)
        [report] = reports(server)
        _, block = status_blocks(report)
        assert block["Diagnostic-Code"] == "smtp; 554 5.6.0 content rejected"
        mailer.stop()


class TestDsnPolicy:
    @pytest.mark.parametrize(
        ("dsn", "policy"),
        [
            (False, None),
            (True, DsnPolicy()),
            (DsnPolicy(delay_after=60), DsnPolicy(delay_after=60)),
        ],
    )
    def test_config_dsn_gives_a_policy(
        self, dsn: bool | DsnPolicy, policy: DsnPolicy | None
    ) -> None:
        """dsn=False is off, True the defaults (failures only), or a DsnPolicy."""
        config = Config(
            helo_name="a.example.test",
            delivery=RelayConfig(host="relay.example.test"),
            dsn=dsn,
        )
        assert config.dsn_policy == policy

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"delay_after": -1},
            {"delay_after": float("inf")},
            {"delay_after_attempts": 0},
            {"delay_after_attempts": True},
        ],
    )
    def test_bad_thresholds_are_config_errors(self, kwargs: dict[str, object]) -> None:
        """Negative or infinite delays and attempt counts under 1 are refused."""
        with pytest.raises(ConfigError):
            DsnPolicy(**kwargs)  # type: ignore[arg-type]

    def test_dsn_must_be_a_bool_or_a_policy(self) -> None:
        """Anything else for Config(dsn=...) is a ConfigError."""
        with pytest.raises(ConfigError):
            Config(
                helo_name="a.example.test",
                delivery=RelayConfig(host="relay.example.test"),
                dsn="yes",  # type: ignore[arg-type]
            )
