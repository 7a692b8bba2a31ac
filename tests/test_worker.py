"""The worker on its own: delivery threads that claim due mail from storage.

Every test delivers to an aiosmtpd server on loopback; storage is real
(MemoryStorage, or SQLite files shared as processes share them).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import ClassVar

import pytest
from support.smtpd import RecordingHandler, SmtpServerFactory

from mailstrom_py import (
    MemoryStorage,
    RelayConfig,
    RetryPolicy,
    SqliteStorage,
    Timeouts,
)
from mailstrom_py.delivery import RelayTransport
from mailstrom_py.storage import Claim, Storage
from mailstrom_py.testing import prepared_email
from mailstrom_py.worker.scheduler import BATCH, MIN_LEASE, Worker

POLICY = RetryPolicy(initial_delay=60, jitter=0.0)


@pytest.fixture
def transport(smtp_server: SmtpServerFactory) -> Iterator[RelayTransport]:
    """A relay transport to a new recording server (``transport.server``)."""
    server = smtp_server()
    relay = RelayTransport(
        RelayConfig(host=server.host, port=server.port, tls="none"),
        helo_name="client.example.test",
        timeouts=Timeouts.uniform(10),
    )
    relay.server = server  # type: ignore[attr-defined]
    with closing(relay):
        yield relay


def handler_of(transport: RelayTransport) -> RecordingHandler:
    return transport.server.handler  # type: ignore[attr-defined,no-any-return]


def started(storage: Storage, transport: RelayTransport, **options: object) -> Worker:
    worker = Worker(storage, transport, options.pop("policy", POLICY), **options)  # type: ignore[arg-type]
    worker.start()
    return worker


class TestWakingUp:
    def test_mail_stored_here_goes_out_at_once_not_at_the_next_look(
        self, transport: RelayTransport
    ) -> None:
        """notify() wakes a delivery thread: a message stored in this process is
        attempted at once, though the worker looks on its own only once a minute."""
        storage = MemoryStorage()
        worker = started(storage, transport, refill_interval=60.0)
        try:
            time.sleep(0.2)  # past the first look, at an empty storage
            storage.add(prepared_email(1), time.time())
            began = time.monotonic()
            worker.notify("m1@example.test")
            status = worker.wait("m1@example.test", lambda s: s.completed, 10)
            assert status.succeeded
            assert time.monotonic() - began < 5
        finally:
            worker.stop(10)

    def test_a_retry_is_attempted_at_its_time_not_at_the_next_look(
        self, transport: RelayTransport
    ) -> None:
        """The outcome recorded here tells the worker when the retry is due."""
        storage = MemoryStorage()
        policy = RetryPolicy(initial_delay=0.3, multiplier=1.0, jitter=0.0)
        worker = started(storage, transport, refill_interval=60.0, policy=policy)
        try:
            storage.add(prepared_email(1, "t4busy@example.test"), time.time())
            worker.notify("m1@example.test")
            status = worker.wait("m1@example.test", lambda s: s.attempts >= 3, 10)
            assert status.attempts >= 3
        finally:
            worker.stop(10)

    def test_mail_stored_by_another_process_is_found_within_the_refill_interval(
        self, transport: RelayTransport, tmp_path: Path
    ) -> None:
        """Mail added through another storage on the same file, which wakes
        nobody, goes out within the refill interval."""
        db = tmp_path / "outbox.db"
        with closing(SqliteStorage(db)) as mine:
            worker = started(mine, transport, refill_interval=0.5)
            try:
                time.sleep(0.2)
                with closing(SqliteStorage(db)) as elsewhere:
                    elsewhere.add(prepared_email(1), time.time())
                status = worker.wait("m1@example.test", lambda s: s.completed, 10)
                assert status.succeeded
            finally:
                worker.stop(10)


class TestClaims:
    def test_a_message_being_attempted_is_not_claimed_by_another_worker(
        self, transport: RelayTransport, tmp_path: Path
    ) -> None:
        """While one worker waits for the reply to a message's final dot, a
        second worker on the same file finds nothing due; the message arrives
        once."""
        db = tmp_path / "outbox.db"
        handler = handler_of(transport)
        handler.data_delay = 1.5
        with closing(SqliteStorage(db)) as first, closing(SqliteStorage(db)) as second:
            first.add(prepared_email(1), time.time())
            worker = started(first, transport, threads=1)
            try:
                handler.wait_until(lambda: handler.transactions == 1)
                other = Worker(second, transport, POLICY)
                assert other.run_once(time.time()) == 0
                status = worker.wait("m1@example.test", lambda s: s.completed, 10)
            finally:
                worker.stop(10)
        assert status.succeeded
        assert len(handler.messages) == 1

    def test_run_once_claims_batches_as_the_threads_do(
        self, transport: RelayTransport
    ) -> None:
        """run_once() claims up to BATCH messages at a time until what is due is
        done, and counts every message attempted."""

        class Counting(MemoryStorage):
            claims: ClassVar[list[int]] = []

            def claim_due(self, now: float, limit: int, lease: float) -> list[Claim]:
                found = super().claim_due(now, limit, lease)
                Counting.claims.append(len(found))
                return found

        storage = Counting()
        now = time.time()
        storage.add_many([prepared_email(n) for n in range(2 * BATCH + 3)], now)
        worker = Worker(storage, transport, POLICY)
        assert worker.run_once(now) == 2 * BATCH + 3
        assert Counting.claims == [BATCH, BATCH, 3]
        assert len(handler_of(transport).messages) == 2 * BATCH + 3

    @pytest.mark.parametrize(
        ("initial_delay", "lease", "expected"),
        [(600.0, None, 600.0), (1.0, None, MIN_LEASE), (600.0, 5.0, 5.0)],
    )
    def test_claims_last_the_first_retry_delay_and_at_least_min_lease(
        self,
        transport: RelayTransport,
        initial_delay: float,
        lease: float | None,
        expected: float,
    ) -> None:
        """A worker claims for the policy's first retry delay, but never less than
        MIN_LEASE seconds, unless it is given a lease."""

        class Leases(MemoryStorage):
            asked: ClassVar[list[float]] = []

            def claim_due(self, now: float, limit: int, lease: float) -> list[Claim]:
                Leases.asked.append(lease)
                return super().claim_due(now, limit, lease)

        policy = RetryPolicy(initial_delay=initial_delay)
        Worker(Leases(), transport, policy, lease=lease).run_once()
        assert Leases.asked == [expected]

    @pytest.mark.parametrize("lease", [0.0, -1.0, float("nan"), float("inf")])
    def test_a_lease_must_be_a_finite_time_ahead(
        self, transport: RelayTransport, lease: float
    ) -> None:
        """Worker(lease=...) refuses what is not a finite number of seconds > 0."""
        with pytest.raises(ValueError, match="lease"):
            Worker(MemoryStorage(), transport, POLICY, lease=lease)
