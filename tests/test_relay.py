"""Relay delivery end to end: a real mailer against real SMTP servers on loopback.

The rows of the reliability matrix each test covers are named in its docstring.
Most tests drive the mailer with ``run_once()`` and a fixed clock; the ones about
the worker thread itself run it for real and wait on conditions.
"""

from __future__ import annotations

import logging
import re
import ssl
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
import trustme
from hypothesis import given
from hypothesis import strategies as st
from support.mxnet import ipv6_loopback
from support.scripted import (
    Conversation,
    ScriptedServer,
    drop_after_dot,
    greeting,
    long_reply_line,
    malformed_reply,
    normal,
    refusing,
    reply_421_after_rcpts,
    silent_after_dot,
)
from support.smtpd import RecordingHandler, SmtpServer
from support.tls import client_context, self_signed_server_context, server_context

from mailstrom_py import (
    Config,
    DeliveryResult,
    Mailstrom,
    RelayConfig,
    RetryPolicy,
    SmtpReply,
    SmtpStep,
    SqliteStorage,
    Timeouts,
)
from mailstrom_py.delivery.smtp import SessionFailure, SmtpSession
from mailstrom_py.delivery.smtp.transaction import dot_stuffed
from mailstrom_py.delivery.tls_policy import TlsPolicy

NOW = 1_700_000_000.0
RAW = (
    b"From: Sender <sender@example.test>\r\n"
    b"To: rcpt@example.test\r\n"
    b"Subject: test\r\n"
    b"\r\n"
    b"Hello.\r\n"
)


def relay_config(host: str, port: int, **relay: object) -> Config:
    relay.setdefault("tls", "none")
    return Config(
        helo_name="client.example.test",
        delivery=RelayConfig(host=host, port=port, **relay),  # type: ignore[arg-type]
        retry=RetryPolicy(initial_delay=60, max_delay=600, jitter=0.0, max_age=3600),
        timeouts=Timeouts.uniform(5),
    )


def message(to: str, subject: str = "test", body: str = "Hello.\r\n") -> bytes:
    return (
        f"From: Sender <sender@example.test>\r\nTo: {to}\r\nSubject: {subject}\r\n\r\n"
    ).encode() + body.encode()


@pytest.fixture
def server() -> Iterator[SmtpServer]:
    with SmtpServer() as srv:
        yield srv


def mailer_for(server: SmtpServer | ScriptedServer, **relay: object) -> Mailstrom:
    return Mailstrom(relay_config(server.host, server.port, **relay), clock=lambda: NOW)


class TestDelivery:
    def test_a_message_is_delivered_with_its_exact_bytes(
        self, server: SmtpServer
    ) -> None:
        """The server receives the prepared bytes, with envelope from the headers."""
        mailer = mailer_for(server)
        message_id = mailer.send_email(RAW)
        assert mailer.run_once() == 1
        status = mailer.query_status(message_id)
        assert status.succeeded
        [received] = server.handler.messages
        assert received.mail_from == "sender@example.test"
        assert received.rcpt_tos == ("rcpt@example.test",)
        assert received.data == mailer.storage.email(message_id).data
        r = status.recipients[0]
        assert (r.attempts, r.status_code, r.last_reply and r.last_reply.code) == (
            1,
            "2.0.0",
            250,
        )
        assert r.remote is not None and r.remote.address == "127.0.0.1"
        assert r.remote.tls_version is None
        mailer.stop()

    def test_bcc_recipients_get_the_message_without_the_bcc_header(
        self, server: SmtpServer
    ) -> None:
        """Bcc recipients are in the envelope but not in the transmitted headers."""
        mailer = mailer_for(server)
        raw = message("a@example.test").replace(
            b"Subject", b"Bcc: hidden@example.test\r\nSubject"
        )
        mailer.send_email(raw)
        mailer.run_once()
        [received] = server.handler.messages
        assert set(received.rcpt_tos) == {"a@example.test", "hidden@example.test"}
        assert b"hidden@example.test" not in received.data
        mailer.stop()

    def test_leading_dots_arrive_unchanged(self, server: SmtpServer) -> None:
        """A9: lines starting with '.' are dot-stuffed on the wire and arrive intact."""
        mailer = mailer_for(server)
        body = ".\r\n..two\r\n.three\r\nend\r\n"
        message_id = mailer.send_email(message("a@example.test", body=body))
        mailer.run_once()
        [received] = server.handler.messages
        assert received.data == mailer.storage.email(message_id).data
        assert b"\r\n.\r\n..two\r\n.three\r\n" in received.data
        mailer.stop()

    @pytest.mark.parametrize(
        "shape",
        ["object", "dot after the header", "dot in the first header", "dot at the end"],
    )
    def test_lines_starting_with_a_dot_arrive_intact_whatever_the_message(
        self, server: SmtpServer, shape: str
    ) -> None:
        """Every line that starts with "." is stuffed on the wire, the first line
        of the body and of the message included, and the server's unstuffed copy
        is the prepared bytes: an EmailMessage, a body that starts with a dot, a
        first header whose name does, a body whose last line is a lone dot."""
        mailer = mailer_for(server)
        outgoing: bytes | EmailMessage
        if shape == "object":
            outgoing = EmailMessage()
            outgoing["From"] = "sender@example.test"
            outgoing["To"] = "a@example.test"
            outgoing.set_content(".one\n..two\n.\nend\n")
        elif shape == "dot after the header":
            outgoing = message("a@example.test", body=".first\r\n.\r\n")
        elif shape == "dot in the first header":
            outgoing = b".X-Dot: 1\r\n" + message("a@example.test")
        else:
            outgoing = message("a@example.test", body="last\r\n.\r\n")
        message_id = mailer.send_email(outgoing)
        mailer.run_once()
        [received] = server.handler.messages
        sent = mailer.storage.email(message_id).data
        assert re.search(rb"(?m)^\.", sent) is not None
        assert received.data == sent
        mailer.stop()

    @given(st.lists(st.sampled_from([b"a", b".", b"\r\n", b" "]), max_size=30))
    def test_dot_stuffing_crlf_data_is_stuffing_every_line(
        self, pieces: list[bytes]
    ) -> None:
        """For data in CRLF lines (the prepared data's contract), one more "." goes
        on exactly the lines that start with one, the first included."""
        data = b"".join(pieces)
        lines = data.split(b"\r\n")
        stuffed = b"\r\n".join(
            b"." + line if line[:1] == b"." else line for line in lines
        )
        assert dot_stuffed(data) == stuffed

    def test_a_dot_after_a_bare_lf_is_stuffed_too(self) -> None:
        """Data that breaks the CRLF contract (a PreparedEmail built by hand)
        still gets its dot lines stuffed after a bare LF, so that a receiver
        taking a bare LF for a line end never reads "." as the end of data."""
        assert dot_stuffed(b"a\n.\r\nb\r\n") == b"a\n..\r\nb\r\n"

    @pytest.mark.parametrize(
        "body",
        ["a\n.\nb\n", "a\r.\rb\r", "a\n.\r\nb", "bare\rcr and bare\nlf\r\n"],
    )
    def test_smuggling_sequences_never_reach_the_wire(
        self, server: SmtpServer, body: str
    ) -> None:
        """A6: bare CR/LF around a dot is canonicalised: one message, no bare CR or LF."""
        mailer = mailer_for(server)
        mailer.send_email(message("a@example.test", body=body))
        mailer.run_once()
        assert server.handler.transactions == 1
        [received] = server.handler.messages
        assert re.search(rb"\r(?!\n)|(?<!\r)\n", received.data) is None
        mailer.stop()

    def test_long_lines_are_encoded_below_the_limit(self, server: SmtpServer) -> None:
        """A7: a 3000-octet body line is re-encoded; every line on the wire fits 1000."""
        mailer = mailer_for(server)
        mailer.send_email(message("a@example.test", body="x" * 3000 + "\r\n"))
        mailer.run_once()
        [received] = server.handler.messages
        assert max(len(line) for line in received.data.split(b"\r\n")) <= 998
        mailer.stop()

    def test_utf8_mailbox_uses_smtputf8(self, server: SmtpServer) -> None:
        """A5/F2: a UTF-8 local part goes out with the SMTPUTF8 parameter."""
        mailer = mailer_for(server)
        message_id = mailer.send_email(message("jösé@example.test"))
        mailer.run_once()
        assert mailer.query_status(message_id).succeeded
        [received] = server.handler.messages
        assert "SMTPUTF8" in received.mail_options
        assert received.rcpt_tos == ("jösé@example.test",)
        mailer.stop()

    def test_utf8_mailbox_fails_at_a_server_without_smtputf8(self) -> None:
        """F2: a server without SMTPUTF8 fails the message with 5.6.7, sending nothing."""
        with SmtpServer(enable_smtputf8=False) as server:
            mailer = mailer_for(server)
            message_id = mailer.send_email(message("jösé@example.test"))
            mailer.run_once()
            r = mailer.query_status(message_id).recipients[0]
            assert (r.result, r.status_code) == (DeliveryResult.FAILED, "5.6.7")
            assert "MAIL" not in server.handler.commands
            mailer.stop()

    def test_too_many_recipients_go_in_further_transactions(self) -> None:
        """C11: after a 452 the rest are sent in another transaction on the same link."""
        handler = RecordingHandler(max_recipients=2)
        with SmtpServer(handler=handler) as server:
            mailer = mailer_for(server)
            to = ", ".join(f"r{n}@example.test" for n in range(5))
            message_id = mailer.send_email(message(to))
            mailer.run_once()
            assert mailer.query_status(message_id).succeeded
            assert [len(m.rcpt_tos) for m in handler.messages] == [2, 2, 1]
            assert handler.connections == 1
            mailer.stop()


class TestPerRecipientResults:
    def test_mixed_rcpt_replies_give_mixed_results(self, server: SmtpServer) -> None:
        """C9: ok is delivered, 450 deferred, 550 failed with 5.1.1 and the server's text."""
        mailer = mailer_for(server)
        message_id = mailer.send_email(
            message("ok@example.test, t4busy@example.test, p5gone@example.test")
        )
        mailer.run_once()
        status = mailer.query_status(message_id)
        ok, busy, gone = status.recipients
        assert ok.result is DeliveryResult.DELIVERED
        assert busy.result is DeliveryResult.DEFERRED
        assert busy.next_attempt_at == NOW + 60
        assert busy.last_reply is not None and busy.last_reply.code == 450
        assert gone.result is DeliveryResult.FAILED
        assert gone.status_code == "5.1.1"
        assert gone.last_reply is not None and "no such user" in gone.last_reply.text
        [received] = server.handler.messages
        assert received.rcpt_tos == ("ok@example.test",)
        mailer.stop()

    def test_replies_keep_their_steps_in_a_reopened_sqlite_file(
        self, tmp_path: Path
    ) -> None:
        """A delivered recipient keeps its RCPT reply (step RCPT) and the reply to
        the final dot ("end of data"); one deferred by its MAIL reply has that
        reply, step MAIL, and no RCPT reply; all of it read back from the file."""

        def on_mail(conv: Conversation, line: str) -> str | None:
            return "451 4.3.0 not now" if "later@" in line else None

        db = tmp_path / "outbox.db"
        with ScriptedServer(normal(on_mail=on_mail)) as server:
            mailer = Mailstrom(
                relay_config(server.host, server.port),
                SqliteStorage(db),
                clock=lambda: NOW,
            )
            sent = mailer.send_email(message("a@example.test"))
            later = mailer.send_email(
                message("b@example.test").replace(b"sender@", b"later@")
            )
            mailer.run_once()
            mailer.stop()
        storage = SqliteStorage(db)
        [r] = storage.status(sent).recipients
        assert r.result is DeliveryResult.DELIVERED
        assert r.rcpt_reply == SmtpReply(250, "2.1.5", "ok", SmtpStep.RCPT)
        assert r.last_reply == SmtpReply(250, "2.0.0", "ok", SmtpStep.END_OF_DATA)
        [r] = storage.status(later).recipients
        assert r.result is DeliveryResult.DEFERRED
        assert r.last_reply == SmtpReply(451, "4.3.0", "not now", SmtpStep.MAIL)
        assert r.rcpt_reply is None
        storage.close()

    def test_the_retry_sends_only_to_deferred_recipients(
        self, server: SmtpServer
    ) -> None:
        """C9: the next attempt has one RCPT, for the deferred recipient only."""
        mailer = mailer_for(server)
        message_id = mailer.send_email(message("ok@example.test, t4busy@example.test"))
        mailer.run_once(NOW)
        assert mailer.run_once(NOW + 59) == 0
        mailer.run_once(NOW + 60)
        rcpts = [
            line
            for session in server.handler.sessions
            for line in session.commands
            if line.startswith("RCPT")
        ]
        assert rcpts == [
            "RCPT TO:<ok@example.test>",
            "RCPT TO:<t4busy@example.test>",
            "RCPT TO:<t4busy@example.test>",
        ]
        status = mailer.query_status(message_id)
        assert [r.attempts for r in status.recipients] == [1, 2]
        mailer.stop()

    def test_all_recipients_refused_means_no_data(self, server: SmtpServer) -> None:
        """C10: when every RCPT is refused, DATA is never sent."""
        mailer = mailer_for(server)
        message_id = mailer.send_email(message("t4a@example.test, p5b@example.test"))
        mailer.run_once()
        results = [r.result for r in mailer.query_status(message_id).recipients]
        assert results == [DeliveryResult.DEFERRED, DeliveryResult.FAILED]
        assert "DATA" not in server.handler.commands
        mailer.stop()

    @pytest.mark.parametrize(
        ("reply", "result"),
        [
            ("451 4.3.0 try later", DeliveryResult.DEFERRED),
            ("550 5.7.1 not from you", DeliveryResult.FAILED),
        ],
    )
    def test_mail_reply_applies_to_every_recipient(
        self, reply: str, result: DeliveryResult
    ) -> None:
        """C7/C8: a 4xx or 5xx to MAIL defers or fails all recipients, with the text."""
        handler = RecordingHandler(mail_reply=reply)
        with SmtpServer(handler=handler) as server:
            mailer = mailer_for(server)
            message_id = mailer.send_email(message("a@example.test, b@example.test"))
            mailer.run_once()
            for r in mailer.query_status(message_id).recipients:
                assert r.result is result
                assert r.last_reply is not None and r.last_reply.text == reply[10:]
            mailer.stop()

    def test_a_mail_refusal_is_not_cached(self) -> None:
        """C8: after a 5xx to MAIL the next message to the same server is still tried."""
        handler = RecordingHandler(mail_reply="550 5.7.1 not now")
        with SmtpServer(handler=handler) as server:
            mailer = mailer_for(server)
            first = mailer.send_email(message("a@example.test"))
            mailer.run_once()
            handler.mail_reply = None
            second = mailer.send_email(message("a@example.test"))
            mailer.run_once()
            assert not mailer.query_status(first).succeeded
            assert mailer.query_status(second).succeeded
            mailer.stop()

    @pytest.mark.parametrize(
        ("reply", "result", "code"),
        [
            ("452 4.3.1 out of space", DeliveryResult.DEFERRED, "4.3.1"),
            ("554 5.6.0 content refused", DeliveryResult.FAILED, "5.6.0"),
            ("421 4.3.2 shutting down", DeliveryResult.DEFERRED, "4.3.2"),
        ],
    )
    def test_final_dot_reply_applies_to_accepted_recipients(
        self, reply: str, result: DeliveryResult, code: str
    ) -> None:
        """C14: a 4xx, 5xx or 421 after the final dot defers or fails the message."""
        handler = RecordingHandler(data_reply=reply)
        with SmtpServer(handler=handler) as server:
            mailer = mailer_for(server)
            message_id = mailer.send_email(message("a@example.test, p5b@example.test"))
            mailer.run_once()
            a, b = mailer.query_status(message_id).recipients
            assert (a.result, a.status_code) == (result, code)
            assert not a.possibly_delivered
            assert (b.result, b.status_code) == (DeliveryResult.FAILED, "5.1.1")
            mailer.stop()

    @pytest.mark.parametrize(
        ("reply", "result"),
        [
            ("451 4.3.0 not now", DeliveryResult.DEFERRED),
            ("554 5.5.1 no valid recipients", DeliveryResult.FAILED),
        ],
    )
    def test_data_command_reply_applies_to_accepted_recipients(
        self, reply: str, result: DeliveryResult
    ) -> None:
        """C13: a 4xx or 5xx to DATA defers or fails the accepted recipients."""
        with ScriptedServer(normal(on_data=lambda conv, line: reply)) as server:
            mailer = mailer_for(server)
            message_id = mailer.send_email(message("a@example.test"))
            mailer.run_once()
            [r] = mailer.query_status(message_id).recipients
            assert r.result is result
            assert server.errors == []
            mailer.stop()


class TestBrokenConversations:
    def test_421_during_rcpt_defers_the_rest(self) -> None:
        """C12: a 421 mid-RCPT defers the untried recipients and the accepted ones."""
        with ScriptedServer(reply_421_after_rcpts(1)) as server:
            mailer = mailer_for(server)
            message_id = mailer.send_email(
                message("a@example.test, b@example.test, c@example.test")
            )
            mailer.run_once()
            results = [r.result for r in mailer.query_status(message_id).recipients]
            assert results == [DeliveryResult.DEFERRED] * 3
            assert "DATA" not in server.verbs
            mailer.stop()

    @pytest.mark.parametrize(
        "handler",
        [
            pytest.param(silent_after_dot(), id="silent"),
            pytest.param(drop_after_dot(), id="hang-up"),
        ],
    )
    def test_no_reply_after_the_dot_is_possibly_delivered(
        self, handler: object, caplog: pytest.LogCaptureFixture
    ) -> None:
        """C16/C17: silence or a hang-up after the dot defers, flags a possible
        duplicate and logs a warning; the retry sends the same Message-ID."""
        with ScriptedServer(handler) as server:  # type: ignore[arg-type]
            config = relay_config(server.host, server.port)
            config = Config(
                helo_name=config.helo_name,
                delivery=config.delivery,
                retry=config.retry,
                timeouts=Timeouts(data_done=1.0, greeting=5, quit=1),
            )
            mailer = Mailstrom(config, clock=lambda: NOW)
            message_id = mailer.send_email(message("a@example.test"))
            with caplog.at_level(logging.WARNING):
                mailer.run_once()
            [r] = mailer.query_status(message_id).recipients
            assert r.result is DeliveryResult.DEFERRED
            assert r.possibly_delivered
            assert "more than once" in caplog.text
            mailer.run_once(NOW + 60)
            [r] = mailer.query_status(message_id).recipients
            assert (r.attempts, r.possibly_delivered) == (2, True)
            bodies = server.bodies
            assert len(bodies) == 2 and bodies[0] == bodies[1]
            assert f"<{message_id}>".encode() in bodies[0]
            mailer.stop()

    def test_a_connection_dropped_before_the_dot_is_not_possibly_delivered(
        self,
    ) -> None:
        """C15: losing the connection while sending defers without the duplicate flag."""

        def on_data(conv: Conversation, line: str) -> None:
            conv.send("354 go on")
            conv.read_bytes(100)
            conv.close(reset=True)

        with ScriptedServer(normal(on_data=on_data)) as server:
            mailer = mailer_for(server)
            # Bigger than the socket buffers, so the sending itself fails.
            big = "line of text to fill the message\r\n" * 400_000
            message_id = mailer.send_email(message("a@example.test", body=big))
            mailer.run_once()
            [r] = mailer.query_status(message_id).recipients
            assert r.result is DeliveryResult.DEFERRED
            assert not r.possibly_delivered
            mailer.stop()

    @pytest.mark.parametrize("read", [0, 1024], ids=["at-once", "mid-data"])
    def test_a_server_closing_after_354_leaves_it_not_possibly_delivered(
        self, read: int, caplog: pytest.LogCaptureFixture
    ) -> None:
        """C15: a server that closes after its 354, before or while reading a
        message that fits in the socket buffers, never read the final dot:
        deferred without the duplicate flag or warning, whether the loss shows
        on the write or on the reply."""

        def on_data(conv: Conversation, line: str) -> None:
            conv.send("354 go on")
            if read:
                conv.read_bytes(read)
                time.sleep(0.2)  # the rest is in; closing leaves it unread
            conv.close()

        with ScriptedServer(normal(on_data=on_data)) as server:
            mailer = mailer_for(server)
            body = "line of text to fill the message\r\n" * 6000  # 200 KB
            message_id = mailer.send_email(message("a@example.test", body=body))
            with caplog.at_level(logging.WARNING):
                mailer.run_once()
            [r] = mailer.query_status(message_id).recipients
            assert (r.result, r.status_code) == (DeliveryResult.DEFERRED, "4.4.2")
            assert not r.possibly_delivered
            assert "more than once" not in caplog.text
            assert server.bodies == []
            mailer.stop()

    def test_trouble_at_quit_after_250_keeps_it_delivered(self) -> None:
        """C21: a server that hangs up at QUIT after accepting leaves it delivered."""

        def on_quit(conv: Conversation, line: str) -> None:
            conv.close(reset=True)

        with ScriptedServer(normal(on_quit=on_quit)) as server:
            mailer = mailer_for(server)
            message_id = mailer.send_email(message("a@example.test"))
            mailer.run_once()
            assert mailer.query_status(message_id).succeeded
            mailer.stop()

    @pytest.mark.parametrize(
        "handler",
        [
            pytest.param(malformed_reply("XYZ garbage"), id="garbage"),
            pytest.param(long_reply_line(), id="line-too-long"),
        ],
    )
    def test_malformed_replies_do_not_crash(self, handler: object) -> None:
        """C19/C20: garbage or a reply line over 8 KB is classified, never a crash."""
        with ScriptedServer(handler) as server:  # type: ignore[arg-type]
            mailer = mailer_for(server)
            message_id = mailer.send_email(message("a@example.test"))
            mailer.run_once()
            [r] = mailer.query_status(message_id).recipients
            assert r.result in (DeliveryResult.DEFERRED, DeliveryResult.FAILED)
            assert r.attempts == 1
            mailer.stop()

    def test_a_refused_connection_defers(self) -> None:
        """An unreachable relay defers with 4.4.1 and schedules a retry."""
        with refusing() as port:
            mailer = Mailstrom(relay_config("127.0.0.1", port), clock=lambda: NOW)
            message_id = mailer.send_email(message("a@example.test"))
            mailer.run_once()
            [r] = mailer.query_status(message_id).recipients
            assert (r.result, r.status_code) == (DeliveryResult.DEFERRED, "4.4.1")
            assert r.next_attempt_at == NOW + 60
            mailer.stop()

    def test_a_relay_refusing_at_the_greeting_defers_and_names_itself(self) -> None:
        """A 554 greeting defers with 4.4.2, the reply, and the relay recorded as
        the server talked to, as direct delivery records an exchanger."""
        with ScriptedServer(greeting("554 5.3.2 not now")) as server:
            mailer = mailer_for(server)
            message_id = mailer.send_email(message("a@example.test"))
            mailer.run_once()
            [r] = mailer.query_status(message_id).recipients
            assert (r.result, r.status_code) == (DeliveryResult.DEFERRED, "4.4.2")
            assert r.last_reply is not None and r.last_reply.code == 554
            assert r.remote is not None
            assert (r.remote.address, r.remote.port) == ("127.0.0.1", server.port)
            mailer.stop()

    def test_retries_end_in_failure_with_the_last_reply(
        self, server: SmtpServer
    ) -> None:
        """H9: a recipient deferred past max_age fails with 5.4.7 and the last reply."""
        mailer = mailer_for(server)
        message_id = mailer.send_email(message("t4busy@example.test"))
        now = NOW
        while not mailer.query_status(message_id).completed:
            mailer.run_once(now)
            now += 600
        [r] = mailer.query_status(message_id).recipients
        assert (r.result, r.status_code) == (DeliveryResult.FAILED, "5.4.7")
        assert r.last_reply is not None and r.last_reply.code == 450
        assert r.attempts >= 6  # 0, 60, 180, 420, 900, 1500, 2100, ... 3600 s
        mailer.stop()


class TestTls:
    def test_starttls_with_auth_delivers_over_verified_tls(
        self, ca: trustme.CA
    ) -> None:
        """STARTTLS upgrades the session, the certificate verifies, then AUTH and MAIL."""
        with SmtpServer(
            starttls_context=server_context(ca, "127.0.0.1"),
            require_starttls=True,
            auth_users={"app": "secret"},
        ) as server:
            mailer = mailer_for(
                server,
                tls="starttls",
                ssl_context=client_context(ca),
                username="app",
                password="secret",
            )
            message_id = mailer.send_email(message("a@example.test"))
            mailer.run_once()
            [r] = mailer.query_status(message_id).recipients
            assert r.result is DeliveryResult.DELIVERED
            assert r.remote is not None and r.remote.tls_verified
            assert r.remote.tls_version is not None
            [received] = server.handler.messages
            assert received.tls and received.auth_login == "app"
            mailer.stop()

    def test_implicit_tls_delivers(self, ca: trustme.CA) -> None:
        """tls='implicit' speaks TLS from the first byte."""
        with SmtpServer(implicit_tls_context=server_context(ca, "127.0.0.1")) as server:
            mailer = mailer_for(server, tls="implicit", ssl_context=client_context(ca))
            message_id = mailer.send_email(message("a@example.test"))
            mailer.run_once()
            assert mailer.query_status(message_id).succeeded
            assert server.handler.messages[0].tls
            mailer.stop()

    def test_untrusted_certificate_defers_and_sends_no_credentials(
        self, ca: trustme.CA
    ) -> None:
        """D1: a certificate from an unknown CA defers; no AUTH reaches the server."""
        with SmtpServer(
            starttls_context=self_signed_server_context("127.0.0.1"),
            auth_users={"app": "secret"},
        ) as server:
            mailer = mailer_for(
                server,
                tls="starttls",
                ssl_context=client_context(ca),
                username="app",
                password="secret",
            )
            message_id = mailer.send_email(message("a@example.test"))
            mailer.run_once()
            [r] = mailer.query_status(message_id).recipients
            assert (r.result, r.status_code) == (DeliveryResult.DEFERRED, "4.7.5")
            assert "AUTH" not in server.handler.commands
            assert "MAIL" not in server.handler.commands
            mailer.stop()

    def test_default_context_rejects_a_test_certificate(self, ca: trustme.CA) -> None:
        """Verification is on by default: the system CAs do not trust a test CA."""
        with SmtpServer(starttls_context=server_context(ca, "127.0.0.1")) as server:
            mailer = mailer_for(server, tls="starttls")
            message_id = mailer.send_email(message("a@example.test"))
            mailer.run_once()
            [r] = mailer.query_status(message_id).recipients
            assert r.result is DeliveryResult.DEFERRED
            assert "certificate" in (r.detail or "")
            mailer.stop()

    def test_missing_starttls_defers_and_sends_nothing_more(self) -> None:
        """D2/D8: without STARTTLS on offer nothing follows EHLO, not even AUTH."""
        with SmtpServer(auth_users={"app": "secret"}, auth_require_tls=False) as server:
            mailer = mailer_for(
                server, tls="starttls", username="app", password="secret"
            )
            message_id = mailer.send_email(message("a@example.test"))
            mailer.run_once()
            [r] = mailer.query_status(message_id).recipients
            assert (r.result, r.status_code) == (DeliveryResult.DEFERRED, "4.7.4")
            assert set(server.handler.commands) <= {"EHLO", "QUIT"}
            mailer.stop()

    def test_plaintext_auth_logs_in_when_explicitly_allowed(self) -> None:
        """D8: with allow_plaintext_auth=True and tls='none' the credentials reach a
        relay offering AUTH without TLS, and the mail is delivered."""
        with SmtpServer(auth_users={"app": "secret"}, auth_require_tls=False) as server:
            mailer = mailer_for(
                server,
                tls="none",
                username="app",
                password="secret",
                allow_plaintext_auth=True,
            )
            message_id = mailer.send_email(message("a@example.test"))
            mailer.run_once()
            assert mailer.query_status(message_id).succeeded
            [received] = server.handler.messages
            assert (received.tls, received.auth_login) == (False, "app")
            mailer.stop()

    def test_a_session_without_consent_never_sends_credentials_in_plaintext(
        self,
    ) -> None:
        """D8: a session asked to log in without TLS and without plaintext_auth
        fails before AUTH; the relay never sees the credentials."""
        with SmtpServer(auth_users={"app": "secret"}, auth_require_tls=False) as server:
            with pytest.raises(SessionFailure, match="without TLS"):
                SmtpSession.open(
                    host=server.host,
                    address=server.host,
                    port=server.port,
                    helo_name="client.example.test",
                    timeouts=Timeouts.uniform(5),
                    tls=TlsPolicy("none"),
                    credentials=("app", "secret"),
                )
            server.handler.wait_until(
                lambda: all(s.closed for s in server.handler.sessions)
            )
            assert "AUTH" not in server.handler.commands

    def test_a_session_that_cannot_be_opened_keeps_its_cause(self) -> None:
        """SessionFailure is chained to the error underneath (a refused connection,
        a STARTTLS handshake the server broke off), and names the server once a
        connection was made."""

        def open_session(port: int, tls: TlsPolicy) -> SmtpSession:
            return SmtpSession.open(
                host="127.0.0.1",
                address="127.0.0.1",
                port=port,
                helo_name="client.example.test",
                timeouts=Timeouts.uniform(5),
                tls=tls,
            )

        with refusing() as port, pytest.raises(SessionFailure) as refused:
            open_session(port, TlsPolicy("none"))
        assert isinstance(refused.value.__cause__, ConnectionRefusedError)
        assert (refused.value.connected, refused.value.remote) == (False, None)

        def no_handshake(conv: Conversation, line: str) -> str:
            conv.send("220 2.0.0 go ahead")
            conv.close()
            return ""

        server = ScriptedServer(
            normal(ehlo_lines=("STARTTLS",), on_starttls=no_handshake)
        )
        required = TlsPolicy("required", context=ssl.create_default_context())
        with server, pytest.raises(SessionFailure, match="TLS with") as broken:
            open_session(server.port, required)
        assert broken.value.tls_failed and broken.value.__cause__ is not None
        assert broken.value.remote is not None
        assert broken.value.remote.port == server.port

    def test_wrong_credentials_defer(self, ca: trustme.CA) -> None:
        """A relay refusing the credentials defers (the sender's problem, not the
        recipient's)."""
        with SmtpServer(
            starttls_context=server_context(ca, "127.0.0.1"),
            auth_users={"app": "right"},
        ) as server:
            mailer = mailer_for(
                server,
                tls="starttls",
                ssl_context=client_context(ca),
                username="app",
                password="wrong",
            )
            message_id = mailer.send_email(message("a@example.test"))
            mailer.run_once()
            [r] = mailer.query_status(message_id).recipients
            assert (r.result, r.status_code) == (DeliveryResult.DEFERRED, "4.7.8")
            assert "wrong" not in (r.detail or "")
            mailer.stop()


class TestHosts:
    @pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback here")
    def test_a_relay_at_ipv6_loopback_is_delivered_to(self) -> None:
        """RelayConfig(host="::1") dials the IPv6 address and delivers."""
        with SmtpServer(host="::1") as server:
            mailer = mailer_for(server)
            message_id = mailer.send_email(message("a@example.test"))
            mailer.run_once()
            [r] = mailer.query_status(message_id).recipients
            assert r.result is DeliveryResult.DELIVERED
            assert r.remote is not None and r.remote.address == "::1"
            assert server.handler.messages[0].peer_host == "::1"
            mailer.stop()

    @pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback here")
    def test_a_bracketed_ipv6_relay_is_verified_against_its_address(
        self, ca: trustme.CA
    ) -> None:
        """host="[::1]" dials ::1 and TLS checks the certificate's IP address ::1."""
        with SmtpServer(
            host="::1",
            starttls_context=server_context(ca, "::1"),
            require_starttls=True,
        ) as server:
            mailer = Mailstrom(
                relay_config(
                    "[::1]", server.port, tls="starttls", ssl_context=client_context(ca)
                ),
                clock=lambda: NOW,
            )
            message_id = mailer.send_email(message("a@example.test"))
            mailer.run_once()
            [r] = mailer.query_status(message_id).recipients
            assert r.result is DeliveryResult.DELIVERED
            assert r.remote is not None and r.remote.tls_verified
            assert (r.remote.host, r.remote.address) == ("::1", "::1")
            mailer.stop()

    @pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback here")
    def test_an_ipv6_relay_is_bracketed_in_details(self) -> None:
        """A detail naming an IPv6 relay writes "[::1]:port", so the port stands
        apart from the address."""
        with refusing("::1") as port:
            mailer = Mailstrom(relay_config("::1", port), clock=lambda: NOW)
            message_id = mailer.send_email(message("a@example.test"))
            mailer.run_once()
            [r] = mailer.query_status(message_id).recipients
            assert (r.result, r.status_code) == (DeliveryResult.DEFERRED, "4.4.1")
            assert f"[::1]:{port}" in (r.detail or "")
            mailer.stop()

    def test_a_bracketed_ipv4_relay_is_dialled_bare_and_verified(
        self, ca: trustme.CA
    ) -> None:
        """host="[127.0.0.1]" dials 127.0.0.1 and TLS checks the IP address
        127.0.0.1 in the certificate, not the bracketed text."""
        with SmtpServer(
            starttls_context=server_context(ca, "127.0.0.1"), require_starttls=True
        ) as server:
            mailer = Mailstrom(
                relay_config(
                    "[127.0.0.1]",
                    server.port,
                    tls="starttls",
                    ssl_context=client_context(ca),
                ),
                clock=lambda: NOW,
            )
            message_id = mailer.send_email(message("a@example.test"))
            mailer.run_once()
            [r] = mailer.query_status(message_id).recipients
            assert r.result is DeliveryResult.DELIVERED
            assert r.remote is not None and r.remote.tls_verified
            assert (r.remote.host, r.remote.address) == ("127.0.0.1", "127.0.0.1")
            mailer.stop()


def test_ssl_context_is_used_as_given() -> None:
    """A caller's context decides verification (here: the default, verifying one)."""
    context = ssl.create_default_context()
    relay = RelayConfig(host="smtp.example.org", ssl_context=context)
    assert relay.tls_context() is context
