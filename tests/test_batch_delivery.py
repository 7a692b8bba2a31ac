"""A batch of messages over one relay session, pipelined across messages.

``deliver_many`` must give every message the outcomes that delivering the
messages one by one gives, over one connection, each message arriving once;
with PIPELINING a message's content and final dot share a write with the next
message's envelope (RFC 2920 §3.1). These tests talk to aiosmtpd (which does
not offer PIPELINING) and to scripted servers that do.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import closing

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from support.mxnet import MxNet
from support.scripted import (
    ClientClosed,
    Conversation,
    Handler,
    ScriptedServer,
    ScriptedServerFactory,
    normal,
)
from support.smtpd import RecordingHandler, SmtpServer, SmtpServerFactory

from mailstrom_py import RelayConfig, Timeouts
from mailstrom_py.delivery import (
    BatchTransport,
    DirectTransport,
    Outcome,
    RelayTransport,
    SessionPool,
    build_transport,
    deliver_many,
)
from mailstrom_py.message import PreparedEmail, prepare_email

D, DF, F = "DELIVERED", "DEFERRED", "FAILED"
HELO = "client.example.test"
Batch = list[tuple[PreparedEmail, Sequence[str]]]


def email(
    n: int,
    to: str = "a@example.test",
    *,
    sender: str = "s@example.test",
    body: str = "",
) -> PreparedEmail:
    """Message ``m<n>`` (its Subject) from ``sender`` to ``to`` (a To header)."""
    raw = f"From: {sender}\r\nTo: {to}\r\nSubject: m{n}\r\n\r\n{body or 'hi'}\r\n"
    return prepare_email(raw.encode(), helo_name=HELO)


def batch_of(*emails: PreparedEmail) -> Batch:
    return [(e, e.recipients) for e in emails]


def relay(
    server: SmtpServer | ScriptedServer,
    *,
    timeouts: Timeouts | None = None,
    sessions: SessionPool | None = None,
) -> RelayTransport:
    return RelayTransport(
        RelayConfig(host=server.host, port=server.port, tls="none"),
        helo_name=HELO,
        timeouts=timeouts or Timeouts.uniform(5),
        sessions=sessions,
    )


def results(outcomes: list[list[Outcome]]) -> list[list[tuple[str, str, str]]]:
    """Per message: (address, result, status code) of each recipient."""
    return [[(o.address, o.result.name, o.status_code) for o in m] for m in outcomes]


def subjects(bodies: Sequence[bytes]) -> Counter[str]:
    """How many times each message (by Subject) arrived."""
    found = (re.search(rb"^Subject: (\S+)", b, re.MULTILINE) for b in bodies)
    return Counter(m.group(1).decode() for m in found if m is not None)


def one_by_one(transport: RelayTransport, batch: Batch) -> list[list[Outcome]]:
    return [transport.deliver(e, r) for e, r in batch]


# -- servers --------------------------------------------------------------------


def _since_mail(conv: Conversation) -> list[str]:
    """The commands of the current transaction, the one being answered included."""
    lines = list(conv.lines)
    starts = [i for i, line in enumerate(lines) if line.upper().startswith("MAIL")]
    return lines[starts[-1] :] if starts else []


def _local_part(line: str) -> str:
    return line.partition("<")[2].partition("@")[0].lower()


def picky(max_rcpts: int = 2, **hooks: object) -> Handler:
    """``normal`` (with PIPELINING), answering by address as a real server might:
    MAIL from refused@ gets 550, and the RCPTs and DATA after it 503; RCPT to
    p5... gets 550, t4... 450, one beyond ``max_rcpts`` accepted ones 452;
    DATA without an accepted recipient 554; a body holding "reject" 554."""

    def refused_sender(conv: Conversation) -> bool:
        return "refused@" in _since_mail(conv)[0]

    def eligible(line: str) -> bool:
        return line.upper().startswith("RCPT") and _local_part(line)[:2] not in (
            "p5",
            "t4",
        )

    def accepted(conv: Conversation) -> int:
        return min(sum(eligible(c) for c in _since_mail(conv)), max_rcpts)

    def on_mail(conv: Conversation, line: str) -> str | None:
        return "550 5.7.1 not from you" if refused_sender(conv) else None

    def on_rcpt(conv: Conversation, line: str) -> str | None:
        if refused_sender(conv):
            return "503 5.5.1 need MAIL first"
        local = _local_part(line)
        if local.startswith("p5"):
            return "550 5.1.1 no such user"
        if local.startswith("t4"):
            return "450 4.2.0 mailbox busy"
        before = sum(eligible(c) for c in _since_mail(conv)[:-1])
        return "452 4.5.3 too many recipients" if before >= max_rcpts else None

    def on_data(conv: Conversation, line: str) -> str | None:
        if refused_sender(conv) or not accepted(conv):
            return "554 5.5.1 no valid recipients"
        return None

    def on_dot(conv: Conversation, body: bytes) -> str | None:
        return "554 5.6.0 rejected" if b"reject" in body else None

    defaults: dict[str, object] = {
        "on_mail": on_mail,
        "on_rcpt": on_rcpt,
        "on_data": on_data,
        "on_dot": on_dot,
    }
    return normal(**{**defaults, **hooks})  # type: ignore[arg-type]


class PickyHandler(RecordingHandler):
    """The recording aiosmtpd handler, also refusing MAIL from refused@ and a
    body holding "reject" (after its dot)."""

    async def handle_MAIL(  # noqa: N802
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        if address.startswith("refused@"):
            return "550 5.7.1 not from you"
        return await super().handle_MAIL(
            server, session, envelope, address, mail_options
        )

    async def handle_DATA(  # noqa: N802
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        if b"reject" in (envelope.original_content or b""):
            return "554 5.6.0 rejected"
        return await super().handle_DATA(server, session, envelope)


def _read_group(conv: Conversation) -> list[str]:
    """One pipelined transaction: MAIL, the RCPTs, up to and including DATA."""
    group = [conv.expect("MAIL")]
    while not group[-1].upper().startswith("DATA"):
        line = conv.readline()
        if not line:
            raise ClientClosed("client closed the connection inside a group")
        group.append(line.rstrip("\r\n"))
    return group


def withholding(messages: int) -> Handler:
    """A PIPELINING server that answers a message's final dot only after it has
    read the next message's MAIL, RCPTs and DATA (the last message's at once).

    A client that waits for the reply to the dot before it sends the next
    envelope stalls here until its own timeout.
    """

    def handler(conv: Conversation) -> None:
        conv.send("220 pipe.test ESMTP")
        conv.expect("EHLO")
        conv.send("250-pipe.test\r\n250 PIPELINING")
        owed = ""
        for _ in range(messages):
            group = _read_group(conv)
            if owed:
                conv.send(owed)
            for _command in group[:-1]:
                conv.send("250 2.1.0 ok")
            conv.send("354 go on")
            conv.read_data()
            owed = "250 2.0.0 queued"
        conv.send(owed)
        conv.expect("QUIT")
        conv.send("221 2.0.0 bye")

    return handler


def at_dot(marker: bytes, act: Callable[[Conversation], None]) -> Handler:
    """``picky``, doing ``act`` after the final dot of a body holding ``marker``
    (act closes the conversation, or the reply is the default 250)."""

    def on_dot(conv: Conversation, body: bytes) -> str | None:
        if marker in body:
            act(conv)
        return None

    return picky(on_dot=on_dot)


def _hang_up(conv: Conversation) -> None:
    conv.close()


def _reply_421(conv: Conversation) -> None:
    conv.send("421 4.3.2 shutting down")
    conv.close()


def _reply_250_and_hang_up(conv: Conversation) -> None:
    conv.send("250 2.0.0 ok")
    conv.close()


@pytest.fixture
def mixed() -> Batch:
    """Messages with every kind of outcome; m4 needs two transactions (452)."""
    return batch_of(
        email(1),
        email(2, "p5x@example.test, b@example.test"),
        email(3, "p5only@example.test"),
        email(4, ", ".join(f"r{n}@example.test" for n in range(4))),
        email(5, sender="refused@example.test"),
        email(6, body="please reject me"),
        email(7, "t4busy@example.test, c@example.test"),
        email(8),
    )


# -- the tests --------------------------------------------------------------------


class TestSameOutcomesAsOneByOne:
    def test_without_pipelining(
        self, smtp_server: SmtpServerFactory, mixed: Batch
    ) -> None:
        """aiosmtpd offers no PIPELINING: the batch goes one message after the
        other on one connection, with the outcomes of one-by-one delivery."""
        handler = PickyHandler(max_recipients=2)
        server = smtp_server(handler=handler)
        with closing(relay(server)) as transport:
            expected = one_by_one(transport, mixed)
        alone = handler.messages
        with closing(relay(server)) as transport:
            got = transport.deliver_many(mixed)
        assert results(got) == results(expected)
        assert got == expected
        assert handler.connections == 2
        together = handler.messages[len(alone) :]
        assert subjects([m.data for m in together]) == subjects([m.data for m in alone])
        assert subjects([m.data for m in together])["m1"] == 1

    def test_with_pipelining(
        self, scripted_server: ScriptedServerFactory, mixed: Batch
    ) -> None:
        """A server offering PIPELINING: the same outcomes, one connection, each
        message arriving as often as one by one (m4 twice: two transactions)."""
        server = scripted_server(picky())
        with closing(relay(server)) as transport:
            expected = one_by_one(transport, mixed)
        with closing(relay(server)) as transport:
            got = transport.deliver_many(mixed)
        assert got == expected
        assert results(got)[3] == [(f"r{n}@example.test", D, "2.0.0") for n in range(4)]
        alone, together = server.conversations
        assert subjects(together.bodies) == subjects(alone.bodies)
        assert subjects(together.bodies) == Counter(
            {"m1": 1, "m2": 1, "m4": 2, "m6": 1, "m7": 1, "m8": 1}
        )

    def test_the_module_function_uses_the_transport_batch_method(
        self, scripted_server: ScriptedServerFactory
    ) -> None:
        """deliver_many(transport, batch) goes through RelayTransport.deliver_many."""
        server = scripted_server(withholding(3))
        with closing(relay(server)) as transport:
            assert isinstance(transport, BatchTransport)
            got = deliver_many(transport, batch_of(email(1), email(2), email(3)))
        assert [[o.result.name for o in m] for m in got] == [[D], [D], [D]]


class Reports:
    """An ``on_outcome`` that keeps a copy of what it was told, in order."""

    def __init__(self) -> None:
        self.told: list[tuple[int, list[Outcome]]] = []

    def __call__(self, index: int, outcomes: list[Outcome]) -> None:
        self.told.append((index, list(outcomes)))


class TestOutcomesAsTheyCome:
    def test_each_message_is_reported_once_with_its_final_outcomes(
        self,
        scripted_server: ScriptedServerFactory,
        smtp_server: SmtpServerFactory,
        mixed: Batch,
    ) -> None:
        """on_outcome hears of every message once, in order, with the outcomes
        deliver_many returns (m4's second transaction included), with and
        without PIPELINING."""
        for server in (
            scripted_server(picky()),
            smtp_server(handler=PickyHandler(max_recipients=2)),
        ):
            reports = Reports()
            with closing(relay(server)) as transport:
                got = transport.deliver_many(mixed, reports)
            assert reports.told == list(enumerate(got))
            assert len(reports.told[3][1]) == 4

    def test_a_message_is_reported_before_the_next_dot_is_answered(
        self, scripted_server: ScriptedServerFactory
    ) -> None:
        """With PIPELINING, each message is reported as soon as its dot is
        answered, before the server sees the next message's content."""
        reports = Reports()
        bodies_when_told: list[int] = []

        def on_outcome(index: int, outcomes: list[Outcome]) -> None:
            reports(index, outcomes)
            bodies_when_told.append(len(server.bodies))

        server = scripted_server(picky())
        with closing(relay(server)) as transport:
            transport.deliver_many(batch_of(*(email(n) for n in range(4))), on_outcome)
        assert [index for index, _ in reports.told] == [0, 1, 2, 3]
        assert bodies_when_told == [1, 2, 3, 4]

    def test_a_transport_without_deliver_many_reports_after_each_message(
        self, scripted_server: ScriptedServerFactory
    ) -> None:
        """deliver_many(transport, batch, on_outcome) on a transport with only
        deliver() reports each message before delivering the next."""
        server = scripted_server(picky())
        calls: list[str] = []

        class OneAtATime:
            def __init__(self, inner: RelayTransport) -> None:
                self.inner = inner

            def deliver(
                self, email: PreparedEmail, recipients: Sequence[str]
            ) -> list[Outcome]:
                calls.append(f"deliver {email.message_id}")
                return self.inner.deliver(email, recipients)

            def close(self) -> None:
                self.inner.close()

        batch = batch_of(email(1), email(2, "p5x@example.test"))
        with closing(OneAtATime(relay(server))) as transport:
            got = deliver_many(
                transport, batch, lambda index, _: calls.append(f"told {index}")
            )
        first, second = (e.message_id for e, _ in batch)
        assert calls == [f"deliver {first}", "told 0", f"deliver {second}", "told 1"]
        assert results(got)[1] == [("p5x@example.test", F, "5.1.1")]


class TestPipeliningAcrossMessages:
    def test_the_next_envelope_goes_with_the_final_dot(
        self, scripted_server: ScriptedServerFactory
    ) -> None:
        """A server that answers each dot only after reading the next message's
        envelope gets the whole batch, over one connection."""
        server = scripted_server(withholding(4))
        batch = batch_of(*(email(n, f"x{n}@example.test") for n in range(4)))
        with closing(relay(server)) as transport:
            got = transport.deliver_many(batch)
        assert results(got) == [[(f"x{n}@example.test", D, "2.0.0")] for n in range(4)]
        assert server.connections == 1
        assert subjects(server.bodies) == Counter({f"m{n}": 1 for n in range(4)})

    def test_sessions_reaching_their_message_limit_are_replaced(
        self, scripted_server: ScriptedServerFactory
    ) -> None:
        """A session carries at most the pool's max_messages of a batch; the rest
        go on new sessions."""
        server = scripted_server(withholding(2))
        sessions = SessionPool(max_messages=2)
        with closing(relay(server, sessions=sessions)) as transport:
            got = transport.deliver_many(batch_of(*(email(n) for n in range(4))))
        assert [[o.result.name for o in m] for m in got] == [[D]] * 4
        assert server.connections == 2
        assert subjects(server.bodies) == Counter({f"m{n}": 1 for n in range(4)})


class TestBrokenBatches:
    def test_connection_dropped_after_a_dot(
        self, scripted_server: ScriptedServerFactory
    ) -> None:
        """Lost after m2's dot: m2 is possibly delivered, m3 (whose envelope went
        with that dot) is deferred, m4 goes on a new connection."""
        server = scripted_server(at_dot(b"Subject: m2\r\n", _hang_up))
        with closing(relay(server)) as transport:
            got = transport.deliver_many(batch_of(*(email(n) for n in range(1, 5))))
        m1, m2, m3, m4 = (
            [(o.result.name, o.possibly_delivered) for o in m] for m in got
        )
        assert (m1, m2, m3, m4) == (
            [(D, False)],
            [(DF, True)],
            [(DF, False)],
            [(D, False)],
        )
        assert got[2][0].status_code == "4.4.2"
        assert server.connections == 2
        assert subjects(server.bodies) == Counter({"m1": 1, "m2": 1, "m4": 1})

    def test_connection_closed_after_354_in_a_batch(
        self, scripted_server: ScriptedServerFactory
    ) -> None:
        """A server that closes after m2's 354: m2's content, whose dot would
        share a write with m3's envelope, is not sent, so m2 is deferred and not
        possibly delivered; m3 and m4 go on a new connection."""

        def on_data(conv: Conversation, line: str) -> str | None:
            if "<m2@" in conv.lines[-2]:
                conv.send_last("354 go on")
            return None

        server = scripted_server(picky(on_data=on_data))
        batch = batch_of(*(email(n, f"m{n}@example.test") for n in range(1, 5)))
        with closing(relay(server)) as transport:
            got = transport.deliver_many(batch)
        assert [(m[0].result.name, m[0].possibly_delivered) for m in got] == [
            (D, False),
            (DF, False),
            (D, False),
            (D, False),
        ]
        assert got[1][0].status_code == "4.4.2"
        assert server.connections == 2
        assert subjects(server.bodies) == Counter({"m1": 1, "m3": 1, "m4": 1})

    def test_dot_answer_times_out(self, scripted_server: ScriptedServerFactory) -> None:
        """No answer to m2's dot within data_done: as if the connection dropped."""

        def silent(conv: Conversation) -> None:
            conv.sleep_until_closed(30)
            conv.close()

        server = scripted_server(at_dot(b"Subject: m2\r\n", silent))
        timeouts = Timeouts(data_done=0.5)
        with closing(relay(server, timeouts=timeouts)) as transport:
            got = transport.deliver_many(batch_of(*(email(n) for n in range(1, 5))))
        assert [(m[0].result.name, m[0].possibly_delivered) for m in got] == [
            (D, False),
            (DF, True),
            (DF, False),
            (D, False),
        ]
        assert "timed out" in got[1][0].detail

    def test_421_after_a_dot(self, scripted_server: ScriptedServerFactory) -> None:
        """A 421 to m2's dot defers m2 with it and m3 with 4.4.2; m4 goes on a
        new connection."""
        server = scripted_server(at_dot(b"Subject: m2\r\n", _reply_421))
        with closing(relay(server)) as transport:
            got = transport.deliver_many(batch_of(*(email(n) for n in range(1, 5))))
        assert results(got) == [
            [("a@example.test", D, "2.0.0")],
            [("a@example.test", DF, "4.3.2")],
            [("a@example.test", DF, "4.4.2")],
            [("a@example.test", D, "2.0.0")],
        ]
        assert not any(o.possibly_delivered for m in got for o in m)
        assert got[1][0].reply is not None and got[1][0].reply.code == 421
        assert server.connections == 2

    def test_server_closing_after_each_message(
        self, scripted_server: ScriptedServerFactory
    ) -> None:
        """A server that answers every dot and hangs up: each next message was not
        started, so it goes on a new connection; each arrives once."""
        server = scripted_server(at_dot(b"Subject", _reply_250_and_hang_up))
        with closing(relay(server)) as transport:
            got = transport.deliver_many(batch_of(*(email(n) for n in range(3))))
        assert [[o.result.name for o in m] for m in got] == [[D], [D], [D]]
        assert server.connections == 3
        assert subjects(server.bodies) == Counter({"m0": 1, "m1": 1, "m2": 1})

    def test_too_many_recipients_inside_a_pipelined_batch(
        self, scripted_server: ScriptedServerFactory
    ) -> None:
        """452 leftovers get further transactions before the next message starts."""
        server = scripted_server(picky(max_rcpts=1))
        to = "r1@example.test, r2@example.test, r3@example.test"
        with closing(relay(server)) as transport:
            got = transport.deliver_many(batch_of(email(1), email(2, to), email(3)))
        assert [[o.result.name for o in m] for m in got] == [[D], [D, D, D], [D]]
        [conv] = server.conversations
        rcpts = [line for line in conv.lines if line.upper().startswith("RCPT")]
        assert Counter(r for r in rcpts if "<r" in r) == Counter(
            {f"RCPT TO:<r{n}@example.test>": n for n in (1, 2, 3)}
        )
        assert subjects(conv.bodies) == Counter({"m1": 1, "m2": 3, "m3": 1})

    def test_mail_refused_for_one_message(
        self, scripted_server: ScriptedServerFactory
    ) -> None:
        """A refused MAIL fails that message only; the batch goes on."""
        server = scripted_server(picky())
        batch = batch_of(email(1), email(2, sender="refused@example.test"), email(3))
        with closing(relay(server)) as transport:
            got = transport.deliver_many(batch)
        assert results(got) == [
            [("a@example.test", D, "2.0.0")],
            [("a@example.test", F, "5.7.1")],
            [("a@example.test", D, "2.0.0")],
        ]
        assert server.connections == 1
        assert subjects(server.bodies) == Counter({"m1": 1, "m3": 1})

    def test_kept_session_closed_before_the_batch(
        self, scripted_server: ScriptedServerFactory
    ) -> None:
        """A kept connection the server has dropped costs a new connection for
        the batch, never a message: each arrives once."""
        server = scripted_server(at_dot(b"Subject: m0\r\n", _reply_250_and_hang_up))
        with closing(relay(server)) as transport:
            [first] = transport.deliver_many(batch_of(email(0)))
            server.wait_idle()
            got = transport.deliver_many(batch_of(*(email(n) for n in range(1, 4))))
        assert first[0].result.name == D
        assert [[o.result.name for o in m] for m in got] == [[D], [D], [D]]
        assert server.connections == 2
        assert subjects(server.bodies) == Counter({f"m{n}": 1 for n in range(4)})


class TestChecksPerMessage:
    def test_tls_requirement_is_judged_per_message(
        self, scripted_server: ScriptedServerFactory
    ) -> None:
        """With require_tls and a plaintext relay only the message saying
        TLS-Required: No goes out; the others are deferred with 4.7.4."""
        server = scripted_server(picky())
        optional = dataclasses.replace(email(2), tls_optional=True)
        transport = RelayTransport(
            RelayConfig(host=server.host, port=server.port, tls="none"),
            helo_name=HELO,
            timeouts=Timeouts.uniform(5),
            require_tls=True,
        )
        with closing(transport):
            got = transport.deliver_many(batch_of(email(1), optional, email(3)))
        assert results(got) == [
            [("a@example.test", DF, "4.7.4")],
            [("a@example.test", D, "2.0.0")],
            [("a@example.test", DF, "4.7.4")],
        ]
        assert subjects(server.bodies) == Counter({"m2": 1})


class TestOtherTransports:
    def test_a_transport_without_deliver_many(
        self, scripted_server: ScriptedServerFactory
    ) -> None:
        """A transport that has only deliver() gets one call per message."""
        server = scripted_server(picky())
        calls: list[str] = []

        class OneAtATime:
            def __init__(self, inner: RelayTransport) -> None:
                self.inner = inner

            def deliver(
                self, email: PreparedEmail, recipients: Sequence[str]
            ) -> list[Outcome]:
                calls.append(email.message_id)
                return self.inner.deliver(email, recipients)

            def close(self) -> None:
                self.inner.close()

        batch = batch_of(email(1), email(2, "p5x@example.test"))
        with closing(OneAtATime(relay(server))) as transport:
            assert not isinstance(transport, BatchTransport)
            got = deliver_many(transport, batch)
        assert results(got) == [
            [("a@example.test", D, "2.0.0")],
            [("p5x@example.test", F, "5.1.1")],
        ]
        assert calls == [e.message_id for e, _ in batch]

    def test_direct_delivery(self, net: MxNet) -> None:
        """Direct delivery delivers a batch message by message, each to its domain."""
        net.mx("d.test", (10, "mx1.d.test", "127.0.0.2"))
        net.mx("e.test", (10, "mx1.e.test", "127.0.0.3"))
        d, e = net.smtp("127.0.0.2"), net.smtp("127.0.0.3")
        transport = build_transport(net.config())
        assert isinstance(transport, DirectTransport)
        batch = batch_of(
            email(1, "a@d.test"), email(2, "b@e.test, p5c@d.test"), email(3, "c@e.test")
        )
        with closing(transport):
            got = deliver_many(transport, batch)
        assert results(got) == [
            [("a@d.test", D, "2.0.0")],
            [("b@e.test", D, "2.0.0"), ("p5c@d.test", F, "5.1.1")],
            [("c@e.test", D, "2.0.0")],
        ]
        assert [m.rcpt_tos for m in d.handler.messages] == [("a@d.test",)]
        assert [m.rcpt_tos for m in e.handler.messages] == [
            ("b@e.test",),
            ("c@e.test",),
        ]
