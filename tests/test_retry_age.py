"""How long deferred mail is retried: ``max_age`` counts from when a message
was first due.

A message scheduled for later (``send_at``, or a ``schedule()`` before any
attempt) is first due at that time; any other when it was stored. Its retries
end ``max_age`` after that, so mail scheduled days ahead gets the same days
of retries as mail sent at once. A mailer with a fixed clock is driven with
``run_once(now)`` against a loopback SMTP server that answers the final dot
with 451 while told to.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support.smtpd import SmtpServer

from mailstrom_py import (
    Config,
    DeliveryResult,
    Mailstrom,
    MemoryStorage,
    PostgresStorage,
    QueueFilter,
    RelayConfig,
    RetryPolicy,
    SqliteStorage,
    Storage,
    Timeouts,
)
from mailstrom_py.codes import DELIVERY_TIME_EXPIRED

NOW = 1_750_000_000.0
START = datetime.fromtimestamp(NOW, UTC)
DAY = 86400.0
# The default max_age (5 days) and first delay (5 minutes), without jitter.
POLICY = RetryPolicy(jitter=0.0)
MAX_AGE = POLICY.max_age
LATER = "451 4.3.0 try again later"


@pytest.fixture
def server() -> Iterator[SmtpServer]:
    with SmtpServer() as srv:
        srv.handler.data_reply = LATER
        yield srv


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    """Each backend; PostgreSQL on the caller's (the fixed) clock."""
    if request.param == "memory":
        yield MemoryStorage()
    elif request.param == "sqlite":
        yield SqliteStorage(tmp_path / "outbox.db")
    else:
        dsn = request.getfixturevalue("postgres_dsn")
        with contextlib.closing(PostgresStorage(dsn, clock="caller")) as backend:
            yield backend


@pytest.fixture
def mailer(server: SmtpServer, storage: Storage) -> Iterator[Mailstrom]:
    config = Config(
        helo_name="app.example.test",
        delivery=RelayConfig(host=server.host, port=server.port, tls="none"),
        retry=POLICY,
        timeouts=Timeouts.uniform(5),
    )
    mailer = Mailstrom(config, storage, clock=lambda: NOW)
    yield mailer
    mailer.stop()


MESSAGE = (
    b"From: app@example.test\r\nTo: a@example.test\r\nSubject: hi\r\n"
    b"Message-ID: <age@example.test>\r\n\r\nbody\r\n"
)


def attempt(mailer: Mailstrom, message_id: str, at: float) -> tuple[str, object]:
    """Run one attempt at ``at``; the recipient's result and next attempt."""
    assert mailer.run_once(at) == 1
    [recipient] = mailer.query_status(message_id).recipients
    if recipient.result is DeliveryResult.FAILED:
        return recipient.result.value, recipient.status_code
    return recipient.result.value, recipient.next_attempt_at


class TestScheduledMail:
    def test_a_deferral_at_its_time_a_week_ahead_is_retried(
        self, mailer: Mailstrom, server: SmtpServer
    ) -> None:
        """Scheduled 7 days ahead (past max_age from its storing), its first
        attempt deferred is retried 5 minutes later, and the retry delivers.
        Counting from its storing it would have failed at once (5.4.7)."""
        due = NOW + 7 * DAY
        message_id = mailer.send_email(MESSAGE, send_at=START + timedelta(days=7))
        assert mailer.query_status(message_id).first_due_at == due
        assert attempt(mailer, message_id, due) == ("deferred", due + 300)
        server.handler.data_reply = None
        assert attempt(mailer, message_id, due + 300) == ("delivered", None)
        assert len(server.handler.messages) == 1

    def test_its_retries_end_max_age_after_its_time(self, mailer: Mailstrom) -> None:
        """The last retry lands on its time plus max_age; an attempt then
        deferred is the last, and its recipient fails with 5.4.7."""
        due = NOW + 7 * DAY
        message_id = mailer.send_email(MESSAGE, send_at=START + timedelta(days=7))
        attempt(mailer, message_id, due)
        almost = due + MAX_AGE - 1
        assert attempt(mailer, message_id, almost) == ("deferred", due + MAX_AGE)
        assert attempt(mailer, message_id, due + MAX_AGE) == (
            "failed",
            DELIVERY_TIME_EXPIRED,
        )

    def test_a_reschedule_before_any_attempt_moves_its_time(
        self, mailer: Mailstrom
    ) -> None:
        """A message sent now and rescheduled 6 days ahead before any
        attempt gets its retries counted from then."""
        message_id = mailer.send_email(MESSAGE, send_at=START + timedelta(hours=1))
        where = QueueFilter(ids=(message_id,))
        assert mailer.schedule(where, START + timedelta(days=6)) == [message_id]
        due = NOW + 6 * DAY
        assert attempt(mailer, message_id, due) == ("deferred", due + 300)

    def test_a_reschedule_after_an_attempt_keeps_its_time(
        self, mailer: Mailstrom
    ) -> None:
        """Once attempted, a message rescheduled later still gives up
        max_age after it was first due."""
        message_id = mailer.send_email(MESSAGE)
        attempt(mailer, message_id, NOW)
        where = QueueFilter(ids=(message_id,))
        assert mailer.schedule(where, START + timedelta(days=6)) == [message_id]
        assert attempt(mailer, message_id, NOW + 6 * DAY) == (
            "failed",
            DELIVERY_TIME_EXPIRED,
        )


class TestUnscheduledMail:
    def test_retries_end_max_age_after_it_was_stored(self, mailer: Mailstrom) -> None:
        """Sent at once and deferred, it is retried until created_at +
        max_age, and fails when deferred then."""
        message_id = mailer.send_email(MESSAGE)
        assert mailer.query_status(message_id).retry_since == NOW
        assert attempt(mailer, message_id, NOW) == ("deferred", NOW + 300)
        almost = NOW + MAX_AGE - 1
        assert attempt(mailer, message_id, almost) == ("deferred", NOW + MAX_AGE)
        assert attempt(mailer, message_id, NOW + MAX_AGE) == (
            "failed",
            DELIVERY_TIME_EXPIRED,
        )
