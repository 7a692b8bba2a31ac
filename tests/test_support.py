"""The test servers themselves, checked with stdlib smtplib and dnspython."""

from __future__ import annotations

import smtplib
import socket
import ssl
import threading
import time

import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.resolver
import pytest
import trustme
from support.dnsd import DnsServer, DnsServerFactory, Zone
from support.scripted import (
    ClientClosed,
    Conversation,
    ScriptedServer,
    ScriptedServerFactory,
    drop_after_dot,
    drop_mid_data,
    free_port,
    greeting,
    listen_backlog_full,
    long_reply_line,
    malformed_reply,
    normal,
    refusing,
    reply_421_after_rcpts,
    silent_after_dot,
    tarpit,
)
from support.smtpd import RecordingHandler, SmtpServer, SmtpServerFactory
from support.tls import self_signed_server_context, server_context

CLIENT = "client.test"
BODY = (
    b"From: a@x.test\r\nTo: b@y.test\r\nSubject: dots\r\n\r\n"
    b".a line that starts with a dot\r\n"
    b"..two dots\r\n"
    b"a bare\nLF inside a line\r\n"
    b".\r\n"  # would end DATA without dot-stuffing
    b"end\r\n"
)


def connect(host: str, port: int, *, timeout: float = 5.0) -> smtplib.SMTP:
    return smtplib.SMTP(host, port, local_hostname=CLIENT, timeout=timeout)


def send(
    server: SmtpServer | ScriptedServer,
    rcpts: list[str],
    body: bytes = b"Subject: hi\r\n\r\nhello\r\n",
    *,
    timeout: float = 5.0,
    mail_options: tuple[str, ...] = (),
) -> dict[str, tuple[int, bytes]]:
    with connect(server.host, server.port, timeout=timeout) as client:
        return client.sendmail("a@x.test", rcpts, body, mail_options=mail_options)


class TestRecordingServer:
    def test_records_exact_bytes(self, smtp_server: SmtpServerFactory) -> None:
        """The body arrives byte for byte: leading dots un-stuffed, bare LF kept."""
        server = smtp_server()
        assert send(server, ["b@y.test", "c@y.test"], BODY) == {}
        [message] = server.handler.wait_for(1)
        assert message.data == BODY
        assert message.mail_from == "a@x.test"
        assert message.rcpt_tos == ("b@y.test", "c@y.test")
        assert message.peer_host == "127.0.0.1"
        assert (message.tls, message.auth_login) == (False, None)

    def test_records_mail_options(self, smtp_server: SmtpServerFactory) -> None:
        """ESMTP parameters of MAIL are kept as sent (upper-cased by aiosmtpd)."""
        server = smtp_server()
        send(server, ["b@y.test"], mail_options=("BODY=8BITMIME", "SMTPUTF8"))
        [message] = server.handler.wait_for(1)
        assert message.mail_options == ("BODY=8BITMIME", "SMTPUTF8")

    def test_scripted_recipient_replies(self, smtp_server: SmtpServerFactory) -> None:
        """t4... gets 450, p5... gets 550, others are accepted and delivered."""
        server = smtp_server()
        refused = send(server, ["ok@y.test", "t4busy@y.test", "p5gone@y.test"])
        assert refused == {
            "t4busy@y.test": (450, b"4.2.0 mailbox busy"),
            "p5gone@y.test": (550, b"5.1.1 no such user"),
        }
        [message] = server.handler.wait_for(1)
        assert message.rcpt_tos == ("ok@y.test",)

    def test_all_recipients_refused_means_no_data(
        self, smtp_server: SmtpServerFactory
    ) -> None:
        """With every RCPT refused the client never sends DATA."""
        server = smtp_server()
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            send(server, ["t4a@y.test", "p5b@y.test"])
        assert "DATA" not in server.handler.commands
        assert server.handler.transactions == 0

    def test_too_many_recipients(self, smtp_server: SmtpServerFactory) -> None:
        """RCPTs beyond max_recipients in one transaction get 452 4.5.3."""
        server = smtp_server(handler=RecordingHandler(max_recipients=2))
        refused = send(server, ["a@y.test", "b@y.test", "c@y.test"])
        assert refused == {"c@y.test": (452, b"4.5.3 too many recipients")}
        [message] = server.handler.wait_for(1)
        assert message.rcpt_tos == ("a@y.test", "b@y.test")

    @pytest.mark.parametrize(
        ("reply", "code"), [("451 4.3.0 try later", 451), ("550 5.7.1 go away", 550)]
    )
    def test_mail_reply(
        self, smtp_server: SmtpServerFactory, reply: str, code: int
    ) -> None:
        """mail_reply answers MAIL, so smtplib raises SMTPSenderRefused."""
        server = smtp_server(handler=RecordingHandler(mail_reply=reply))
        with pytest.raises(smtplib.SMTPSenderRefused) as caught:
            send(server, ["b@y.test"])
        assert caught.value.smtp_code == code
        assert "RCPT" not in server.handler.commands

    def test_data_reply_rejects(self, smtp_server: SmtpServerFactory) -> None:
        """data_reply answers the final dot; a refused message is kept apart."""
        server = smtp_server(handler=RecordingHandler(data_reply="554 5.6.0 no"))
        with pytest.raises(smtplib.SMTPDataError) as caught:
            send(server, ["b@y.test"])
        assert caught.value.smtp_code == 554
        assert server.handler.messages == []
        assert [m.rcpt_tos for m in server.handler.rejected] == [("b@y.test",)]
        assert server.handler.transactions == 1

    def test_data_delay_outlasts_client_timeout(
        self, smtp_server: SmtpServerFactory
    ) -> None:
        """A reply delayed past the client's timeout reads as a disconnect."""
        server = smtp_server(handler=RecordingHandler(data_delay=0.5))
        with pytest.raises(smtplib.SMTPServerDisconnected, match="timed out"):
            send(server, ["b@y.test"], timeout=0.1)
        server.handler.wait_until(lambda: server.handler.transactions == 1)

    def test_data_delay_within_timeout(self, smtp_server: SmtpServerFactory) -> None:
        """A delayed reply within the client's timeout still delivers."""
        server = smtp_server(handler=RecordingHandler(data_delay=0.1))
        started = time.monotonic()
        send(server, ["b@y.test"])
        assert time.monotonic() - started >= 0.1
        assert len(server.handler.wait_for(1)) == 1

    def test_sessions_and_commands(self, smtp_server: SmtpServerFactory) -> None:
        """Each connection is one session with its command verbs in order."""
        server = smtp_server()
        send(server, ["b@y.test"])
        with connect(server.host, server.port) as client:
            client.noop()
        server.handler.wait_until(
            lambda: all(s.closed for s in server.handler.sessions)
        )
        first, second = server.handler.sessions
        assert first.verbs == ["EHLO", "MAIL", "RCPT", "DATA", "QUIT"]
        assert second.verbs == ["NOOP", "QUIT"]
        assert server.handler.connections == 2
        assert server.handler.transactions == 1

    def test_wait_for_times_out(self, smtp_server: SmtpServerFactory) -> None:
        """wait_for raises TimeoutError when too few messages arrive."""
        server = smtp_server()
        with pytest.raises(TimeoutError, match="0 of 1"):
            server.handler.wait_for(1, timeout=0.05)

    def test_ehlo_reply_forces_helo(self, smtp_server: SmtpServerFactory) -> None:
        """An EHLO refusal makes smtplib fall back to HELO, and mail still flows."""
        server = smtp_server(handler=RecordingHandler(ehlo_reply="502 5.5.2 no"))
        send(server, ["b@y.test"])
        server.handler.wait_for(1)
        assert server.handler.commands[:2] == ["EHLO", "HELO"]

    def test_ehlo_exclude_and_options(self, smtp_server: SmtpServerFactory) -> None:
        """EHLO keywords follow ehlo_exclude, enable_smtputf8 and data_size_limit."""
        server = smtp_server(
            handler=RecordingHandler(ehlo_exclude={"8bitmime"}),
            enable_smtputf8=False,
            data_size_limit=1000,
        )
        with connect(server.host, server.port) as client:
            client.ehlo()
            assert set(client.esmtp_features) == {"size", "help"}
            assert client.esmtp_features["size"] == "1000"

    def test_size_limit_refuses_at_mail(self, smtp_server: SmtpServerFactory) -> None:
        """A message above data_size_limit is refused with 552 at MAIL."""
        server = smtp_server(data_size_limit=100)
        with pytest.raises(smtplib.SMTPSenderRefused) as caught:
            send(server, ["b@y.test"], b"x" * 200 + b"\r\n")
        assert caught.value.smtp_code == 552
        assert "DATA" not in server.handler.commands

    def test_restart_on_same_port(self, smtp_server: SmtpServerFactory) -> None:
        """A server can be restarted on the port of one that just stopped."""
        first = SmtpServer()
        with first:
            send(first, ["b@y.test"])
        second = smtp_server(port=first.port)
        send(second, ["b@y.test"])
        assert len(second.handler.wait_for(1)) == 1

    def test_only_loopback_hosts(self) -> None:
        """Binding anything but a numeric loopback address is refused."""
        for host in ("0.0.0.0", "localhost", "::"):
            with pytest.raises(ValueError, match="loopback"):
                SmtpServer(host=host).start()


class TestRecordingServerTls:
    def test_starttls_verifies_with_test_ca(
        self,
        smtp_server: SmtpServerFactory,
        tls_server_context: ssl.SSLContext,
        tls_client_context: ssl.SSLContext,
    ) -> None:
        """STARTTLS with the test CA verifies, and the message is marked TLS."""
        server = smtp_server(starttls_context=tls_server_context)
        with connect(server.host, server.port) as client:
            client.starttls(context=tls_client_context)
            client.sendmail("a@x.test", ["b@y.test"], b"hi\r\n")
        [message] = server.handler.wait_for(1)
        assert message.tls
        assert server.handler.sessions[0].tls
        assert server.handler.commands[:3] == ["EHLO", "STARTTLS", "EHLO"]

    def test_unrelated_certificate_fails_verification(
        self, smtp_server: SmtpServerFactory, tls_client_context: ssl.SSLContext
    ) -> None:
        """A certificate from another CA fails, and no AUTH or MAIL follows."""
        server = smtp_server(
            starttls_context=self_signed_server_context("127.0.0.1"),
            auth_users={"user": "secret"},
        )
        with connect(server.host, server.port) as client:
            with pytest.raises(ssl.SSLCertVerificationError):
                client.starttls(context=tls_client_context)
            client.close()
        server.handler.wait_until(lambda: server.handler.tls_failures == 1)
        assert server.handler.commands == ["EHLO", "STARTTLS"]

    def test_wrong_name_fails_verification(
        self,
        ca: trustme.CA,
        smtp_server: SmtpServerFactory,
        tls_client_context: ssl.SSLContext,
    ) -> None:
        """A test-CA certificate for another name fails hostname checking."""
        server = smtp_server(starttls_context=server_context(ca, "other.test"))
        with connect(server.host, server.port) as client:
            with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
                client.starttls(context=tls_client_context)
            client.close()

    def test_require_starttls(
        self, smtp_server: SmtpServerFactory, tls_server_context: ssl.SSLContext
    ) -> None:
        """Before STARTTLS, MAIL gets 530, and the attempt is still recorded."""
        server = smtp_server(starttls_context=tls_server_context, require_starttls=True)
        with pytest.raises(smtplib.SMTPSenderRefused) as caught:
            send(server, ["b@y.test"])
        assert caught.value.smtp_code == 530
        assert server.handler.commands[:2] == ["EHLO", "MAIL"]

    def test_implicit_tls(
        self,
        smtp_server: SmtpServerFactory,
        tls_server_context: ssl.SSLContext,
        tls_client_context: ssl.SSLContext,
    ) -> None:
        """implicit_tls_context serves TLS from the first byte, like port 465."""
        server = smtp_server(
            implicit_tls_context=tls_server_context, auth_users={"user": "pw"}
        )
        with smtplib.SMTP_SSL(
            server.host,
            server.port,
            local_hostname=CLIENT,
            timeout=5,
            context=tls_client_context,
        ) as client:
            client.login("user", "pw")
            client.sendmail("a@x.test", ["b@y.test"], b"hi\r\n")
        [message] = server.handler.wait_for(1)
        assert (message.tls, message.auth_login) == (True, "user")

    def test_implicit_tls_rejects_unknown_ca(
        self, smtp_server: SmtpServerFactory, tls_client_context: ssl.SSLContext
    ) -> None:
        """A verifying client refuses a port-465 certificate from another CA."""
        server = smtp_server(
            implicit_tls_context=self_signed_server_context("127.0.0.1")
        )
        with pytest.raises(ssl.SSLCertVerificationError):
            smtplib.SMTP_SSL(
                server.host,
                server.port,
                local_hostname=CLIENT,
                timeout=5,
                context=tls_client_context,
            )
        assert server.handler.connections == 0

    @pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
    def test_auth_over_tls(
        self,
        smtp_server: SmtpServerFactory,
        tls_server_context: ssl.SSLContext,
        tls_client_context: ssl.SSLContext,
        mechanism: str,
    ) -> None:
        """AUTH works after STARTTLS, and the login is recorded on the message."""
        server = smtp_server(
            starttls_context=tls_server_context, auth_users={"user": "secret"}
        )
        with connect(server.host, server.port) as client:
            client.ehlo()
            assert not client.has_extn("auth")
            client.starttls(context=tls_client_context)
            client.ehlo()
            assert client.esmtp_features["auth"].split() == ["LOGIN", "PLAIN"]
            client.user, client.password = "user", "secret"
            client.auth(mechanism, getattr(client, f"auth_{mechanism.lower()}"))
            client.sendmail("a@x.test", ["b@y.test"], b"hi\r\n")
        [message] = server.handler.wait_for(1)
        assert message.auth_login == "user"
        assert server.handler.sessions[0].commands[3] == f"AUTH {mechanism}"

    def test_auth_wrong_password(
        self,
        smtp_server: SmtpServerFactory,
        tls_server_context: ssl.SSLContext,
        tls_client_context: ssl.SSLContext,
    ) -> None:
        """A wrong password gets 535."""
        server = smtp_server(
            starttls_context=tls_server_context, auth_users={"user": "secret"}
        )
        with connect(server.host, server.port) as client:
            client.starttls(context=tls_client_context)
            with pytest.raises(smtplib.SMTPAuthenticationError) as caught:
                client.login("user", "wrong")
        assert caught.value.smtp_code == 535

    def test_auth_in_plaintext_when_allowed(
        self, smtp_server: SmtpServerFactory
    ) -> None:
        """auth_require_tls=False offers AUTH without TLS (the D8 setup)."""
        server = smtp_server(auth_users={"user": "pw"}, auth_require_tls=False)
        with connect(server.host, server.port) as client:
            client.login("user", "pw")

    def test_no_auth_without_users(
        self,
        smtp_server: SmtpServerFactory,
        tls_server_context: ssl.SSLContext,
        tls_client_context: ssl.SSLContext,
    ) -> None:
        """Without auth_users no AUTH is offered, even under TLS."""
        server = smtp_server(starttls_context=tls_server_context)
        with connect(server.host, server.port) as client:
            client.starttls(context=tls_client_context)
            client.ehlo()
            assert not client.has_extn("auth")


class TestSharedPort:
    def test_two_servers_on_one_port(self, smtp_server: SmtpServerFactory) -> None:
        """Servers on 127.0.0.2 and 127.0.0.3 share a port and stay separate."""
        second = smtp_server(host="127.0.0.2")
        third = smtp_server(host="127.0.0.3", port=second.port)
        assert second.port == third.port
        send(second, ["two@y.test"])
        send(third, ["three@y.test"])
        assert [m.rcpt_tos for m in second.handler.wait_for(1)] == [("two@y.test",)]
        assert [m.rcpt_tos for m in third.handler.wait_for(1)] == [("three@y.test",)]

    def test_refused_next_to_a_server(self, smtp_server: SmtpServerFactory) -> None:
        """One port can refuse on 127.0.0.2 and serve on 127.0.0.3."""
        server = smtp_server(host="127.0.0.3")
        with refusing("127.0.0.2", server.port) as port:
            with pytest.raises(ConnectionRefusedError):
                connect("127.0.0.2", port)
            send(server, ["b@y.test"])

    def test_ipv6_loopback(self, smtp_server: SmtpServerFactory) -> None:
        """A server on ::1 works."""
        server = smtp_server(host="::1")
        send(server, ["b@y.test"])
        assert server.handler.wait_for(1)[0].peer_host == "::1"


class TestScriptedServer:
    @pytest.mark.parametrize("reply", ["554 5.3.2 no service", "421 4.3.2 busy"])
    def test_greeting(self, scripted_server: ScriptedServerFactory, reply: str) -> None:
        """A non-220 greeting makes smtplib raise SMTPConnectError."""
        server = scripted_server(greeting(reply))
        with pytest.raises(smtplib.SMTPConnectError) as caught:
            connect(server.host, server.port)
        assert caught.value.smtp_code == int(reply[:3])

    def test_tarpit(self, scripted_server: ScriptedServerFactory) -> None:
        """A server that never greets gives SMTPServerDisconnected on timeout."""
        server = scripted_server(tarpit())
        with pytest.raises(smtplib.SMTPServerDisconnected, match="timed out"):
            connect(server.host, server.port, timeout=0.1)

    def test_stop_wakes_blocked_handlers(self) -> None:
        """Stopping ends a tarpit that still has its client connected."""
        server = ScriptedServer(tarpit())
        with server, socket.create_connection(server.address, timeout=5):
            server.wait_for_connections(1)
            started = time.monotonic()
            server.stop()
            assert time.monotonic() - started < 2
        assert server.errors == []

    def test_normal_delivers(self, scripted_server: ScriptedServerFactory) -> None:
        """normal() takes a message and keeps its exact body and commands."""
        server = scripted_server(normal())
        assert send(server, ["b@y.test"], BODY) == {}
        server.wait_idle()
        assert server.bodies == [BODY]
        assert server.verbs == ["EHLO", "MAIL", "RCPT", "DATA", "QUIT"]

    def test_hooks_replace_replies(
        self, scripted_server: ScriptedServerFactory
    ) -> None:
        """A hook's reply replaces the default one; None keeps the default."""

        def on_rcpt(conv: Conversation, line: str) -> str | None:
            return "550 5.1.1 nope" if "bad" in line else None

        server = scripted_server(normal(on_rcpt=on_rcpt))
        refused = send(server, ["good@y.test", "bad@y.test"])
        assert refused == {"bad@y.test": (550, b"5.1.1 nope")}

    def test_normal_idle_timeout(self, scripted_server: ScriptedServerFactory) -> None:
        """normal() answers 421 and hangs up after idle_timeout without commands."""
        server = scripted_server(normal(idle_timeout=0.1))
        with connect(server.host, server.port) as client:
            client.ehlo()
            server.wait_idle()
            assert client.noop()[0] == 421

    def test_drop_after_dot(self, scripted_server: ScriptedServerFactory) -> None:
        """Closing after the dot reads as a disconnect, though the body arrived."""
        server = scripted_server(drop_after_dot())
        with pytest.raises(smtplib.SMTPServerDisconnected):
            send(server, ["b@y.test"])
        server.wait_idle()
        assert len(server.bodies) == 1

    def test_silent_after_dot(self, scripted_server: ScriptedServerFactory) -> None:
        """Silence after the dot times out as SMTPServerDisconnected."""
        server = scripted_server(silent_after_dot())
        with pytest.raises(smtplib.SMTPServerDisconnected, match="timed out"):
            send(server, ["b@y.test"], timeout=0.2)
        server.wait_idle()
        assert len(server.bodies) == 1

    def test_drop_mid_data(self, scripted_server: ScriptedServerFactory) -> None:
        """Closing after 1 KB of a large body reads as a disconnect, no body kept."""
        server = scripted_server(drop_mid_data(1024))
        body = b"Subject: big\r\n\r\n" + (b"y" * 78 + b"\r\n") * 20_000
        with pytest.raises(smtplib.SMTPServerDisconnected):
            send(server, ["b@y.test"], body)
        server.wait_idle()
        assert server.bodies == []

    def test_421_after_rcpts(self, scripted_server: ScriptedServerFactory) -> None:
        """A 421 at the third RCPT closes; smtplib omits the untried recipient."""
        server = scripted_server(reply_421_after_rcpts(2))
        with pytest.raises(smtplib.SMTPRecipientsRefused) as caught:
            send(server, ["a@y.test", "b@y.test", "c@y.test", "d@y.test"])
        assert caught.value.recipients == {
            "c@y.test": (421, b"4.3.2 service shutting down")
        }
        server.wait_idle()
        assert "DATA" not in server.verbs

    def test_long_reply_line(self, scripted_server: ScriptedServerFactory) -> None:
        """A reply line over 8192 bytes makes smtplib raise 500 Line too long."""
        server = scripted_server(long_reply_line())
        with pytest.raises(smtplib.SMTPResponseException) as caught:
            send(server, ["b@y.test"])
        assert caught.value.smtp_code == 500
        assert "too long" in str(caught.value.smtp_error)

    def test_malformed_reply(self, scripted_server: ScriptedServerFactory) -> None:
        """A reply without a numeric code reaches smtplib as code -1."""
        server = scripted_server(malformed_reply("XYZ", at="RCPT"))
        with pytest.raises(smtplib.SMTPRecipientsRefused) as caught:
            send(server, ["b@y.test"])
        assert caught.value.recipients["b@y.test"][0] == -1

    def test_malformed_reply_then_close(
        self, scripted_server: ScriptedServerFactory
    ) -> None:
        """close=True hangs up right after the odd reply."""
        server = scripted_server(malformed_reply("250 ok", at="DOT", close=True))
        with connect(server.host, server.port) as client:
            assert client.sendmail("a@x.test", ["b@y.test"], b"hi\r\n") == {}
            with pytest.raises(smtplib.SMTPServerDisconnected):
                client.noop()

    def test_starttls(
        self,
        scripted_server: ScriptedServerFactory,
        tls_server_context: ssl.SSLContext,
        tls_client_context: ssl.SSLContext,
    ) -> None:
        """normal(starttls_context=...) performs STARTTLS as a server."""
        server = scripted_server(normal(starttls_context=tls_server_context))
        with connect(server.host, server.port) as client:
            client.starttls(context=tls_client_context)
            client.sendmail("a@x.test", ["b@y.test"], b"hi\r\n")
        server.wait_idle()
        [conv] = server.conversations
        assert conv.tls
        assert server.bodies == [b"hi\r\n"]

    def test_starttls_refused(
        self,
        scripted_server: ScriptedServerFactory,
        tls_server_context: ssl.SSLContext,
        tls_client_context: ssl.SSLContext,
    ) -> None:
        """An on_starttls hook can answer 454 instead of starting TLS."""
        server = scripted_server(
            normal(
                starttls_context=tls_server_context,
                on_starttls=lambda conv, line: "454 4.7.0 TLS not available",
            )
        )
        with connect(server.host, server.port) as client:
            with pytest.raises(smtplib.SMTPResponseException) as caught:
                client.starttls(context=tls_client_context)
            assert caught.value.smtp_code == 454

    def test_starttls_not_offered(
        self,
        scripted_server: ScriptedServerFactory,
        tls_client_context: ssl.SSLContext,
    ) -> None:
        """Without a context STARTTLS is not advertised."""
        server = scripted_server(normal())
        with (
            connect(server.host, server.port) as client,
            pytest.raises(smtplib.SMTPNotSupportedError),
        ):
            client.starttls(context=tls_client_context)

    def test_handler_errors_are_recorded(self) -> None:
        """An exception escaping a handler lands in errors, for the test to see."""

        def script(conv: Conversation) -> None:
            conv.send("220 hi")
            conv.expect("HELO")

        with (
            ScriptedServer(script) as server,
            socket.create_connection(server.address, timeout=5) as client,
        ):
            client.sendall(b"EHLO client.test\r\n")
            server.wait_for_connections(1)
            server.wait_idle()
        [error] = server.errors
        assert isinstance(error, AssertionError)
        assert "EHLO" in str(error)

    def test_expect_at_end_of_stream(self) -> None:
        """expect() raises ClientClosed when the client has gone."""

        def script(conv: Conversation) -> None:
            conv.send("220 hi")
            conv.expect("EHLO")

        with ScriptedServer(script) as server:
            socket.create_connection(server.address, timeout=5).close()
            server.wait_for_connections(1)
            server.wait_idle()
        assert [type(error) for error in server.errors] == [ClientClosed]


class TestPorts:
    def test_refused_port(self, refused_port: int) -> None:
        """Connecting to refused_port is refused at once."""
        with pytest.raises(ConnectionRefusedError):
            connect("127.0.0.1", refused_port)

    def test_free_port_is_bindable(self, free_port: int) -> None:
        """free_port can be listened on straight away."""
        with SmtpServer(port=free_port) as server:
            send(server, ["b@y.test"])

    def test_free_port_on_other_host(self) -> None:
        """free_port works on any loopback address."""
        assert free_port("127.0.0.5") > 0

    @pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1"])
    def test_backlog_full_times_out(self, host: str) -> None:
        """A connect to a full accept queue times out instead of failing fast."""
        with listen_backlog_full(host) as address:
            for _ in range(2):
                with pytest.raises(TimeoutError):
                    socket.create_connection(address, timeout=0.1)

    def test_backlog_full_fixture_with_smtplib(
        self, backlog_full_address: tuple[str, int]
    ) -> None:
        """smtplib's connect raises TimeoutError (an OSError) there."""
        host, port = backlog_full_address
        with pytest.raises(TimeoutError):
            connect(host, port, timeout=0.1)


class TestDnsServer:
    @pytest.fixture
    def zone(self) -> Zone:
        zone = Zone()
        zone.add("example.test", "MX", "10 mx1.example.test.", ttl=300)
        zone.add("example.test", "MX", "20 mx2.example.test")
        zone.add("mx1.example.test", "A", "127.0.0.2")
        zone.add("mx1.example.test", "AAAA", "::1")
        zone.add("nullmx.test", "MX", "0 .")
        zone.add("sts.test", "TXT", "v=STSv1; id=20240101")
        zone.add("alias.test", "CNAME", "hop.test")
        zone.add("hop.test", "CNAME", "mx1.example.test")
        zone.servfail("sf.test")
        zone.refused("refused.test")
        zone.drop("drop.test")
        return zone

    @pytest.fixture
    def server(self, dns_server: DnsServerFactory, zone: Zone) -> DnsServer:
        return dns_server(zone)

    def test_mx(self, server: DnsServer) -> None:
        """MX answers carry preference and exchange."""
        answer = server.resolver().resolve("example.test", "MX")
        assert sorted((mx.preference, mx.exchange.to_text()) for mx in answer) == [
            (10, "mx1.example.test."),
            (20, "mx2.example.test."),
        ]
        assert answer.rrset is not None
        assert answer.rrset.ttl == 300

    def test_addresses_and_txt(self, server: DnsServer) -> None:
        """A, AAAA and TXT records come back as added."""
        resolver = server.resolver()
        assert [r.address for r in resolver.resolve("mx1.example.test", "A")] == [
            "127.0.0.2"
        ]
        assert [r.address for r in resolver.resolve("mx1.example.test", "AAAA")] == [
            "::1"
        ]
        [txt] = resolver.resolve("sts.test", "TXT")
        assert txt.strings == (b"v=STSv1; id=20240101",)

    def test_null_mx(self, server: DnsServer) -> None:
        """A null MX answers preference 0, exchange root."""
        [mx] = server.resolver().resolve("nullmx.test", "MX")
        assert (mx.preference, mx.exchange) == (0, dns.name.root)

    def test_cname_chain(self, server: DnsServer) -> None:
        """A CNAME chain is answered with every hop plus the target's records."""
        answer = server.resolver().resolve("alias.test", "A")
        assert answer.canonical_name.to_text() == "mx1.example.test."
        assert [r.address for r in answer] == ["127.0.0.2"]
        assert len(answer.response.answer) == 3

    def test_nxdomain(self, server: DnsServer) -> None:
        """An unknown name is NXDOMAIN."""
        with pytest.raises(dns.resolver.NXDOMAIN):
            server.resolver().resolve("unknown.test", "MX")

    def test_nodata(self, server: DnsServer) -> None:
        """A name with other types only is NODATA (NoAnswer), with an SOA."""
        with pytest.raises(dns.resolver.NoAnswer) as caught:
            server.resolver().resolve("example.test", "A")
        response = caught.value.kwargs["response"]
        assert response.rcode() == dns.rcode.NOERROR
        assert [rrset.rdtype for rrset in response.authority] == [dns.rdatatype.SOA]

    def test_empty_non_terminal_is_nodata(self, server: DnsServer) -> None:
        """A name with records only below it exists (NoAnswer, not NXDOMAIN)."""
        with pytest.raises(dns.resolver.NoAnswer):
            server.resolver().resolve("test", "MX")

    @pytest.mark.parametrize("name", ["sf.test", "refused.test"])
    def test_servfail_and_refused(self, server: DnsServer, name: str) -> None:
        """SERVFAIL and REFUSED end in NoNameservers."""
        with pytest.raises(dns.resolver.NoNameservers):
            server.resolver().resolve(name, "MX")

    def test_drop(self, server: DnsServer) -> None:
        """A dropped query ends in LifetimeTimeout."""
        with pytest.raises(dns.resolver.LifetimeTimeout):
            server.resolver(timeout=0.1, lifetime=0.2).resolve("drop.test", "MX")
        assert ("drop.test", "MX") in server.queries

    def test_behaviour_per_type(self, server: DnsServer, zone: Zone) -> None:
        """A behaviour can target one type and leave the others answering."""
        zone.servfail("example.test", "TXT")
        with pytest.raises(dns.resolver.NoNameservers):
            server.resolver().resolve("example.test", "TXT")
        assert len(server.resolver().resolve("example.test", "MX")) == 2

    def test_zone_changes_while_running(self, server: DnsServer, zone: Zone) -> None:
        """Records and behaviours can change between queries."""
        resolver = server.resolver()
        zone.servfail("example.test")
        with pytest.raises(dns.resolver.NoNameservers):
            resolver.resolve("example.test", "MX")
        zone.clear_behaviour("example.test")
        zone.set("example.test", "MX", "5 other.test")
        [mx] = resolver.resolve("example.test", "MX")
        assert mx.preference == 5
        zone.remove("sts.test")
        with pytest.raises(dns.resolver.NXDOMAIN):
            resolver.resolve("sts.test", "TXT")

    def test_truncation_falls_back_to_tcp(self, server: DnsServer, zone: Zone) -> None:
        """An answer too big for UDP is truncated, then fetched over TCP."""
        for n in range(40):
            zone.add("big.test", "TXT", f"{n:03d}" + "x" * 200)
        zone.add("forced.test", "A", "127.0.0.9").truncate("forced.test")
        resolver = server.resolver()
        assert len(resolver.resolve("big.test", "TXT")) == 40
        assert [r.address for r in resolver.resolve("forced.test", "A")] == [
            "127.0.0.9"
        ]
        assert server.tcp_queries == [("big.test", "TXT"), ("forced.test", "A")]

    @pytest.mark.parametrize("use_edns", [False, 0])
    def test_wire_details(self, server: DnsServer, use_edns: bool | int) -> None:
        """Answers copy the id, set AA, and echo EDNS when the query used it."""
        query = dns.message.make_query("example.test", "MX", use_edns=use_edns)
        response = dns.query.udp(query, server.host, port=server.port, timeout=2)
        assert response.id == query.id
        assert response.flags & dns.flags.AA
        assert response.edns == query.edns

    def test_signed_zone_answers_carry_ad_when_asked(
        self, server: DnsServer, zone: Zone
    ) -> None:
        """A signed zone's answers, negative ones too, carry AD for a query with DO."""
        zone.sign("example.test")
        for name, rdtype in [
            ("example.test", "MX"),
            ("example.test", "A"),
            ("nothing.example.test", "A"),
        ]:
            query = dns.message.make_query(name, rdtype, want_dnssec=True)
            response = dns.query.udp(query, server.host, port=server.port, timeout=2)
            assert response.flags & dns.flags.AD, (name, rdtype)

    def test_ad_needs_a_signed_zone_and_a_query_asking_for_it(
        self, server: DnsServer, zone: Zone
    ) -> None:
        """No AD without DO or AD in the query, outside the signed zone, or after unsign."""
        zone.sign("example.test")

        def ad(name: str, **kwargs: object) -> bool:
            query = dns.message.make_query(name, "MX", **kwargs)  # type: ignore[arg-type]
            response = dns.query.udp(query, server.host, port=server.port, timeout=2)
            return bool(response.flags & dns.flags.AD)

        assert not ad("example.test")
        assert ad("example.test", flags=dns.flags.RD | dns.flags.AD)
        assert not ad("nullmx.test", want_dnssec=True)
        zone.unsign("example.test")
        assert not ad("example.test", want_dnssec=True)

    def test_a_delayed_answer_holds_up_no_other(
        self, server: DnsServer, zone: Zone
    ) -> None:
        """A delayed name is answered late, over UDP and TCP, while another
        query sent meanwhile is answered at once."""
        zone.delay("sts.test", 1.0, "TXT")
        late: list[float] = []

        def ask() -> None:
            began = time.monotonic()
            server.resolver(timeout=3, lifetime=3).resolve("sts.test", "TXT")
            late.append(time.monotonic() - began)

        asker = threading.Thread(target=ask)
        asker.start()
        server.wait_for_queries(1)
        began = time.monotonic()
        server.resolver().resolve("example.test", "MX")
        assert time.monotonic() - began < 0.5
        asker.join()
        assert 0.9 < late[0] < 2.5
        query = dns.message.make_query("sts.test", "TXT")
        began = time.monotonic()
        dns.query.tcp(query, server.host, port=server.port, timeout=3)
        assert 0.9 < time.monotonic() - began < 2.5
        zone.delay("sts.test", 0, "TXT")
        began = time.monotonic()
        server.resolver().resolve("sts.test", "TXT")
        assert time.monotonic() - began < 0.5

    def test_queries_are_recorded(self, server: DnsServer) -> None:
        """Every query is logged as (name, type), lower case, no final dot."""
        resolver = server.resolver()
        resolver.resolve("Example.TEST", "MX")
        resolver.resolve("mx1.example.test", "A")
        assert server.wait_for_queries(2) == [
            ("example.test", "MX"),
            ("mx1.example.test", "A"),
        ]

    def test_ipv6_and_shared_port(self, dns_server: DnsServerFactory) -> None:
        """Servers on ::1 and 127.0.0.2 can share a port with different zones."""
        v6 = dns_server(Zone().add("a.test", "A", "127.0.0.6"), host="::1")
        v4 = dns_server(
            Zone().add("a.test", "A", "127.0.0.7"), host="127.0.0.2", port=v6.port
        )
        assert [r.address for r in v6.resolver().resolve("a.test", "A")] == [
            "127.0.0.6"
        ]
        assert [r.address for r in v4.resolver().resolve("a.test", "A")] == [
            "127.0.0.7"
        ]

    def test_concurrent_queries(self, server: DnsServer) -> None:
        """Several threads resolving at once all get answers."""
        results: list[int] = []

        def resolve() -> None:
            answer = server.resolver().resolve("example.test", "MX")
            results.append(len(answer))

        threads = [threading.Thread(target=resolve) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(5)
        assert results == [2] * 8

    def test_not_dns_is_ignored(self, server: DnsServer) -> None:
        """Garbage on the UDP port is ignored without breaking the server."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(b"\x00garbage", (server.host, server.port))
        assert len(server.resolver().resolve("example.test", "MX")) == 2
