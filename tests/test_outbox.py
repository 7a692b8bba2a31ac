"""The Outbox: prepares, stores and notifies, and delivers nothing itself.

A process that only queues mail (a web process next to ``mailstrom-py
worker``) uses an Outbox: it starts no thread and opens no connection, and its
``wait()`` sees what a worker in another process records in the shared SQLite
file.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.children import readline, spawn
from support.smtpd import SmtpServer, SmtpServerFactory

from mailstrom_py import (
    Config,
    DeliveryResult,
    InvalidMessageError,
    MailerClosedError,
    Mailstrom,
    MemoryStorage,
    MessageNotFound,
    MessageStatus,
    Outbox,
    QueueFilter,
    RelayConfig,
    SqliteStorage,
    StorageError,
)
from mailstrom_py.message.dkim import generate_key

ROOT = Path(__file__).resolve().parents[1]
NOW = 1_750_000_000.0

#: A worker in a process of its own: a Mailstrom on the SQLite file argv[1],
#: relaying to 127.0.0.1:argv[2], until the file argv[3] appears.
WORKER = """
import os, sys, time
from mailstrom_py import Config, Mailstrom, RelayConfig, SqliteStorage
path, port, stop = sys.argv[1], int(sys.argv[2]), sys.argv[3]
config = Config(helo_name="worker.example.test",
                delivery=RelayConfig(host="127.0.0.1", port=port, tls="none"))
with Mailstrom(config, SqliteStorage(path)):
    print("delivering", flush=True)
    while not os.path.exists(stop):
        time.sleep(0.05)
"""


def relay_to(host: str, port: int = 587) -> Config:
    return Config(
        helo_name="app.example.test",
        delivery=RelayConfig(host=host, port=port, tls="none"),
    )


def message(to: str = "a@example.test", subject: str = "hi") -> bytes:
    return (
        f"From: app@example.test\r\nTo: {to}\r\nSubject: {subject}\r\n\r\nbody\r\n"
    ).encode()


def queued(status: MessageStatus) -> bool:
    return all(r.result is DeliveryResult.QUEUED for r in status.recipients)


class CountingStorage(MemoryStorage):
    """A MemoryStorage that counts the status reads."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def status(self, message_id: str) -> MessageStatus:
        self.reads += 1
        return super().status(message_id)


class TestNothingNetworkRelated:
    def test_an_outbox_starts_no_thread(self, tmp_path: Path) -> None:
        """Building an Outbox for an unreachable relay, sending, waiting and
        closing leaves the number of threads as it was."""
        before = threading.active_count()
        outbox = Outbox(relay_to("relay.invalid"), SqliteStorage(tmp_path / "q.db"))
        message_id = outbox.send_email(message())
        status = outbox.wait(message_id, timeout=0.2)
        during = threading.active_count()
        outbox.close()
        assert queued(status)
        assert during == before == threading.active_count()

    def test_an_outbox_opens_no_connection(
        self, tmp_path: Path, smtp_server: SmtpServerFactory
    ) -> None:
        """With a live relay at the configured address, an Outbox stores mail
        and the relay sees no connection: the message stays queued."""
        server = smtp_server()
        with Outbox(
            relay_to(server.host, server.port), SqliteStorage(tmp_path / "q.db")
        ) as outbox:
            ids = [outbox.send_email(message(subject=f"n{n}")) for n in range(3)]
            statuses = [outbox.wait(i, timeout=0.5) for i in ids]
        assert all(queued(s) for s in statuses)
        assert server.handler.connections == 0

    def test_an_outbox_for_direct_delivery_loads_no_dns_library(self) -> None:
        """In a fresh interpreter, an Outbox with DirectConfig builds no
        resolver, so dnspython stays unloaded (a Mailstrom loads it)."""
        code = textwrap.dedent(
            """
            import sys
            import mailstrom_py as m
            config = m.Config(helo_name="app.test",
                              delivery=m.DirectConfig(nameservers=["127.0.0.1"]))
            with m.Outbox(config, m.MemoryStorage()) as outbox:
                outbox.send_email(b"From: a@example.test\\r\\nTo: b@example.test"
                                  b"\\r\\n\\r\\nHi\\r\\n")
            print("dns" in sys.modules)
            """
        )
        done = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            check=False,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        assert done.stdout.split() == ["False"]


class TestWaitingForAnotherProcess:
    def test_wait_returns_when_a_worker_in_another_process_delivers(
        self, tmp_path: Path, smtp_server: SmtpServerFactory
    ) -> None:
        """An Outbox's wait() returns, long before its timeout, with the
        outcome a Mailstrom in a child process records in the same SQLite file."""
        server = smtp_server()
        path, stop = tmp_path / "queue.db", tmp_path / "stop"
        outbox = Outbox(relay_to(server.host, server.port), SqliteStorage(path))
        worker = spawn(WORKER, path, server.port, stop)
        try:
            assert readline(worker) == "delivering"
            message_id = outbox.send_email(message())
            started = time.monotonic()
            status = outbox.wait(message_id, timeout=30)
            waited = time.monotonic() - started
            stop.touch()
            _, errors = worker.communicate(timeout=30)
            assert worker.returncode == 0, errors
        finally:
            if worker.returncode is None:
                worker.kill()
                worker.communicate(timeout=30)
            outbox.close()
        assert status.succeeded
        assert waited < 10
        assert [m.rcpt_tos for m in server.handler.messages] == [("a@example.test",)]

    def test_wait_reads_storage_ever_less_often_up_to_a_bound(self) -> None:
        """With nobody delivering, wait() reads the status a few times a second
        (every 10 ms at first, every 200 ms at most), then returns it queued."""
        storage = CountingStorage()
        outbox = Outbox(relay_to("relay.invalid"), storage)
        message_id = outbox.send_email(message())
        started = time.monotonic()
        status = outbox.wait(message_id, timeout=1.0)
        waited = time.monotonic() - started
        assert queued(status)
        assert 1.0 <= waited < 2.0
        assert 4 <= storage.reads <= 15

    def test_wait_on_an_unknown_id_raises(self) -> None:
        """wait() on an id nobody stored raises MessageNotFound at once."""
        outbox = Outbox(relay_to("relay.invalid"), MemoryStorage())
        with pytest.raises(MessageNotFound):
            outbox.wait("nobody@example.test", timeout=5)


class TestNotify:
    def test_notify_hears_of_each_message_after_storage_has_it(self) -> None:
        """notify is called with the id of a message already stored."""
        storage = MemoryStorage()
        heard: list[tuple[str, MessageStatus]] = []
        outbox = Outbox(
            relay_to("relay.invalid"),
            storage,
            notify=lambda i: heard.append((i, storage.status(i))),
        )
        message_id = outbox.send_email(message())
        assert [i for i, _ in heard] == [message_id]
        assert queued(heard[0][1])

    def test_send_emails_notifies_every_message_in_order(self) -> None:
        """A batch notifies each of its ids once, in the order given."""
        heard: list[str] = []
        outbox = Outbox(relay_to("relay.invalid"), MemoryStorage(), notify=heard.append)
        ids = outbox.send_emails([message(subject=f"n{n}") for n in range(3)])
        assert heard == ids

    def test_kick_and_release_notify_but_hold_and_drop_do_not(self) -> None:
        """Mail made due now is notified; mail held or dropped is not."""
        heard: list[str] = []
        outbox = Outbox(relay_to("relay.invalid"), MemoryStorage(), notify=heard.append)
        message_id = outbox.send_email(message())
        everything = QueueFilter()
        heard.clear()
        assert outbox.hold(everything) == [message_id]
        assert heard == []
        assert outbox.release(everything) == [message_id]
        assert outbox.kick(everything) == [message_id]
        assert heard == [message_id, message_id]
        heard.clear()
        assert outbox.drop(everything) == [message_id]
        assert heard == []

    def test_a_failing_notify_loses_nothing(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A notify that raises is logged at WARNING; send_email() still returns
        the id of the stored message."""

        def broken(message_id: str) -> None:
            raise ConnectionError("the notification channel is down")

        outbox = Outbox(relay_to("relay.invalid"), MemoryStorage(), notify=broken)
        with caplog.at_level(logging.WARNING, logger="mailstrom_py.core.outbox"):
            message_id = outbox.send_email(message())
        assert queued(outbox.query_status(message_id))
        assert message_id in caplog.text

    def test_a_bare_outbox_notifies_nobody(self) -> None:
        """Without notify, mail is stored and nothing else happens: a worker
        on the same storage finds it there."""
        storage = MemoryStorage()
        outbox = Outbox(relay_to("relay.invalid"), storage)
        message_id = outbox.send_email(message())
        assert storage.find(QueueFilter(completed=False)) == [
            outbox.query_status(message_id)
        ]


class TestPreparing:
    def test_an_outbox_stores_what_a_mailstrom_would(self) -> None:
        """For the same message and time, an Outbox stores the very bytes and
        envelope a Mailstrom stores."""
        config = relay_to("relay.invalid")
        raw = message().replace(
            b"Subject", b"Message-ID: <same@example.test>\r\nSubject"
        )
        outbox = Outbox(config, MemoryStorage(), clock=lambda: NOW)
        mailer = Mailstrom(config, clock=lambda: NOW)
        assert outbox.send_email(raw, rcpt_to=["b@example.test"]) == "same@example.test"
        assert mailer.send_email(raw, rcpt_to=["b@example.test"]) == "same@example.test"
        stored = outbox.storage.email("same@example.test")
        assert stored == mailer.storage.email("same@example.test")
        assert stored.recipients == ("b@example.test",)
        mailer.stop()

    def test_an_outbox_signs_with_the_configured_dkim_key(self) -> None:
        """With a DKIM key configured, the stored message is signed already."""
        key = generate_key("example.test", "sel", "ed25519-sha256")
        config = Config(
            helo_name="app.example.test",
            delivery=RelayConfig("relay.invalid", tls="none"),
            dkim=[key],
        )
        outbox = Outbox(config, MemoryStorage())
        message_id = outbox.send_email(message())
        assert outbox.storage.email(message_id).data.startswith(b"DKIM-Signature:")

    def test_bad_input_is_refused_and_nothing_is_stored_or_notified(self) -> None:
        """A message without a recipient raises InvalidMessageError; storage
        stays empty and notify is not called."""
        heard: list[str] = []
        outbox = Outbox(relay_to("relay.invalid"), MemoryStorage(), notify=heard.append)
        with pytest.raises(InvalidMessageError):
            outbox.send_email(b"From: app@example.test\r\nSubject: x\r\n\r\nbody\r\n")
        assert outbox.count_messages() == 0
        assert heard == []


class TestLifecycle:
    def test_closing_refuses_further_mail_and_closes_storage(
        self, tmp_path: Path
    ) -> None:
        """After close() (or leaving `with`), send_email() raises
        MailerClosedError and the storage is closed; stored mail stays in the
        file for a worker."""
        path = tmp_path / "q.db"
        storage = SqliteStorage(path)
        with Outbox(relay_to("relay.invalid"), storage) as outbox:
            message_id = outbox.send_email(message())
        assert outbox.closed
        with pytest.raises(MailerClosedError):
            outbox.send_email(message())
        with pytest.raises(StorageError):
            storage.status(message_id)
        outbox.close()  # again: nothing happens
        reopened = SqliteStorage(path)
        assert queued(reopened.status(message_id))
        reopened.close()

    def test_closing_with_mail_only_in_memory_warns(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Closing an Outbox on MemoryStorage with mail pending says it is lost."""
        outbox = Outbox(relay_to("relay.invalid"), MemoryStorage())
        outbox.send_email(message())
        with caplog.at_level(logging.WARNING, logger="mailstrom_py.core.outbox"):
            outbox.close()
        assert "1 message not yet delivered is lost" in caplog.text

    def test_a_mailstrom_is_an_outbox_that_delivers(self, server: SmtpServer) -> None:
        """Mailstrom is an Outbox; its own worker is notified and wakes its wait()."""
        with Mailstrom(relay_to(server.host, server.port)) as mailer:
            assert isinstance(mailer, Outbox)
            status = mailer.wait(mailer.send_email(message()), timeout=10)
        assert status.succeeded

    def test_queue_operations_work_on_an_outbox(self) -> None:
        """list, count, hold, release, drop and query_recent work on an Outbox's
        storage as on a Mailstrom's."""
        outbox = Outbox(relay_to("relay.invalid"), MemoryStorage())
        a = outbox.send_email(message("a@example.test"))
        b = outbox.send_email(message("b@example.net"))
        assert outbox.hold(QueueFilter(domain="example.net")) == [b]
        assert outbox.count_messages(QueueFilter(held=True)) == 1
        assert [s.message_id for s in outbox.list_messages()] == [a, b]
        assert [s.message_id for s in outbox.query_recent()] == [a, b]
        assert outbox.release(QueueFilter(ids=(b,))) == [b]
        assert outbox.drop(QueueFilter(ids=(a,))) == [a]
        assert outbox.count_messages() == 1


@pytest.fixture
def server() -> Iterator[SmtpServer]:
    with SmtpServer() as srv:
        yield srv
