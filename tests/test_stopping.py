"""What stopping a mailer does with the mail it holds, and waiting for a queue
to drain, against a real loopback server.

Leaving a ``with`` block (or ``stop()``) first gives mail that is due its
attempt, within ``Config.drain_timeout``; mail still pending after that is
counted in a warning when the storage does not keep it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from support.smtpd import RecordingHandler, SmtpServer, SmtpServerFactory

from mailstrom_py import (
    Config,
    Mailstrom,
    MemoryStorage,
    RelayConfig,
    RetryPolicy,
    SqliteStorage,
    Storage,
    Timeouts,
)

StorageFactory = Callable[[], Storage]


def config_for(server: SmtpServer, **options: object) -> Config:
    return Config(
        helo_name="client.example.test",
        delivery=RelayConfig(host=server.host, port=server.port, tls="none"),
        retry=RetryPolicy(initial_delay=60, jitter=0.0),
        timeouts=Timeouts.uniform(5),
        **options,  # type: ignore[arg-type]
    )


def message(n: int, to: str = "a@example.test") -> bytes:
    return (
        f"From: s@example.test\r\nTo: {to}\r\nSubject: n{n}\r\n\r\nbody {n}\r\n"
    ).encode()


def lost_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "lost" in r.getMessage()
    ]


@pytest.fixture(params=["memory", "sqlite"])
def new_storage(request: pytest.FixtureRequest, tmp_path: Path) -> StorageFactory:
    """Builds the storage under test: MemoryStorage or SqliteStorage on a file."""
    if request.param == "memory":
        return MemoryStorage
    return lambda: SqliteStorage(tmp_path / "outbox.db")


class TestLeavingTheBlock:
    def test_every_message_sent_in_the_block_arrives(
        self, smtp_server: SmtpServerFactory
    ) -> None:
        """500 messages sent in a with-block with the default MemoryStorage have
        all arrived once the block is left."""
        server = smtp_server()
        with Mailstrom(config_for(server)) as mailer:
            ids = [mailer.send_email(message(n)) for n in range(500)]
        assert len(server.handler.messages) == 500
        assert all(mailer.query_status(i).succeeded for i in ids)

    def test_deferred_mail_is_counted_as_lost_only_without_durable_storage(
        self,
        smtp_server: SmtpServerFactory,
        new_storage: StorageFactory,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """Mail a server defers is still pending at the end of the block: with
        MemoryStorage a WARNING gives the number lost; SqliteStorage keeps it."""
        server = smtp_server()
        storage = new_storage()
        caplog.set_level(logging.WARNING, logger="mailstrom_py")
        with Mailstrom(config_for(server), storage) as mailer:
            for n in range(3):
                mailer.send_email(message(n, "t4busy@example.test"))
            mailer.send_email(message(3))
        assert len(server.handler.messages) == 1
        expected = [] if storage.durable else ["3 messages"]
        assert [w.split(" not yet")[0] for w in lost_warnings(caplog)] == expected

    def test_the_wait_for_due_mail_is_limited_by_drain_timeout(
        self, smtp_server: SmtpServerFactory, caplog: pytest.LogCaptureFixture
    ) -> None:
        """With a slow server, leaving the block gives due mail drain_timeout
        seconds, then lets the deliveries under way end and stops, warning of
        the mail that had no attempt and is lost."""
        server = smtp_server(handler=RecordingHandler(data_delay=0.05))
        caplog.set_level(logging.WARNING, logger="mailstrom_py")
        with Mailstrom(config_for(server, drain_timeout=1.0)) as mailer:
            for n in range(300):
                mailer.send_email(message(n))
            began = time.monotonic()
        took = time.monotonic() - began
        # The deliveries under way at the deadline end: a batch of at most 16
        # messages per delivery thread, 0.05 s each.
        assert 1.0 <= took < 2.5
        assert 0 < len(server.handler.messages) < 300
        warnings = [r.getMessage() for r in caplog.records]
        assert any("no attempt" in w for w in warnings)
        [lost] = lost_warnings(caplog)
        assert lost.startswith(f"{300 - len(server.handler.messages)} messages")


class TestFlush:
    def test_flush_returns_true_once_every_due_message_had_its_attempt(
        self, smtp_server: SmtpServerFactory, new_storage: StorageFactory
    ) -> None:
        """flush() waits for due mail, delivered or deferred, and says True."""
        server = smtp_server()
        with Mailstrom(config_for(server), new_storage()) as mailer:
            ids = [mailer.send_email(message(n)) for n in range(50)]
            busy = mailer.send_email(message(50, "t4busy@example.test"))
            assert mailer.flush(timeout=30)
            assert all(mailer.query_status(i).succeeded for i in ids)
            assert mailer.query_status(busy).recipients[0].attempts == 1

    def test_flush_returns_false_when_the_timeout_comes_first(
        self, smtp_server: SmtpServerFactory
    ) -> None:
        """With a server slower than the timeout, flush() says False in time."""
        server = smtp_server(handler=RecordingHandler(data_delay=0.5))
        with Mailstrom(config_for(server, drain_timeout=0)) as mailer:
            for n in range(4):
                mailer.send_email(message(n))
            began = time.monotonic()
            assert not mailer.flush(timeout=0.2)
            assert time.monotonic() - began < 1.0
            assert mailer.flush(timeout=30)

    def test_flush_without_the_worker_says_whether_anything_is_due(
        self, smtp_server: SmtpServerFactory
    ) -> None:
        """Before start() nothing is delivered: flush() answers at once."""
        server = smtp_server()
        mailer = Mailstrom(config_for(server))
        assert mailer.flush(timeout=0)
        mailer.send_email(message(1))
        began = time.monotonic()
        assert not mailer.flush(timeout=10)
        assert time.monotonic() - began < 1.0
        mailer.stop()
