"""Connection reuse and PIPELINING (RFC 2920), against loopback servers."""

from __future__ import annotations

import pytest
from support.scripted import Conversation, ScriptedServer, normal
from support.smtpd import RecordingHandler, SmtpServer

from mailstrom_py import (
    Config,
    DeliveryResult,
    Mailstrom,
    RelayConfig,
    RetryPolicy,
    Timeouts,
)

NOW = 1_700_000_000.0


def mailer_for(server: SmtpServer | ScriptedServer, **options: object) -> Mailstrom:
    config = Config(
        helo_name="client.example.test",
        delivery=RelayConfig(host=server.host, port=server.port, tls="none"),
        retry=RetryPolicy(initial_delay=60, jitter=0.0),
        timeouts=Timeouts.uniform(5),
        **options,  # type: ignore[arg-type]
    )
    return Mailstrom(config, clock=lambda: NOW)


def message(to: str, n: int = 0) -> bytes:
    return f"From: s@example.test\r\nTo: {to}\r\nSubject: {n}\r\n\r\nbody\r\n".encode()


class TestReuse:
    def test_messages_share_one_connection(self) -> None:
        """Consecutive messages to the relay go over one connection, each delivered."""
        with SmtpServer() as server:
            mailer = mailer_for(server)
            ids = [mailer.send_email(message("a@example.test", n)) for n in range(5)]
            assert mailer.run_once() == 5
            assert all(mailer.query_status(i).succeeded for i in ids)
            assert server.handler.connections == 1
            assert len(server.handler.messages) == 5
            mailer.stop()

    def test_the_message_limit_opens_new_connections(self) -> None:
        """After session_max_messages messages a connection is closed and replaced."""
        with SmtpServer() as server:
            mailer = mailer_for(server, session_max_messages=2)
            for n in range(5):
                mailer.send_email(message("a@example.test", n))
            mailer.run_once()
            assert server.handler.connections == 3
            assert len(server.handler.messages) == 5
            mailer.stop()

    def test_a_connection_closed_while_idle_is_replaced(self) -> None:
        """A kept connection the server dropped costs a new connection, not the
        message: each message arrives exactly once."""

        def hang_up_after_dot(conv: Conversation, body: bytes) -> str:
            conv.send("250 2.0.0 ok")
            conv.close()
            return ""

        with ScriptedServer(normal(on_dot=hang_up_after_dot)) as server:
            mailer = mailer_for(server)
            first = mailer.send_email(message("a@example.test", 1))
            mailer.run_once()
            server.wait_idle()
            second = mailer.send_email(message("a@example.test", 2))
            mailer.run_once()
            assert mailer.query_status(first).succeeded
            [r] = mailer.query_status(second).recipients
            assert (r.result, r.attempts) == (DeliveryResult.DELIVERED, 1)
            assert server.connections == 2
            assert len(server.bodies) == 2
            assert server.errors == []
            mailer.stop()

    @pytest.mark.parametrize(
        "ehlo_lines", [("PIPELINING",), ()], ids=["pipelined", "one-by-one"]
    )
    def test_a_connection_that_gave_an_unparseable_reply_is_not_reused(
        self, ehlo_lines: tuple[str, ...]
    ) -> None:
        """A reply to MAIL with no reply code (then a stray line that answers
        nothing) leaves the conversation out of step: that connection is closed,
        and the next message goes on a new one and is delivered."""
        garbage = ["XYZ garbage\r\n250 2.1.0 stray"]

        def on_mail(conv: Conversation, line: str) -> str | None:
            return garbage.pop() if garbage else None

        with ScriptedServer(normal(on_mail=on_mail, ehlo_lines=ehlo_lines)) as server:
            mailer = mailer_for(server)
            first = mailer.send_email(message("a@example.test", 1))
            mailer.run_once()
            second = mailer.send_email(message("a@example.test", 2))
            mailer.run_once()
            [r] = mailer.query_status(first).recipients
            assert r.last_reply is not None and r.last_reply.code == -1
            [r] = mailer.query_status(second).recipients
            assert (r.result, r.attempts) == (DeliveryResult.DELIVERED, 1)
            assert server.connections == 2
            assert len(server.bodies) == 1
            assert server.errors == []
            mailer.stop()


def pipelining_only(conv: Conversation) -> None:
    """A server that answers nothing of a transaction until it has read its DATA
    line: a client that waits for each reply before the next command stalls."""
    conv.send("220 pipe.test ESMTP")
    conv.expect("EHLO")
    conv.send("250-pipe.test\r\n250 PIPELINING")
    while True:
        line = conv.readline()
        if not line or line.upper().startswith("QUIT"):
            conv.send("221 bye")
            return
        batch = [line.strip()]
        while not batch[-1].upper().startswith("DATA"):
            batch.append(conv.readline().strip())
        for command in batch[:-1]:
            refused = command.upper().startswith("RCPT") and "p5" in command
            conv.send("550 5.1.1 no such user" if refused else "250 ok")
        conv.send("354 go on")
        conv.read_data()
        conv.send("250 2.0.0 queued")


class TestPipelining:
    def test_commands_are_pipelined_when_offered(self) -> None:
        """With PIPELINING, MAIL, the RCPTs and DATA go before any reply is read,
        and each RCPT reply still decides its own recipient."""
        with ScriptedServer(pipelining_only) as server:
            mailer = mailer_for(server)
            message_id = mailer.send_email(
                message("a@example.test, p5x@example.test, b@example.test")
            )
            mailer.run_once()
            results = [r.result for r in mailer.query_status(message_id).recipients]
            assert results == [
                DeliveryResult.DELIVERED,
                DeliveryResult.FAILED,
                DeliveryResult.DELIVERED,
            ]
            assert len(server.bodies) == 1
            assert server.errors == []
            mailer.stop()

    def test_a_refused_mail_command_consumes_the_batch(self) -> None:
        """A pipelined MAIL refused with 5xx fails every recipient and leaves the
        connection usable for the next message."""
        refuse_once = ["550 5.7.1 not from you"]

        def on_mail(conv: Conversation, line: str) -> str | None:
            return refuse_once.pop() if refuse_once else None

        def on_rcpt(conv: Conversation, line: str) -> str | None:
            return "503 5.5.1 need MAIL first" if "first@" in line else None

        def on_data(conv: Conversation, line: str) -> str | None:
            last_rcpt = [c for c in conv.lines if c.startswith("RCPT")][-1]
            return "503 5.5.1 no valid recipients" if "first@" in last_rcpt else None

        handler = normal(on_mail=on_mail, on_rcpt=on_rcpt, on_data=on_data)
        with ScriptedServer(handler) as server:
            mailer = mailer_for(server)
            first = mailer.send_email(message("first@example.test", 1))
            mailer.run_once()
            [r] = mailer.query_status(first).recipients
            assert (r.result, r.status_code) == (DeliveryResult.FAILED, "5.7.1")
            second = mailer.send_email(message("second@example.test", 2))
            mailer.run_once()
            assert mailer.query_status(second).succeeded
            assert server.connections == 1
            mailer.stop()


class TestDestinationConcurrency:
    def test_a_burst_to_one_destination_uses_few_connections(self) -> None:
        """With destination_concurrency=1, four delivery threads take turns on one
        connection to the relay instead of opening four."""
        handler = RecordingHandler(data_delay=0.2)
        with SmtpServer(handler=handler) as server:
            config = Config(
                helo_name="client.example.test",
                delivery=RelayConfig(host=server.host, port=server.port, tls="none"),
                timeouts=Timeouts.uniform(10),
                delivery_threads=4,
                destination_concurrency=1,
            )
            with Mailstrom(config) as mailer:
                ids = [
                    mailer.send_email(message("a@example.test", n)) for n in range(4)
                ]
                assert all(mailer.wait(i, timeout=30).succeeded for i in ids)
            assert handler.connections == 1
            assert handler.transactions == 4

    def test_without_a_tight_limit_threads_deliver_side_by_side(self) -> None:
        """The same burst with the default limit goes over several connections."""
        handler = RecordingHandler(data_delay=0.2)
        with SmtpServer(handler=handler) as server:
            config = Config(
                helo_name="client.example.test",
                delivery=RelayConfig(host=server.host, port=server.port, tls="none"),
                timeouts=Timeouts.uniform(10),
                delivery_threads=4,
            )
            with Mailstrom(config) as mailer:
                ids = [
                    mailer.send_email(message("a@example.test", n)) for n in range(4)
                ]
                assert all(mailer.wait(i, timeout=30).succeeded for i in ids)
            assert handler.connections > 1
