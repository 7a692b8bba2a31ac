"""Direct delivery end to end: what happens inside an SMTP session (matrix rows C).

Per-recipient replies, broken conversations and slow servers, at exchangers
found through the loopback DNS server; and what a failure at one exchanger
means for the next one in the same attempt.
"""

from __future__ import annotations

import logging
import time

import pytest
from support.mxnet import NOW, MxNet, message
from support.scripted import (
    Conversation,
    drop_after_dot,
    drop_mid_data,
    long_reply_line,
    malformed_reply,
    normal,
    reply_421_after_rcpts,
)
from support.smtpd import RecordingHandler

from mailstrom_py import DeliveryResult, Mailstrom, Timeouts

D, DF, F = DeliveryResult.DELIVERED, DeliveryResult.DEFERRED, DeliveryResult.FAILED
TWO_MX = ((10, "mx1.d.test", "127.0.0.2"), (20, "mx2.d.test", "127.0.0.3"))


@pytest.fixture
def net(net: MxNet) -> MxNet:
    net.mx("d.test", (10, "mx1.d.test", "127.0.0.2"))
    net.mx("two.test", *TWO_MX)
    return net


def send(mailer: Mailstrom, to: str, body: str = "Hello.\r\n") -> str:
    message_id = mailer.send_email(message(to, body=body))
    mailer.run_once()
    return message_id


def results(mailer: Mailstrom, message_id: str) -> list[DeliveryResult]:
    return [r.result for r in mailer.query_status(message_id).recipients]


class TestPerRecipientReplies:
    def test_mixed_rcpt_replies_and_the_retry(self, net: MxNet) -> None:
        """C9: ok delivered, 450 deferred, 550 failed 5.1.1; the retry sends one RCPT."""
        server = net.smtp("127.0.0.2")
        mailer = net.mailer()
        message_id = send(mailer, "ok@d.test, t4busy@d.test, p5gone@d.test")
        ok, busy, gone = mailer.query_status(message_id).recipients
        assert (ok.result, busy.result, gone.result) == (D, DF, F)
        assert (gone.status_code, busy.next_attempt_at) == ("5.1.1", NOW + 60)
        mailer.run_once(NOW + 60)
        rcpts = [
            line
            for session in server.handler.sessions
            for line in session.commands
            if line.startswith("RCPT")
        ]
        assert rcpts[3:] == ["RCPT TO:<t4busy@d.test>"]

    def test_a_deferred_recipient_is_offered_to_the_next_exchanger(
        self, net: MxNet
    ) -> None:
        """C9: a 450 at MX 10 sends that recipient on to MX 20 in the same attempt,
        while the one MX 10 accepted is not sent again."""

        def greylist(conv: Conversation, line: str) -> str | None:
            return "450 4.2.0 greylisted" if "busy" in line else None

        first = net.scripted("127.0.0.2", normal(on_rcpt=greylist))
        second = net.scripted("127.0.0.3", normal())
        mailer = net.mailer()
        message_id = send(mailer, "ok@two.test, busy@two.test")
        ok, busy = mailer.query_status(message_id).recipients
        assert (ok.result, busy.result, busy.attempts) == (D, D, 1)
        assert ok.remote is not None and ok.remote.address == "127.0.0.2"
        assert busy.remote is not None and busy.remote.address == "127.0.0.3"
        assert [v for v in second.lines if v.startswith("RCPT")] == [
            "RCPT TO:<busy@two.test>"
        ]
        assert len(first.bodies) == len(second.bodies) == 1

    def test_all_recipients_refused_means_no_data(self, net: MxNet) -> None:
        """C10: every RCPT refused (4xx and 5xx): no DATA, results as replied."""
        server = net.smtp("127.0.0.2")
        mailer = net.mailer()
        message_id = send(mailer, "t4a@d.test, p5b@d.test")
        assert results(mailer, message_id) == [DF, F]
        assert "DATA" not in server.handler.commands

    def test_too_many_recipients_go_in_further_transactions(self, net: MxNet) -> None:
        """C11: after a 452 the rest go in further transactions on the same connection."""
        server = net.smtp("127.0.0.2", handler=RecordingHandler(max_recipients=2))
        mailer = net.mailer()
        message_id = send(mailer, ", ".join(f"r{n}@d.test" for n in range(5)))
        assert results(mailer, message_id) == [D] * 5
        assert [len(m.rcpt_tos) for m in server.handler.messages] == [2, 2, 1]
        assert server.handler.connections == 1

    def test_421_during_rcpt_defers_every_recipient(self, net: MxNet) -> None:
        """C12: a 421 mid-RCPT defers the untried and the accepted; no DATA."""
        server = net.scripted("127.0.0.2", reply_421_after_rcpts(1))
        mailer = net.mailer()
        message_id = send(mailer, "a@d.test, b@d.test, c@d.test")
        assert results(mailer, message_id) == [DF] * 3
        assert "DATA" not in server.verbs

    @pytest.mark.parametrize(
        ("reply", "result"),
        [("451 4.3.0 not now", DF), ("554 5.5.1 no valid recipients", F)],
    )
    def test_data_command_reply_applies_to_accepted(
        self, net: MxNet, reply: str, result: DeliveryResult
    ) -> None:
        """C13: a 4xx or 5xx to DATA defers or fails the accepted recipients."""
        net.scripted("127.0.0.2", normal(on_data=lambda conv, line: reply))
        mailer = net.mailer()
        assert results(mailer, send(mailer, "a@d.test")) == [result]

    @pytest.mark.parametrize(
        ("reply", "result", "code"),
        [
            ("452 4.3.1 out of space", DF, "4.3.1"),
            ("554 5.6.0 content refused", F, "5.6.0"),
            ("421 4.3.2 shutting down", DF, "4.3.2"),
        ],
    )
    def test_final_dot_reply_applies_to_accepted(
        self, net: MxNet, reply: str, result: DeliveryResult, code: str
    ) -> None:
        """C14: a 4xx, 5xx or 421 after the final dot defers or fails the message."""
        net.smtp("127.0.0.2", handler=RecordingHandler(data_reply=reply))
        mailer = net.mailer()
        [r] = mailer.query_status(send(mailer, "a@d.test")).recipients
        assert (r.result, r.status_code, r.possibly_delivered) == (result, code, False)


class TestBrokenConversations:
    def test_a_drop_before_the_dot_moves_on_to_the_next_exchanger(
        self, net: MxNet
    ) -> None:
        """C15: MX 10 drops mid-DATA (not possibly delivered), so MX 20 gets it in
        the same attempt; with one MX the recipient is deferred, no duplicate flag."""
        net.scripted("127.0.0.2", drop_mid_data(100))
        second = net.smtp("127.0.0.3")
        mailer = net.mailer()
        big = "line of text to fill the message\r\n" * 400_000
        message_id = send(mailer, "a@two.test, b@d.test", body=big)
        moved, stuck = mailer.query_status(message_id).recipients
        assert (moved.result, moved.attempts) == (D, 1)
        assert len(second.handler.messages) == 1
        assert (stuck.result, stuck.possibly_delivered) == (DF, False)

    def test_a_kept_connection_the_exchanger_closed_is_replaced(
        self, net: MxNet
    ) -> None:
        """A kept connection that MX 10 closed while idle costs a new connection
        to it, not a failure: the next message is delivered there once, and MX
        20 is not contacted."""

        def hang_up_after_dot(conv: Conversation, body: bytes) -> str:
            conv.send("250 2.0.0 ok")
            conv.close()
            return ""

        first = net.scripted("127.0.0.2", normal(on_dot=hang_up_after_dot))
        second = net.smtp("127.0.0.3")
        mailer = net.mailer()
        send(mailer, "a@two.test")
        first.wait_idle()
        message_id = send(mailer, "b@two.test")
        [r] = mailer.query_status(message_id).recipients
        assert (r.result, r.attempts) == (D, 1)
        assert "earlier" not in (r.detail or "")
        assert (first.connections, len(first.bodies)) == (2, 2)
        assert second.handler.connections == 0

    def test_one_exchanger_of_two_domains_keeps_one_session_for_both(
        self, net: MxNet
    ) -> None:
        """a.test and b.test share mx1.d.test: the second message goes over the
        session the first left open, and each recipient's server record names
        its own domain as the policy domain."""
        net.mx("a.test", (10, "mx1.d.test", "127.0.0.2"))
        net.mx("b.test", (10, "mx1.d.test", "127.0.0.2"))
        server = net.smtp("127.0.0.2")
        mailer = net.mailer()
        first = mailer.query_status(send(mailer, "x@a.test")).recipients[0]
        second = mailer.query_status(send(mailer, "y@b.test")).recipients[0]
        assert (first.result, second.result) == (D, D)
        assert server.handler.connections == 1
        assert first.remote is not None and second.remote is not None
        assert first.remote.tls_policy_domain == "a.test"
        assert second.remote.tls_policy_domain == "b.test"

    def test_a_drop_after_the_dot_never_tries_another_exchanger(
        self, net: MxNet, caplog: pytest.LogCaptureFixture
    ) -> None:
        """C16/C17: a hang-up after the final dot defers as possibly delivered,
        warns of a duplicate, and MX 20 is not contacted in that attempt."""
        net.scripted("127.0.0.2", drop_after_dot())
        second = net.smtp("127.0.0.3")
        mailer = net.mailer()
        with caplog.at_level(logging.WARNING):
            message_id = send(mailer, "a@two.test")
        [r] = mailer.query_status(message_id).recipients
        assert (r.result, r.possibly_delivered) == (DF, True)
        assert "more than once" in caplog.text
        assert second.handler.connections == 0

    def test_slow_steps_within_their_limits_deliver(self, net: MxNet) -> None:
        """C18: each reply comes within its 1.5 s limit though the whole session
        takes longer than that: delivered (timeouts are per command)."""

        def slow(conv: Conversation, _: object) -> None:
            time.sleep(0.5)  # the server's own slowness: the fault under test

        net.scripted("127.0.0.2", normal(on_rcpt=slow, on_dot=slow))
        mailer = net.mailer(timeouts=Timeouts.uniform(1.5))
        started = time.monotonic()
        message_id = send(mailer, "a@d.test, b@d.test, c@d.test")
        assert results(mailer, message_id) == [D] * 3
        assert time.monotonic() - started > 1.5

    @pytest.mark.parametrize(
        ("line", "at", "result", "code"),
        [
            ("XYZ garbage", "RCPT", F, "5.5.0"),
            ("354 odd", "RCPT", F, "5.5.0"),
            ("550 4.1.1 mixed up", "RCPT", F, "5.0.0"),
        ],
    )
    def test_malformed_replies_are_classified_by_class(
        self, net: MxNet, line: str, at: str, result: DeliveryResult, code: str
    ) -> None:
        """C19: garbage, a 3xx to RCPT, a 550 with a 4.x.x code: judged by the
        reply's class as Postfix does; no crash."""
        net.scripted("127.0.0.2", malformed_reply(line, at=at))
        mailer = net.mailer()
        [r] = mailer.query_status(send(mailer, "a@d.test")).recipients
        assert (r.result, r.status_code) == (result, code)

    def test_an_over_long_reply_line_defers(self, net: MxNet) -> None:
        """C20: a reply line over 8 KB is a lost connection: deferred, no crash."""
        net.scripted("127.0.0.2", long_reply_line(at="MAIL"))
        mailer = net.mailer()
        [r] = mailer.query_status(send(mailer, "a@d.test")).recipients
        assert (r.result, r.attempts) == (DF, 1)

    def test_trouble_at_quit_after_250_keeps_it_delivered(self, net: MxNet) -> None:
        """C21: a hang-up at QUIT after the 250 leaves the recipient delivered."""

        def on_quit(conv: Conversation, line: str) -> None:
            conv.close(reset=True)

        net.scripted("127.0.0.2", normal(on_quit=on_quit))
        mailer = net.mailer()
        assert results(mailer, send(mailer, "a@d.test")) == [D]
