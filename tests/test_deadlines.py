"""Every step of an SMTP session ends by its deadline, however slowly the server
sends or reads its bytes (RFC 5321 §4.5.3.2; Postfix's smtp_*_timeout).

The servers here are slow-drip tarpits: a reply comes one byte every 0.3 s, so
each read returns well within any socket timeout, and only a deadline for the
whole step cuts the server off. Each step gets a short limit; a dripped reply
would take over 10 s.
"""

from __future__ import annotations

import dataclasses
import ssl
import time
from contextlib import closing

import pytest
from support.scripted import (
    Conversation,
    ScriptedServer,
    ScriptedServerFactory,
    dripping,
    normal,
)

from mailstrom_py import (
    Config,
    DeliveryResult,
    Mailstrom,
    RelayConfig,
    RetryPolicy,
    Timeouts,
)
from mailstrom_py.delivery import Outcome, RelayTransport
from mailstrom_py.message import PreparedEmail, prepare_email

HELO = "client.example.test"
#: The limit of the step under test.
LIMIT = 1.5
#: What a busy machine may add to it.
MARGIN = 1.5


def raw(n: int = 1, body: str = "hi\r\n") -> bytes:
    return (
        f"From: s@example.test\r\nTo: a@example.test\r\nSubject: m{n}\r\n\r\n{body}"
    ).encode()


def email(n: int = 1, body: str = "hi\r\n") -> PreparedEmail:
    return prepare_email(raw(n, body), helo_name=HELO)


def timeouts(**limits: float) -> Timeouts:
    return dataclasses.replace(Timeouts.uniform(10), **limits)


def deliver(
    server: ScriptedServer, limits: Timeouts, **relay: object
) -> tuple[Outcome, float]:
    """Deliver one message through ``server``; its outcome and the seconds taken."""
    relay.setdefault("tls", "none")
    transport = RelayTransport(
        RelayConfig(host=server.host, port=server.port, **relay),  # type: ignore[arg-type]
        helo_name=HELO,
        timeouts=limits,
    )
    with closing(transport):
        started = time.monotonic()
        [outcome] = transport.deliver(email(), ["a@example.test"])
        return outcome, time.monotonic() - started


class TestDrippedReplies:
    @pytest.mark.parametrize(
        ("stage", "limit"),
        [
            ("GREETING", "greeting"),
            ("EHLO", "greeting"),
            ("MAIL", "mail"),
            ("RCPT", "rcpt"),
            ("DATA", "data_init"),
        ],
    )
    def test_a_reply_dripped_before_the_dot_is_cut_off_at_the_deadline(
        self, scripted_server: ScriptedServerFactory, stage: str, limit: str
    ) -> None:
        """A reply dripped at any step before the content ends the attempt at
        that step's limit, and the recipient is deferred, not possibly delivered."""
        server = scripted_server(dripping(stage))
        outcome, elapsed = deliver(server, timeouts(**{limit: LIMIT}))
        assert elapsed < LIMIT + MARGIN
        assert (outcome.result, outcome.possibly_delivered) == (
            DeliveryResult.DEFERRED,
            False,
        )
        assert "timed out" in outcome.detail
        assert server.bodies == []

    def test_a_reply_dripped_after_the_dot_is_possibly_delivered(
        self, scripted_server: ScriptedServerFactory
    ) -> None:
        """A reply to the final dot dripped past data_done is a loss after the
        dot: deferred and possibly delivered, at the limit."""
        server = scripted_server(dripping("DOT"))
        outcome, elapsed = deliver(server, timeouts(data_done=LIMIT))
        assert elapsed < LIMIT + MARGIN
        assert (outcome.result, outcome.possibly_delivered) == (
            DeliveryResult.DEFERRED,
            True,
        )
        assert len(server.bodies) == 1

    def test_a_dripped_auth_reply_is_cut_off_at_the_deadline(
        self,
        scripted_server: ScriptedServerFactory,
        tls_server_context: ssl.SSLContext,
        tls_client_context: ssl.SSLContext,
    ) -> None:
        """AUTH (after STARTTLS) is one step: a dripped reply ends it at its limit."""
        server = scripted_server(dripping("AUTH", starttls_context=tls_server_context))
        outcome, elapsed = deliver(
            server,
            timeouts(greeting=LIMIT),
            tls="starttls",
            ssl_context=tls_client_context,
            username="app",
            password="secret",
        )
        assert elapsed < LIMIT + MARGIN
        assert outcome.result is DeliveryResult.DEFERRED
        assert "MAIL" not in server.verbs


class TestSlowTransfers:
    def test_a_dripped_starttls_handshake_is_cut_off_at_the_deadline(
        self,
        scripted_server: ScriptedServerFactory,
        tls_server_context: ssl.SSLContext,
        tls_client_context: ssl.SSLContext,
    ) -> None:
        """A server that answers the TLS handshake a byte at a time fails it at
        the limit: deferred with 4.7.5, nothing sent in plaintext."""

        def on_starttls(conv: Conversation, line: str) -> None:
            conv.send("220 2.0.0 go ahead")
            # A TLS record header announcing 16 KiB of handshake, then a trickle.
            conv.drip_raw(b"\x16\x03\x03\x40\x00" + b"\x02" * 40)
            conv.close()

        server = scripted_server(
            normal(starttls_context=tls_server_context, on_starttls=on_starttls)
        )
        outcome, elapsed = deliver(
            server,
            timeouts(greeting=LIMIT),
            tls="starttls",
            ssl_context=tls_client_context,
        )
        assert elapsed < LIMIT + MARGIN
        assert (outcome.result, outcome.status_code) == (
            DeliveryResult.DEFERRED,
            "4.7.5",
        )
        assert "MAIL" not in server.verbs

    def test_content_read_slowly_is_cut_off_at_the_data_block_limit(
        self, scripted_server: ScriptedServerFactory
    ) -> None:
        """A server that reads the message a trickle at a time ends the attempt
        at data_block: the dot was never sent, so not possibly delivered."""

        def on_data(conv: Conversation, line: str) -> None:
            conv.send("354 go on")
            give_up = time.monotonic() + LIMIT + MARGIN
            while conv.read_bytes(1024) and time.monotonic() < give_up:
                time.sleep(0.3)
            conv.close()

        server = scripted_server(normal(on_data=on_data))
        big = "a line of text to fill the message\r\n" * 200_000
        transport = RelayTransport(
            RelayConfig(host=server.host, port=server.port, tls="none"),
            helo_name=HELO,
            timeouts=timeouts(data_block=LIMIT),
        )
        with closing(transport):
            started = time.monotonic()
            [outcome] = transport.deliver(email(body=big), ["a@example.test"])
            elapsed = time.monotonic() - started
        assert elapsed < LIMIT + MARGIN
        assert (outcome.result, outcome.possibly_delivered) == (
            DeliveryResult.DEFERRED,
            False,
        )


def test_stop_returns_while_a_tarpit_holds_a_session(
    scripted_server: ScriptedServerFactory,
) -> None:
    """A relay dripping its greeting holds a delivery thread no longer than the
    greeting limit: stop(5) returns True, the messages deferred."""
    server = scripted_server(dripping("GREETING"))
    config = Config(
        helo_name=HELO,
        delivery=RelayConfig(host=server.host, port=server.port, tls="none"),
        retry=RetryPolicy(initial_delay=60, jitter=0.0),
        timeouts=timeouts(greeting=2),
    )
    mailer = Mailstrom(config)
    mailer.start()
    ids = [mailer.send_email(raw(n)) for n in range(2)]
    server.wait_for_connections(1)
    started = time.monotonic()
    assert mailer.stop(5)
    assert time.monotonic() - started < 5
    for message_id in ids:
        [r] = mailer.query_status(message_id).recipients
        assert r.result in (DeliveryResult.QUEUED, DeliveryResult.DEFERRED)
    first = mailer.query_status(ids[0]).recipients[0]
    assert first.result is DeliveryResult.DEFERRED
    assert "timed out" in (first.detail or "")
