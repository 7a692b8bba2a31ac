"""The testing kit users test their mail with: a recording transport, a fake
clock, and the outbox that combines them (the ``mailstrom_outbox`` fixture).

Each is driven through a real Mailstrom with in-memory storage, as a user's
test would drive it; the recording transport stands in for the SMTP server.
"""

from __future__ import annotations

import math
from email.message import EmailMessage

import pytest

from mailstrom_py import Config, DeliveryResult, Mailstrom, RelayConfig, RetryPolicy
from mailstrom_py.delivery.base import BatchTransport, deliver_many
from mailstrom_py.testing import (
    FakeClock,
    RecordingOutbox,
    RecordingTransport,
    SentMessage,
    default_config,
    prepared_email,
)

START = 1_800_000_000.0


def config(**options: object) -> Config:
    return Config(
        helo_name="app.test",
        delivery=RelayConfig("relay.test", tls="none"),
        **options,  # type: ignore[arg-type]
    )


def welcome(
    to: str = "Bob <bob@example.org>", subject: str = "Welcome", **headers: str
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "App <app@example.org>"
    message["To"] = to
    message["Subject"] = subject
    for name, value in headers.items():
        message[name] = value
    message.set_content("Hello Bob!\nSee you soon.\n")
    return message


def mailer_on(
    transport: RecordingTransport, clock: FakeClock, **options: object
) -> Mailstrom:
    return Mailstrom(config(**options), transport=transport, clock=clock)


class TestFakeClock:
    def test_it_shows_its_start_until_moved(self) -> None:
        """A fake clock returns the same time on every call until advanced."""
        clock = FakeClock(START)
        assert clock() == clock() == START
        assert clock.advance(90) == START + 90 == clock()
        assert clock.advance_to(START + 600) == START + 600 == clock()
        assert clock.advance_to(START + 600) == START + 600

    def test_it_only_goes_forward(self) -> None:
        """Moving a fake clock back, or by a non-number, is a ValueError."""
        clock = FakeClock(START)
        with pytest.raises(ValueError, match="only goes forward"):
            clock.advance(-1)
        with pytest.raises(ValueError, match="only goes forward"):
            clock.advance_to(START - 1)
        for bad in (math.nan, math.inf, "60", True):
            with pytest.raises(ValueError, match="finite number"):
                clock.advance(bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="finite number"):
            FakeClock(math.nan)
        assert clock() == START

    def test_a_mailer_retries_when_the_clock_reaches_the_next_attempt(self) -> None:
        """A deferred recipient is attempted again when, and only when, the clock
        reaches its next_attempt_at."""
        clock = FakeClock(START)
        transport = RecordingTransport()
        transport.reply_to("bob@example.org", 451, "4.3.0 try later", times=1)
        mailer = mailer_on(transport, clock)
        message_id = mailer.send_email(welcome())
        assert mailer.run_once() == 1
        status = mailer.query_status(message_id)
        assert status.recipients[0].result is DeliveryResult.DEFERRED
        assert status.created_at == START
        due = status.next_attempt_at
        assert due is not None and due > START
        assert mailer.run_once() == 0
        clock.advance_to(due - 1)
        assert mailer.run_once() == 0
        clock.advance_to(due)
        assert mailer.run_once() == 1
        status = mailer.query_status(message_id)
        assert status.succeeded and status.attempts == 2
        assert [sent.recipients for sent in transport.sent] == [("bob@example.org",)]

    def test_a_recipient_deferred_past_the_retry_limit_fails(self) -> None:
        """Advancing past the retry policy's max_age fails a recipient that is
        still deferred, without a moment of sleep."""
        clock = FakeClock(START)
        transport = RecordingTransport()
        transport.reply_to("bob@example.org", 421, "4.4.2 busy")
        mailer = mailer_on(transport, clock, retry=RetryPolicy(max_age=3600))
        message_id = mailer.send_email(welcome())
        mailer.run_once()
        while (status := mailer.query_status(message_id)).pending:
            assert status.next_attempt_at is not None
            clock.advance_to(status.next_attempt_at)
            mailer.run_once()
        [bob] = status.recipients
        assert bob.result is DeliveryResult.FAILED
        assert bob.attempts > 2
        assert START + 3600 - 1 <= clock() <= START + 3600 + 1
        assert transport.sent == []


class TestRecordingTransport:
    def test_it_records_the_envelope_and_the_exact_bytes(self) -> None:
        """What the transport records is what a server would have received:
        the envelope (Bcc included) and the prepared bytes."""
        transport = RecordingTransport()
        mailer = mailer_on(transport, FakeClock(START))
        message_id = mailer.send_email(welcome(Bcc="eve@example.org"))
        mailer.run_once()
        [sent] = transport.sent
        assert sent.message_id == message_id
        assert sent.mail_from == "app@example.org"
        assert sent.recipients == ("bob@example.org", "eve@example.org")
        assert sent.data == mailer.storage.email(message_id).data
        assert b"eve@example.org" not in sent.data
        assert mailer.query_status(message_id).succeeded

    def test_scripted_replies_fail_and_defer_recipients(self) -> None:
        """A 5xx reply fails its recipient and a 4xx one defers it, with the
        reply and its enhanced code recorded; the rest are delivered."""
        transport = RecordingTransport()
        transport.reply_to("bob@example.org", 550, "5.1.1 no such user")
        transport.reply_to("carol@example.org", 452, "4.2.2 mailbox full")
        mailer = mailer_on(transport, FakeClock(START))
        message_id = mailer.send_email(
            welcome("bob@example.org, carol@example.org, dan@example.org")
        )
        mailer.run_once()
        status = mailer.query_status(message_id)
        bob, carol, dan = status.recipients
        assert (bob.result, bob.status_code) == (DeliveryResult.FAILED, "5.1.1")
        assert bob.last_reply is not None and bob.last_reply.code == 550
        assert "no such user" in (bob.detail or "")
        assert (carol.result, carol.status_code) == (DeliveryResult.DEFERRED, "4.2.2")
        assert dan.result is DeliveryResult.DELIVERED
        [sent] = transport.sent
        assert sent.recipients == ("dan@example.org",)
        assert [o.result for o in transport.outcomes] == [
            DeliveryResult.FAILED,
            DeliveryResult.DEFERRED,
            DeliveryResult.DELIVERED,
        ]

    def test_a_reply_given_for_some_attempts_then_gives_way(self) -> None:
        """With times=2 a recipient is refused twice, then accepted again."""
        transport = RecordingTransport()
        transport.reply_to("Bob@Example.org", 450, times=2)
        email = prepared_email(1, "bob@example.org")
        results = [transport.deliver(email, ["bob@example.org"])[0] for _ in range(3)]
        assert [o.result for o in results] == [
            DeliveryResult.DEFERRED,
            DeliveryResult.DEFERRED,
            DeliveryResult.DELIVERED,
        ]
        assert results[0].status_code == "4.0.0"
        assert len(transport.sent) == 1

    def test_a_message_no_recipient_took_is_not_in_sent(self) -> None:
        """A message whose every recipient was refused never went out."""
        transport = RecordingTransport()
        transport.reply_to("a@example.test", 554)
        outcomes = transport.deliver(prepared_email(1), ["a@example.test"])
        assert outcomes[0].result is DeliveryResult.FAILED
        assert transport.sent == []
        assert len(transport.outcomes) == 1

    @pytest.mark.parametrize("code", [354, 199, 600, 99, True, "550"])
    def test_reply_to_refuses_what_no_recipient_is_answered_with(
        self, code: object
    ) -> None:
        """Only 2xx, 4xx and 5xx codes can be scripted."""
        with pytest.raises(ValueError, match="reply code"):
            RecordingTransport().reply_to("a@example.test", code)  # type: ignore[arg-type]

    def test_reply_to_refuses_a_count_that_is_not_positive(self) -> None:
        """times must be a positive integer."""
        with pytest.raises(ValueError, match="positive integer"):
            RecordingTransport().reply_to("a@example.test", 450, times=0)

    def test_it_is_a_batch_transport_answering_in_batch_order(self) -> None:
        """deliver_many returns one outcome list per item, in the batch's order."""
        transport = RecordingTransport()
        transport.reply_to("b@example.test", 550)
        assert isinstance(transport, BatchTransport)
        batch = [
            (prepared_email(1), ["a@example.test"]),
            (prepared_email(2, "b@example.test"), ["b@example.test"]),
        ]
        results = deliver_many(transport, batch)
        assert [[o.result for o in item] for item in results] == [
            [DeliveryResult.DELIVERED],
            [DeliveryResult.FAILED],
        ]
        assert [s.message_id for s in transport.sent] == ["m1@example.test"]

    def test_clear_forgets_what_was_sent_but_not_the_script(self) -> None:
        """clear() empties sent and outcomes; scripted replies still apply."""
        transport = RecordingTransport()
        transport.reply_to("b@example.test", 550)
        transport.deliver(prepared_email(1), ["a@example.test", "b@example.test"])
        transport.clear()
        assert (transport.sent, transport.outcomes) == ([], [])
        [outcome] = transport.deliver(prepared_email(2), ["b@example.test"])
        assert outcome.result is DeliveryResult.FAILED


class TestSentMessage:
    def test_it_reads_subject_addresses_and_body(self) -> None:
        """subject, from_, to, cc and body read the parsed message, decoded."""
        outbox = RecordingOutbox(config())
        outbox.mailer.send_email(
            welcome("Bob <bob@example.org>, Zoë <zoe@example.org>", Cc="c@example.org")
        )
        [sent] = outbox
        assert sent.subject == "Welcome"
        assert sent.from_ == "app@example.org"
        assert sent.to == ["bob@example.org", "zoe@example.org"]
        assert sent.cc == ["c@example.org"]
        assert sent.body == "Hello Bob!\nSee you soon.\n"
        assert sent.message["To"].addresses[1].display_name == "Zoë"
        outbox.close()

    def test_the_body_of_a_multipart_message_is_its_plain_text(self) -> None:
        """With HTML and plain-text alternatives, body is the plain text; a
        message with no plain text has an empty body."""
        message = welcome(subject="Café ☕")
        message.add_alternative("<p>Hello Bob!</p>", subtype="html")
        html_only = EmailMessage()
        html_only["From"] = "app@example.org"
        html_only["To"] = "bob@example.org"
        html_only.set_content("<p>Hi</p>", subtype="html")
        outbox = RecordingOutbox(config())
        ids = outbox.mailer.send_emails([message, html_only])
        sent = {m.message_id: m for m in outbox}
        first, second = sent[ids[0]], sent[ids[1]]
        assert first.subject == "Café ☕"
        assert first.body == "Hello Bob!\nSee you soon.\n"
        assert (second.body, second.subject, second.cc) == ("", "", [])
        outbox.close()

    def test_a_report_to_a_sender_has_the_null_sender(self) -> None:
        """A delivery status notification goes out from the null reverse-path:
        mail_from is empty and it is addressed to the original sender."""
        outbox = RecordingOutbox(config(dsn=True))
        outbox.transport.reply_to("bob@example.org", 550, "5.1.1 no such user")
        outbox.mailer.send_email(welcome())
        outbox.deliver()
        [report] = outbox
        assert isinstance(report, SentMessage)
        assert report.mail_from == ""
        assert report.recipients == ("app@example.org",)
        outbox.close()


class TestRecordingOutbox:
    def test_looking_at_the_outbox_delivers_what_is_due(self) -> None:
        """Mail sent a moment ago is in the outbox when the test looks."""
        outbox = RecordingOutbox()
        assert len(outbox) == 0 and not outbox
        message_id = outbox.mailer.send_email(welcome())
        assert len(outbox) == 1
        assert outbox[0].message_id == message_id
        assert [m.subject for m in outbox] == ["Welcome"]
        assert outbox.messages == outbox.transport.sent
        assert outbox.mailer.query_status(message_id).succeeded
        outbox.close()

    def test_deferred_mail_waits_for_the_clock(self) -> None:
        """A deferred message shows up once the outbox's clock reaches its retry."""
        outbox = RecordingOutbox()
        outbox.transport.reply_to("bob@example.org", 451, times=1)
        message_id = outbox.mailer.send_email(welcome())
        assert len(outbox) == 0
        due = outbox.mailer.query_status(message_id).next_attempt_at
        assert due is not None
        outbox.clock.advance_to(due)
        assert [m.recipients for m in outbox] == [("bob@example.org",)]
        outbox.close()

    def test_clear_empties_the_outbox(self) -> None:
        """clear() forgets what was sent; later mail shows up as usual."""
        outbox = RecordingOutbox()
        outbox.mailer.send_email(welcome())
        assert len(outbox) == 1
        outbox.clear()
        assert list(outbox) == []
        outbox.mailer.send_email(welcome(subject="Again"))
        assert [m.subject for m in outbox] == ["Again"]
        outbox.close()

    def test_a_mailer_started_by_the_code_under_test_is_waited_for(self) -> None:
        """When the code under test starts the mailer, looking at the outbox waits
        for its worker to deliver what was sent."""
        outbox = RecordingOutbox()
        outbox.mailer.start()
        outbox.mailer.send_email(welcome())
        assert [m.to for m in outbox] == [["bob@example.org"]]
        outbox.close()

    def test_the_default_configuration_names_no_real_host(self) -> None:
        """The outbox's default mailer is configured with reserved .test names."""
        config = default_config()
        assert config.helo_name.endswith(".test")
        assert isinstance(config.delivery, RelayConfig)
        assert config.delivery.host.endswith(".test")
