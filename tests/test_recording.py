"""When an attempt's outcome is recorded, and when its next attempt is due.

The next attempt counts from the end of the one before, not from its claim;
each message's outcome is stored as soon as its final reply is read, not
when the rest of its batch is done. Against scripted loopback servers, with
the worker's own threads and real time.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest
from support.scripted import Conversation, ScriptedServerFactory, normal

from mailstrom_py import (
    Config,
    DeliveryResult,
    Mailstrom,
    MemoryStorage,
    RelayConfig,
    RetryPolicy,
    SqliteStorage,
    Storage,
    Timeouts,
)
from mailstrom_py.delivery import RelayTransport
from mailstrom_py.testing import prepared_email
from mailstrom_py.worker import Worker

StorageFactory = Callable[[], Storage]


@pytest.fixture(params=["memory", "sqlite"])
def new_storage(request: pytest.FixtureRequest, tmp_path: Path) -> StorageFactory:
    """Builds the storage under test: MemoryStorage or SqliteStorage on a file."""
    if request.param == "memory":
        return MemoryStorage
    return lambda: SqliteStorage(tmp_path / "outbox.db")


def config_for(port: int, retry: RetryPolicy, timeouts: Timeouts) -> Config:
    return Config(
        helo_name="client.example.test",
        delivery=RelayConfig(host="127.0.0.1", port=port, tls="none"),
        retry=retry,
        timeouts=timeouts,
        delivery_threads=2,
    )


def message(subject: str = "hi") -> bytes:
    return (
        "From: s@example.test\r\nTo: a@example.test\r\n"
        f"Subject: {subject}\r\n\r\nbody\r\n"
    ).encode()


def poll_until(predicate: Callable[[], bool], timeout: float = 10) -> None:
    """Wait until ``predicate`` holds, looking every 10 ms."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


class SilentAfterDot:
    """Never answers a final dot; notes when each connection came and went."""

    def __init__(self) -> None:
        self.connected: list[float] = []
        self.left: list[float] = []

    def __call__(self, conv: Conversation) -> None:
        self.connected.append(time.time())
        normal(on_dot=self._on_dot)(conv)

    def _on_dot(self, conv: Conversation, body: bytes) -> None:
        conv.sleep_until_closed(30)
        self.left.append(time.time())
        conv.close()


class TestBackoff:
    def test_the_next_attempt_counts_from_the_end_of_an_attempt_that_outlasts_the_delay(
        self, scripted_server: ScriptedServerFactory, new_storage: StorageFactory
    ) -> None:
        """An attempt cut off by data_done after longer than the retry delay is
        retried a full delay after it ended, not at once."""
        silent = SilentAfterDot()
        server = scripted_server(silent)
        data_done, delay = 1.0, 0.5
        timeouts = dataclasses.replace(Timeouts.uniform(5), data_done=data_done)
        retry = RetryPolicy(initial_delay=delay, jitter=0.0)
        with Mailstrom(
            config_for(server.port, retry, timeouts), new_storage()
        ) as mailer:
            message_id = mailer.send_email(message())
            first = mailer.wait(message_id, timeout=10)
            [r] = first.recipients
            assert (r.result, r.possibly_delivered) == (DeliveryResult.DEFERRED, True)
            assert r.next_attempt_at is not None and r.last_attempt_at is not None
            # Claimed at last_attempt_at, then at least data_done without a reply.
            assert r.next_attempt_at - r.last_attempt_at >= data_done + delay
            poll_until(lambda: len(silent.connected) >= 2 and len(silent.left) >= 1)
            # The client noted the attempt's end just after it hung up, a hair
            # before this server saw it leave.
            assert silent.connected[1] - silent.left[0] >= delay - 0.05
            assert silent.connected[1] >= r.next_attempt_at - 0.05


class HoldsTheSecondDot:
    """Answers the first message's final dot at once and the second's only
    once ``release`` is set; ``holding`` is set while it waits."""

    def __init__(self) -> None:
        self.holding = threading.Event()
        self.release = threading.Event()

    def on_dot(self, conv: Conversation, body: bytes) -> str | None:
        if b"body 2" in body:
            self.holding.set()
            self.release.wait(10)
        return None


class TestRecordedAsSoonAsKnown:
    @pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "plain"])
    def test_a_message_is_recorded_while_the_next_of_its_batch_waits(
        self,
        scripted_server: ScriptedServerFactory,
        new_storage: StorageFactory,
        pipelining: bool,
    ) -> None:
        """With two messages in one batch and the second's final dot unanswered,
        the first is already DELIVERED in storage."""
        dots = HoldsTheSecondDot()
        ehlo = ("PIPELINING", "8BITMIME") if pipelining else ("8BITMIME",)
        server = scripted_server(normal(ehlo_lines=ehlo, on_dot=dots.on_dot))
        storage = new_storage()
        transport = RelayTransport(
            RelayConfig(host="127.0.0.1", port=server.port, tls="none"),
            helo_name="client.example.test",
            timeouts=Timeouts.uniform(10),
        )
        worker = Worker(storage, transport, RetryPolicy(), threads=1)
        first, second = prepared_email(1), prepared_email(2)
        now = time.time()
        storage.add_many([first, second], now)
        with closing(storage), closing(transport):
            attempt = threading.Thread(target=worker.run_once, args=(now,))
            attempt.start()
            try:
                assert dots.holding.wait(10)
                assert storage.status(first.message_id).succeeded
                assert not storage.status(second.message_id).completed
            finally:
                dots.release.set()
                attempt.join(10)
            assert storage.status(second.message_id).succeeded
        assert len(server.bodies) == 2
