"""The Mailstrom facade and its worker thread, against a real loopback server."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import ClassVar

import pytest
from support.scripted import Conversation, ScriptedServerFactory, normal
from support.smtpd import RecordingHandler, SmtpServer

from mailstrom_py import (
    Config,
    DeliveryResult,
    InvalidMessageError,
    MailerClosedError,
    Mailstrom,
    MemoryStorage,
    MessageNotFound,
    PreparedEmail,
    RelayConfig,
    RetryPolicy,
    SqliteStorage,
    StorageError,
    SuppressionPolicy,
    Timeouts,
    WorkerError,
)
from mailstrom_py.delivery import Outcome, RelayTransport
from mailstrom_py.testing import prepared_email
from mailstrom_py.worker.scheduler import BATCH, Worker


def config_for(server: SmtpServer, threads: int = 4) -> Config:
    return Config(
        helo_name="client.example.test",
        delivery=RelayConfig(host=server.host, port=server.port, tls="none"),
        retry=RetryPolicy(initial_delay=60, jitter=0.0),
        timeouts=Timeouts.uniform(5),
        delivery_threads=threads,
    )


def message(to: str = "a@example.test", subject: str = "hi") -> bytes:
    return (
        f"From: sender@example.test\r\nTo: {to}\r\nSubject: {subject}\r\n\r\nbody\r\n"
    ).encode()


@pytest.fixture
def server() -> Iterator[SmtpServer]:
    with SmtpServer() as srv:
        yield srv


class TestSendEmail:
    def test_returns_the_message_id_without_brackets(self, server: SmtpServer) -> None:
        """The id is the Message-ID header's value without angle brackets."""
        mailer = Mailstrom(config_for(server))
        raw = message().replace(
            b"Subject", b"Message-ID: <abc.123@example.test>\r\nSubject"
        )
        assert mailer.send_email(raw) == "abc.123@example.test"
        mailer.stop()

    def test_generated_message_id_uses_the_helo_name(self, server: SmtpServer) -> None:
        """A message without Message-ID gets one ending in @helo_name."""
        mailer = Mailstrom(config_for(server))
        assert mailer.send_email(message()).endswith("@client.example.test")
        mailer.stop()

    def test_a_new_message_is_queued(self, server: SmtpServer) -> None:
        """Right after send_email() every recipient is QUEUED and nothing was sent."""
        mailer = Mailstrom(config_for(server))
        message_id = mailer.send_email(message("a@example.test, b@example.test"))
        status = mailer.query_status(message_id)
        assert [r.result for r in status.recipients] == [DeliveryResult.QUEUED] * 2
        assert server.handler.connections == 0
        mailer.stop()

    @pytest.mark.parametrize(
        ("raw", "field"),
        [
            (b"From: a@example.test\r\nTo: ok@y.test\r\n\r\nx\r\n", None),
            (
                message().replace(
                    b"Subject: hi", b"Subject: =?UTF-8?Q?x=0AX-Evil:_1?="
                ),
                "Subject",
            ),
            (message("alice@example.org)<bob@example.org>"), "To"),
            (b"To: a@example.test\r\nSubject: no sender\r\n\r\nx\r\n", "From"),
            (b"From: a@example.test\r\nSubject: nobody\r\n\r\nx\r\n", None),
        ],
    )
    def test_bad_input_raises_and_stores_nothing(
        self, server: SmtpServer, raw: bytes, field: str | None
    ) -> None:
        """A1-A3, A8: unusable input raises InvalidMessageError; nothing is stored or sent."""
        storage = MemoryStorage()
        mailer = Mailstrom(config_for(server), storage)
        if field is None and b"ok@y.test" in raw:
            with pytest.raises(InvalidMessageError):
                mailer.send_email(raw, mail_from="ok@y.test\r\nRCPT TO:<e@z.test>")
        else:
            with pytest.raises(InvalidMessageError) as info:
                mailer.send_email(raw)
            if field is not None:
                assert info.value.field == field
        assert storage.next_due() is None
        mailer.start()
        mailer.stop()
        assert server.handler.connections == 0

    def test_a_crlf_in_an_explicit_recipient_is_refused(
        self, server: SmtpServer
    ) -> None:
        """A1: the envelope cannot be forged through rcpt_to."""
        mailer = Mailstrom(config_for(server))
        with pytest.raises(ValueError, match="rcpt"):
            mailer.send_email(message(), rcpt_to=["ok@y.test\r\nDATA"])
        mailer.stop()

    def test_unknown_id_raises_lookup_error(self, server: SmtpServer) -> None:
        """query_status() of an id never sent raises MessageNotFound (a LookupError)."""
        mailer = Mailstrom(config_for(server))
        with pytest.raises(MessageNotFound):
            mailer.query_status("nope@example.test")
        mailer.stop()


class TestSendEmails:
    def test_a_batch_is_stored_and_delivered_in_order(self, server: SmtpServer) -> None:
        """send_emails() returns the ids in input order and delivers every message."""
        mailer = Mailstrom(config_for(server))
        ids = mailer.send_emails([message(subject=f"n{n}") for n in range(5)])
        assert len(set(ids)) == 5
        mailer.run_once()
        assert all(mailer.query_status(i).succeeded for i in ids)
        subjects = [m.data.split(b"Subject: ")[1][:2] for m in server.handler.messages]
        assert sorted(subjects) == [b"n0", b"n1", b"n2", b"n3", b"n4"]
        mailer.stop()

    def test_one_bad_message_stores_none_and_names_its_index(
        self, server: SmtpServer
    ) -> None:
        """A batch with one unusable message raises with its index; nothing is stored."""
        storage = MemoryStorage()
        mailer = Mailstrom(config_for(server), storage)
        batch = [message(), message("alice@example.org)<bob@example.org>"), message()]
        with pytest.raises(InvalidMessageError) as info:
            mailer.send_emails(batch)
        assert info.value.index == 1
        assert info.value.field == "To"
        assert storage.next_due() is None
        mailer.stop()


class TestWorkerThread:
    def test_mail_sent_before_start_goes_out_after(self, server: SmtpServer) -> None:
        """Messages wait in storage until start(), then are delivered."""
        mailer = Mailstrom(config_for(server))
        message_id = mailer.send_email(message())
        mailer.start()
        status = mailer.wait(message_id, timeout=10)
        mailer.stop()
        assert status.succeeded

    def test_context_manager_delivers_and_stops(self, server: SmtpServer) -> None:
        """Inside `with`, mail is delivered in the background; afterwards sends raise."""
        with Mailstrom(config_for(server)) as mailer:
            ids = [mailer.send_email(message(subject=f"n{n}")) for n in range(5)]
            statuses = [mailer.wait(i, timeout=10) for i in ids]
        assert all(s.succeeded for s in statuses)
        with pytest.raises(MailerClosedError):
            mailer.send_email(message())
        with pytest.raises(MailerClosedError):
            mailer.start()

    def test_stop_waits_for_the_transaction_in_progress(self) -> None:
        """stop() never cuts an SMTP transaction in half: it waits for the reply."""
        handler = RecordingHandler(data_delay=1.0)
        with SmtpServer(handler=handler) as server:
            mailer = Mailstrom(config_for(server))
            mailer.start()
            message_id = mailer.send_email(message())
            handler.wait_until(lambda: "DATA" in handler.commands, timeout=10)
            assert mailer.stop(timeout=10)
            assert mailer.query_status(message_id).succeeded
            assert handler.transactions == 1
            [received] = handler.messages
            assert received.rcpt_tos == ("a@example.test",)

    def test_stop_does_not_wait_long_for_a_server_silent_at_quit(
        self, scripted_server: ScriptedServerFactory
    ) -> None:
        """A kept connection whose server never answers QUIT holds stop() for
        about two seconds, not for a full command timeout."""
        release = threading.Event()

        def silent_at_quit(conv: Conversation, line: str) -> str | None:
            release.wait(60)
            conv.close()
            return None

        server = scripted_server(normal(on_quit=silent_at_quit))
        config = Config(
            helo_name="client.example.test",
            delivery=RelayConfig(host=server.host, port=server.port, tls="none"),
            timeouts=Timeouts.uniform(30),
        )
        try:
            mailer = Mailstrom(config)
            mailer.start()
            assert mailer.wait(mailer.send_email(message()), timeout=10).succeeded
            started = time.monotonic()
            assert mailer.stop(timeout=10)
            assert time.monotonic() - started < 10
        finally:
            release.set()

    def test_a_failing_transport_defers_and_the_worker_lives_on(
        self, server: SmtpServer
    ) -> None:
        """H8: an exception while delivering one message defers it; the next is delivered."""
        config = config_for(server)
        real = RelayTransport(
            config.delivery,  # type: ignore[arg-type]
            helo_name=config.helo_name,
            timeouts=config.timeouts,
        )

        class FailsOnce:
            calls = 0

            def deliver(
                self, email: PreparedEmail, recipients: Sequence[str]
            ) -> list[Outcome]:
                FailsOnce.calls += 1
                if FailsOnce.calls == 1:
                    raise RuntimeError("injected failure")
                return real.deliver(email, recipients)

            def close(self) -> None:
                real.close()

        with Mailstrom(config, transport=FailsOnce()) as mailer:
            first = mailer.send_email(message(subject="first"))
            status = mailer.wait(first, timeout=10)
            [r] = status.recipients
            assert (r.result, r.status_code) == (DeliveryResult.DEFERRED, "4.3.0")
            assert "injected failure" in (r.detail or "")
            second = mailer.send_email(message(subject="second"))
            assert mailer.wait(second, timeout=10).succeeded

    def test_start_up_errors_reach_the_caller(self, server: SmtpServer) -> None:
        """An error while the worker loads due work is raised by start()."""

        class BrokenStorage(MemoryStorage):
            def next_due(self) -> float | None:
                raise StorageError("disk on fire")

        mailer = Mailstrom(config_for(server), BrokenStorage())
        with pytest.raises(StorageError, match="disk on fire"):
            mailer.start()

    def test_run_once_is_refused_while_the_thread_runs(
        self, server: SmtpServer
    ) -> None:
        """Driving the worker by hand and by thread at once is an error."""
        with Mailstrom(config_for(server)) as mailer, pytest.raises(WorkerError):
            mailer.run_once()

    @pytest.mark.parametrize("backend", ["memory", "sqlite"])
    def test_many_threads_sending_at_once(
        self, server: SmtpServer, backend: str, tmp_path: Path
    ) -> None:
        """H11: 16 threads x 100 sends: unique ids, each delivered exactly once
        (SQLite at NORMAL, to keep the run short)."""
        storage = (
            MemoryStorage()
            if backend == "memory"
            else SqliteStorage(tmp_path / "outbox.db", synchronous="NORMAL")
        )
        ids: list[str] = []
        lock = threading.Lock()
        with Mailstrom(config_for(server), storage) as mailer:

            def send_many(k: int) -> None:
                mine = [
                    mailer.send_email(message(subject=f"{k}-{n}")) for n in range(100)
                ]
                with lock:
                    ids.extend(mine)

            threads = [threading.Thread(target=send_many, args=(k,)) for k in range(16)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            statuses = [mailer.wait(i, timeout=120) for i in ids]
        assert len(set(ids)) == 1600
        assert all(s.succeeded for s in statuses)
        subjects = [
            m.data.split(b"Subject: ")[1].split(b"\r\n")[0]
            for m in server.handler.messages
        ]
        assert len(subjects) == len(set(subjects)) == 1600


class TestBatches:
    def test_due_mail_is_claimed_in_batches_and_recorded_message_by_message(
        self, server: SmtpServer
    ) -> None:
        """A delivery thread claims up to BATCH due messages at a time: one claim
        for the batch, one record per message as its outcome comes, each message
        delivered exactly once."""

        class Counting(MemoryStorage):
            claims: ClassVar[list[int]] = []
            records: ClassVar[list[int]] = []

            def claim_due(self, now, limit, lease):  # type: ignore[no-untyped-def]
                claims = super().claim_due(now, limit, lease)
                if claims:
                    Counting.claims.append(len(claims))
                return claims

            def record_many(self, records):  # type: ignore[no-untyped-def]
                Counting.records.append(len(records))
                return super().record_many(records)

        mailer = Mailstrom(config_for(server, threads=1), Counting())
        ids = [mailer.send_email(message(subject=f"n{n}")) for n in range(64)]
        with mailer:
            statuses = [mailer.wait(i, timeout=30) for i in ids]
        assert all(s.succeeded for s in statuses)
        assert BATCH > 1
        assert Counting.claims == [BATCH] * (64 // BATCH)
        assert Counting.records == [1] * 64
        assert len(server.handler.messages) == 64

    def test_each_message_of_a_batch_gets_its_own_outcomes(
        self, server: SmtpServer
    ) -> None:
        """Messages delivered together keep separate results: per recipient the
        reply it got, retries scheduled only for the deferred (the suppression
        list is off, or the first 5.1.1 would refuse the later ones at once)."""
        to = ["ok@example.test", "t4busy@example.test", "p5gone@example.test"]
        config = dataclasses.replace(
            config_for(server, threads=1),
            suppression=SuppressionPolicy(enabled=False),
        )
        mailer = Mailstrom(config)
        ids = [
            mailer.send_email(message(to=to[n % 3], subject=f"n{n}")) for n in range(30)
        ]
        with mailer:
            statuses = [mailer.wait(i, timeout=30) for i in ids]
        for n, status in enumerate(statuses):
            [r] = status.recipients
            expected = [
                (DeliveryResult.DELIVERED, "2.0.0"),
                (DeliveryResult.DEFERRED, "4.2.0"),
                (DeliveryResult.FAILED, "5.1.1"),
            ][n % 3]
            assert (r.result, r.status_code, r.attempts) == (*expected, 1), n
            assert (r.next_attempt_at is not None) == (n % 3 == 1)
        assert len(server.handler.messages) == 10

    def test_threads_claim_batches_in_turn_until_nothing_is_due(
        self, server: SmtpServer
    ) -> None:
        """Mail stored before start() beyond what one batch holds is all sent,
        each message once, by the threads taking batches in turn."""
        config = config_for(server, threads=2)
        storage = MemoryStorage()
        transport = RelayTransport(
            config.delivery,  # type: ignore[arg-type]
            helo_name=config.helo_name,
            timeouts=config.timeouts,
        )
        worker = Worker(storage, transport, config.retry, threads=2)
        storage.add_many([prepared_email(n) for n in range(5 * BATCH)], time.time())
        worker.start()
        try:
            for n in range(5 * BATCH):
                status = worker.wait(
                    f"m{n}@example.test", lambda s: s.completed, timeout=30
                )
                assert status.succeeded, n
        finally:
            worker.stop(timeout=10)
            transport.close()
        assert len(server.handler.messages) == 5 * BATCH

    def test_stop_leaves_mail_not_yet_begun_due_in_storage(self) -> None:
        """Messages still waiting for a delivery thread at stop(drain=0) are
        untouched: queued, no attempt counted, and delivered by the next worker."""
        handler = RecordingHandler(data_delay=0.1)
        storage = MemoryStorage()
        with SmtpServer(handler=handler) as server:
            first = Mailstrom(config_for(server, threads=1), storage)
            ids = [first.send_email(message(subject=f"n{n}")) for n in range(40)]
            first.start()
            handler.wait_until(lambda: "DATA" in handler.commands, timeout=10)
            assert first.stop(timeout=30, drain=0)
            untouched = [
                i for i in ids if storage.status(i).recipients[0].attempts == 0
            ]
            assert untouched, "the stop came after every message had begun"
            assert all(
                storage.status(i).recipients[0].result is DeliveryResult.QUEUED
                for i in untouched
            )
            with Mailstrom(config_for(server, threads=1), storage) as second:
                assert all(second.wait(i, timeout=60).succeeded for i in ids)
        subjects = [m.data.split(b"Subject: ")[1][:3] for m in handler.messages]
        assert len(subjects) == len(set(subjects)) == 40


def test_memory_storage_loses_queued_mail_with_the_process(refused_port: int) -> None:
    """H10: with MemoryStorage, mail still queued when the process exits is gone;
    the process still exits promptly (the worker's threads do not hold it)."""
    script = (
        "from mailstrom_py import *\n"
        "c = Config(helo_name='a.example.test', delivery=RelayConfig(host='127.0.0.1', "
        f"port={refused_port}, tls='none'), timeouts=Timeouts.uniform(2))\n"
        "m = Mailstrom(c)\n"
        "m.start()\n"
        "print(m.send_email(b'From: a@example.test\\r\\nTo: b@example.test\\r\\n\\r\\nx\\r\\n'))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("@a.example.test")
