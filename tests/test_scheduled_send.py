"""Scheduled sending and the operator's queue operations in Python:
``send_email(send_at=...)``, ``Outbox.schedule()`` and ``Outbox.fail()``.

A mailer with a fixed clock is driven with ``run_once(now)`` against a
loopback SMTP server; what the server received is what was sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from email import message_from_bytes
from email.policy import default
from pathlib import Path

import pytest
from support.smtpd import SmtpServer

from mailstrom_py import (
    AsyncOutbox,
    Config,
    DeliveryResult,
    InvalidMessageError,
    Mailstrom,
    MemoryStorage,
    Outbox,
    QueueFilter,
    RelayConfig,
    RetryPolicy,
    SqliteStorage,
    Storage,
    Timeouts,
)

NOW = 1_750_000_000.0
START = datetime.fromtimestamp(NOW, UTC)


@pytest.fixture
def server() -> Iterator[SmtpServer]:
    with SmtpServer() as srv:
        yield srv


@pytest.fixture(params=["memory", "sqlite"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    if request.param == "memory":
        return MemoryStorage()
    return SqliteStorage(tmp_path / "outbox.db")


def config_for(server: SmtpServer, dsn: bool = False) -> Config:
    return Config(
        helo_name="app.example.test",
        delivery=RelayConfig(host=server.host, port=server.port, tls="none"),
        retry=RetryPolicy(initial_delay=60, max_delay=600, jitter=0, max_age=86400),
        timeouts=Timeouts.uniform(5),
        dsn=dsn,
    )


def message(n: int = 1, to: str = "a@example.test") -> bytes:
    return (
        f"From: app@example.test\r\nTo: {to}\r\nSubject: n{n}\r\n"
        f"Message-ID: <s{n}@example.test>\r\n\r\nbody\r\n"
    ).encode()


def received(server: SmtpServer) -> list[str]:
    return [str(message_from_bytes(m.data)["Subject"]) for m in server.handler.messages]


class TestSendAt:
    def test_a_scheduled_message_waits_for_its_time(
        self, server: SmtpServer, storage: Storage
    ) -> None:
        """Nothing is attempted before send_at; the message goes when it comes."""
        mailer = Mailstrom(config_for(server), storage, clock=lambda: NOW)
        at = START + timedelta(hours=2)
        message_id = mailer.send_email(message(), send_at=at)
        status = mailer.query_status(message_id)
        assert status.created_at == NOW
        assert status.next_attempt_at == at.timestamp()
        assert mailer.run_once(NOW + 7199) == 0
        assert received(server) == []
        assert mailer.run_once(NOW + 7200) == 1
        assert received(server) == ["n1"]
        assert mailer.query_status(message_id).completed
        mailer.stop()

    def test_a_batch_is_scheduled_together(
        self, server: SmtpServer, storage: Storage
    ) -> None:
        """send_emails(send_at=...) schedules each message of the batch."""
        mailer = Mailstrom(config_for(server), storage, clock=lambda: NOW)
        at = START + timedelta(minutes=5)
        ids = mailer.send_emails([message(1), message(2)], send_at=at)
        assert [mailer.query_status(i).next_attempt_at for i in ids] == [
            at.timestamp()
        ] * 2
        assert mailer.run_once(NOW + 299) == 0
        assert mailer.run_once(NOW + 300) == 2
        mailer.stop()

    def test_any_time_zone_names_the_same_moment(self, server: SmtpServer) -> None:
        """send_at is an absolute time: 12:00+02:00 is 10:00 UTC."""
        with Outbox(config_for(server), MemoryStorage(), clock=lambda: NOW) as outbox:
            at = (START + timedelta(days=1)).astimezone(timezone(timedelta(hours=2)))
            message_id = outbox.send_email(message(), send_at=at)
            assert outbox.query_status(message_id).next_attempt_at == NOW + 86400

    def test_a_time_past_means_at_once(self, server: SmtpServer) -> None:
        """send_at in the past is due now: the message is not refused."""
        mailer = Mailstrom(config_for(server), clock=lambda: NOW)
        message_id = mailer.send_email(message(), send_at=START - timedelta(days=3))
        assert mailer.query_status(message_id).next_attempt_at == NOW
        assert mailer.run_once(NOW) == 1
        mailer.stop()

    def test_sixty_days_ahead_is_the_most(self, server: SmtpServer) -> None:
        """Exactly 60 days ahead is taken; a second more is refused."""
        with Outbox(config_for(server), MemoryStorage(), clock=lambda: NOW) as outbox:
            outbox.send_email(message(1), send_at=START + timedelta(days=60))
            with pytest.raises(InvalidMessageError, match="60 days") as caught:
                outbox.send_email(
                    message(2), send_at=START + timedelta(days=60, seconds=1)
                )
            assert caught.value.field == "send_at"
            assert outbox.count_messages() == 1

    @pytest.mark.parametrize(
        "send_at",
        [
            datetime(2030, 1, 1, 12, 0),  # naive: no single moment
            NOW + 60,  # a number of seconds, not a datetime
        ],
        ids=["naive", "float"],
    )
    def test_a_time_that_is_not_one_is_refused(
        self, server: SmtpServer, send_at: object
    ) -> None:
        """A naive datetime, or no datetime, raises InvalidMessageError (a
        ValueError) and stores nothing."""
        with Outbox(config_for(server), MemoryStorage(), clock=lambda: NOW) as outbox:
            with pytest.raises(ValueError, match="time zone"):
                outbox.send_email(message(), send_at=send_at)  # type: ignore[arg-type]
            with pytest.raises(InvalidMessageError):
                outbox.send_emails([message(2)], send_at=send_at)  # type: ignore[arg-type]
            assert outbox.count_messages() == 0

    def test_async_outbox_schedules_too(self, server: SmtpServer) -> None:
        """AsyncOutbox.send_email() and send_emails() pass send_at on."""
        outbox = Outbox(config_for(server), MemoryStorage(), clock=lambda: NOW)

        async def main() -> list[float | None]:
            async with AsyncOutbox(outbox) as aio:
                at = START + timedelta(hours=1)
                one = await aio.send_email(message(1), send_at=at)
                [two] = await aio.send_emails([message(2)], send_at=at)
                return [(await aio.query_status(i)).next_attempt_at for i in (one, two)]

        assert asyncio.run(main()) == [NOW + 3600, NOW + 3600]


class TestSchedule:
    def test_schedule_moves_the_next_attempt(
        self, server: SmtpServer, storage: Storage
    ) -> None:
        """schedule() delays a queued message, and can bring it forward again."""
        mailer = Mailstrom(config_for(server), storage, clock=lambda: NOW)
        message_id = mailer.send_email(message())
        where = QueueFilter(ids=(message_id,))
        assert mailer.schedule(where, START + timedelta(hours=2)) == [message_id]
        assert mailer.run_once(NOW + 3600) == 0
        assert mailer.schedule(where, START + timedelta(minutes=1)) == [message_id]
        assert mailer.run_once(NOW + 60) == 1
        assert received(server) == ["n1"]
        mailer.stop()

    def test_schedule_checks_its_time(self, server: SmtpServer) -> None:
        """The limits of send_at hold for schedule(): nothing changes."""
        with Outbox(config_for(server), MemoryStorage(), clock=lambda: NOW) as outbox:
            message_id = outbox.send_email(message())
            with pytest.raises(InvalidMessageError, match="60 days"):
                outbox.schedule(QueueFilter(), START + timedelta(days=61))
            assert outbox.query_status(message_id).next_attempt_at == NOW


class TestFail:
    def test_fail_reports_to_the_sender_when_reports_are_on(
        self, server: SmtpServer, storage: Storage
    ) -> None:
        """Each pending recipient fails with 5.3.0, and the sender gets one
        report, delivered by the worker like any message."""
        mailer = Mailstrom(config_for(server, dsn=True), storage, clock=lambda: NOW)
        message_id = mailer.send_email(message(), send_at=START + timedelta(days=1))
        assert mailer.fail(QueueFilter(ids=(message_id,))) == [message_id]
        recipient = mailer.query_status(message_id).recipient("a@example.test")
        assert recipient.result is DeliveryResult.FAILED
        assert recipient.status_code == "5.3.0"
        assert recipient.detail == "failed by an operator"
        assert mailer.run_once(NOW) == 1  # the report, not the message
        [report] = server.handler.messages
        assert report.mail_from in ("", "<>")
        assert list(report.rcpt_tos) == ["app@example.test"]
        parsed = message_from_bytes(report.data, policy=default)
        assert parsed.get_content_type() == "multipart/report"
        assert b"Status: 5.3.0" in report.data
        assert b"failed by an operator" in report.data
        assert mailer.fail(QueueFilter(ids=(message_id,))) == []
        mailer.stop()

    def test_without_reports_fail_tells_no_one(self, server: SmtpServer) -> None:
        """With dsn off, failing queues nothing."""
        mailer = Mailstrom(config_for(server), clock=lambda: NOW)
        message_id = mailer.send_email(message())
        assert mailer.fail(QueueFilter()) == [message_id]
        assert mailer.count_messages() == 1
        assert mailer.run_once(NOW) == 0
        mailer.stop()
