"""Claims outlive a slow attempt: the worker extends them while it runs.

Two workers share one queue; the server takes longer to answer the final dot
than a claim's lease. Without the extensions the second worker would claim the
message when the lease ends and send it again; with them, it is sent once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from support.smtpd import RecordingHandler, SmtpServer

from mailstrom_py import (
    Config,
    Mailstrom,
    PostgresStorage,
    RelayConfig,
    RetryPolicy,
    SqliteStorage,
    Storage,
    Timeouts,
)
from mailstrom_py.config import ConfigError
from mailstrom_py.config.loader import config_from_mapping

LEASE = 2.0
# Longer than two leases: a duplicate would start well before the dot's reply.
# A lease of 2 s leaves an extension (due at half the lease) a second of
# slack on a busy machine.
SLOW = 5.0
MESSAGE = (
    "From: app@example.test\r\nTo: r@example.test\r\nSubject: slow\r\n\r\nbody\r\n"
)


def deliver_once_with_two_workers(make_storage: Callable[[], Storage]) -> None:
    handler = RecordingHandler(data_delay=SLOW)
    with SmtpServer(handler=handler) as server:
        config = Config(
            helo_name="worker.example.test",
            delivery=RelayConfig(host=server.host, port=server.port, tls="none"),
            retry=RetryPolicy(initial_delay=60, jitter=0.0),
            timeouts=Timeouts.uniform(10),
            delivery_threads=1,
            claim_lease=LEASE,
            drain_timeout=0,
        )
        with (
            Mailstrom(config, make_storage()) as first,
            Mailstrom(config, make_storage()) as second,
        ):
            message_id = first.send_email(MESSAGE)
            status = first.wait(message_id, timeout=SLOW + 10)
            time.sleep(2 * LEASE)  # a duplicate claimed late would show now
            assert second.query_status(message_id) == status
        assert status.succeeded
        assert status.attempts == 1
        assert handler.transactions == 1
        assert len(handler.messages) == 1


def test_a_slow_attempt_keeps_its_claim_on_sqlite(tmp_path: Path) -> None:
    """Two workers on one SQLite file, a server that answers the dot after
    three leases: the message is attempted once and delivered once."""
    deliver_once_with_two_workers(lambda: SqliteStorage(tmp_path / "outbox.db"))


def test_a_slow_attempt_keeps_its_claim_on_postgres(postgres_dsn: str) -> None:
    """The same with two workers on one PostgreSQL database."""
    deliver_once_with_two_workers(lambda: PostgresStorage(postgres_dsn))


def test_the_lease_is_a_setting() -> None:
    """claim_lease is a number of seconds, as a Config field and a file key;
    anything but a finite time above zero is refused."""
    loaded = config_from_mapping(
        {
            "helo_name": "app.example.org",
            "delivery": {"kind": "relay", "host": "smtp.example.org"},
            "claim_lease": "2m",
        }
    )
    assert loaded.config.claim_lease == 120.0
    for bad in (0, -1.0, float("inf")):
        with pytest.raises(ConfigError, match="claim_lease"):
            Config(
                helo_name="app.example.org",
                delivery=RelayConfig(host="smtp.example.org"),
                claim_lease=bad,
            )
