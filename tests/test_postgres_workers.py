"""Workers sharing one PostgreSQL queue: with clocks that disagree, in processes
that are killed mid-batch, and many producers and workers at once.

Worker processes are fresh interpreters running this checkout's package
(support.children) and deliver to an aiosmtpd server in this process, which
records every message it accepts: a message delivered twice shows as its
Message-ID counted twice.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from contextlib import closing

import pytest

psycopg = pytest.importorskip("psycopg")

from support.children import kill, readline, spawn, wait_until  # noqa: E402
from support.smtpd import RecordingHandler, SmtpServer  # noqa: E402

from mailstrom_py import (  # noqa: E402
    Config,
    DeliveryResult,
    Mailstrom,
    Outbox,
    PostgresStorage,
    QueueFilter,
    RelayConfig,
    RetryPolicy,
)
from mailstrom_py.testing.transport import RecordingTransport  # noqa: E402

CONFIG = Config(
    helo_name="app.example.test",
    delivery=RelayConfig(host="127.0.0.1", port=9, tls="none"),
    retry=RetryPolicy(initial_delay=60, jitter=0.0),
)


def message(n: int, to: str | None = None) -> bytes:
    return (
        f"From: app@example.test\r\nTo: {to or f'r{n}@example.test'}\r\n"
        f"Subject: n{n}\r\n\r\nbody {n}\r\n"
    ).encode()


def completed(dsn: str) -> int:
    with closing(PostgresStorage(dsn, max_connections=1)) as storage:
        return storage.count(QueueFilter(completed=True))


# -- clocks that disagree -------------------------------------------------------------


@pytest.mark.parametrize("skew", [600.0, -600.0], ids=["ahead", "behind"])
def test_a_worker_whose_clock_is_ten_minutes_off_neither_steals_nor_starves(
    postgres_dsn: str, skew: float
) -> None:
    """A worker with a clock ten minutes off defers a message, then shares 60
    with a worker whose clock is right: each message is delivered once; the
    deferred one is attempted once, due again a minute later by the
    database's clock (not at once, nor eleven minutes on), and neither worker
    takes it before then."""
    transports = {"honest": RecordingTransport(), "skewed": RecordingTransport()}
    for transport in transports.values():
        transport.reply_to("later@example.test", 451, "4.7.1 try again later")
    honest = Mailstrom(
        CONFIG, PostgresStorage(postgres_dsn), transport=transports["honest"]
    )
    skewed = Mailstrom(
        CONFIG,
        PostgresStorage(postgres_dsn),
        transport=transports["skewed"],
        clock=lambda: time.time() + skew,
    )
    outbox = Outbox(CONFIG, PostgresStorage(postgres_dsn))
    try:
        skewed.start()  # alone, so that it is the one to defer this message
        later = outbox.send_email(message(60, "later@example.test"))
        wait_until(lambda: outbox.query_status(later).attempts == 1, timeout=30)
        honest.start()
        ids = [outbox.send_email(message(n)) for n in range(60)]
        wait_until(
            lambda: all(outbox.query_status(i).succeeded for i in ids), timeout=30
        )
        time.sleep(2)  # time enough for a retry due "at once" to be taken
        deferred = outbox.query_status(later)
    finally:
        honest.stop()
        skewed.stop()
        outbox.close()
    sent = Counter(m.message_id for t in transports.values() for m in t.sent)
    assert sent == Counter(dict.fromkeys(ids, 1))
    attempts = [
        o
        for t in transports.values()
        for o in t.outcomes
        if o.address == "later@example.test"
    ]
    assert len(attempts) == 1
    [recipient] = deferred.recipients
    assert recipient.result is DeliveryResult.DEFERRED
    assert recipient.next_attempt_at is not None
    assert abs(recipient.next_attempt_at - (time.time() + 58)) < 5


# -- worker processes -----------------------------------------------------------------

WORKER = """
import sys, threading
from mailstrom_py import *
from mailstrom_py.delivery import build_transport
from mailstrom_py.worker import Worker
dsn, port, helo, lease = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
config = Config(
    helo_name=helo,
    delivery=RelayConfig(host="127.0.0.1", port=port, tls="none"),
    retry=RetryPolicy(initial_delay=60, jitter=0.0),
    timeouts=Timeouts.uniform(10),
)
worker = Worker(PostgresStorage(dsn), build_transport(config), config.retry,
                threads=2, lease=lease)
worker.start()
print("started", flush=True)
threading.Event().wait()
"""

PRODUCER = """
import sys
from mailstrom_py import *
dsn, first, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
config = Config(helo_name="producer.example.test",
                delivery=RelayConfig(host="127.0.0.1", port=9, tls="none"))
with Outbox(config, PostgresStorage(dsn)) as outbox:
    for n in range(first, first + count):
        message = (f"From: app@example.test\\r\\nTo: r{n}@example.test\\r\\n"
                   f"Subject: n{n}\\r\\n\\r\\nbody {n}\\r\\n")
        print(outbox.send_email(message), flush=True)
"""

_MESSAGE_ID = re.compile(rb"^Message-ID: <([^>]+)>", re.MULTILINE | re.IGNORECASE)


def deliveries(server: SmtpServer) -> Counter[str]:
    """How many times the server accepted each Message-ID."""
    found: Counter[str] = Counter()
    for received in server.handler.messages:
        match = _MESSAGE_ID.search(received.data)
        assert match is not None
        found[match.group(1).decode()] += 1
    return found


def senders(server: SmtpServer) -> set[str]:
    """The EHLO names of the sessions that sent mail."""
    return {
        session.commands[0]
        for session in server.handler.sessions
        if "MAIL" in session.verbs
    }


def producers_and_workers(
    dsn: str,
    server: SmtpServer,
    lease: float,
    meanwhile: Callable[[list[subprocess.Popen[str]]], None] = lambda _: None,
) -> tuple[list[str], Counter[str], set[str]]:
    """Run three worker processes (two delivery threads each) and two producer
    processes storing 300 messages each on one database, calling ``meanwhile``
    with the workers once the producers have started, until every message is
    completed. Return the ids produced, the deliveries and the EHLO names."""
    PostgresStorage(dsn).close()  # the tables, before anyone races
    workers = [
        spawn(WORKER, dsn, server.port, f"w{n}.example.test", lease) for n in (1, 2, 3)
    ]
    try:
        for worker in workers:
            assert readline(worker) == "started"
        producers = [spawn(PRODUCER, dsn, n * 300, 300) for n in (0, 1)]
        meanwhile(workers)
        ids = []
        for producer in producers:
            out, err = producer.communicate(timeout=180)
            assert producer.returncode == 0, err
            ids += out.split()
        wait_until(lambda: completed(dsn) == 600, timeout=180)
    finally:
        for worker in workers:
            kill(worker)
    assert len(set(ids)) == 600
    return ids, deliveries(server), senders(server)


def test_two_producers_and_three_worker_processes_deliver_each_message_once(
    postgres_dsn: str,
) -> None:
    """Two producer processes store 300 messages each while three worker
    processes (two delivery threads each) deliver from the same database: every
    message arrives exactly once, and every worker delivers some."""
    with SmtpServer() as server:
        ids, received, helos = producers_and_workers(postgres_dsn, server, 30)
    assert received == Counter(dict.fromkeys(ids, 1))
    assert helos == {f"EHLO w{n}.example.test" for n in (1, 2, 3)}


def test_a_worker_killed_mid_batch_loses_nothing(postgres_dsn: str) -> None:
    """A worker process is SIGKILLed while its batches are half delivered (the
    server takes 0.1 s per message, a batch of 16 well within the 5 s lease);
    another worker delivers the rest, and what the dead one had claimed once
    its leases end. No message is lost, and only messages whose outcome died
    with the worker (one in flight per delivery thread) may arrive twice."""
    with (
        closing(PostgresStorage(postgres_dsn)) as storage,
        SmtpServer(handler=RecordingHandler(data_delay=0.1)) as server,
    ):
        outbox = Outbox(CONFIG, storage)
        ids = [outbox.send_email(message(n)) for n in range(40)]
        first = spawn(WORKER, postgres_dsn, server.port, "first.example.test", 5)
        try:
            assert readline(first) == "started"
            wait_until(lambda: len(server.handler.messages) >= 4, timeout=60)
        finally:
            kill(first)
        killed_at = time.monotonic()
        claimed = storage.count(QueueFilter(completed=False))
        assert 0 < claimed < 40
        second = spawn(WORKER, postgres_dsn, server.port, "second.example.test", 5)
        try:
            assert readline(second) == "started"
            wait_until(lambda: completed(postgres_dsn) == 40, timeout=120)
        finally:
            kill(second)
        took = time.monotonic() - killed_at
        received = deliveries(server)
        assert all(s.succeeded for s in storage.find(QueueFilter()))
    assert set(received) == set(ids)
    assert sum(received.values()) - len(ids) <= 2  # two delivery threads
    assert took >= 4  # the dead worker's claims waited for their leases


def test_two_producers_and_three_workers_with_one_killed_deliver_everything(
    postgres_dsn: str,
) -> None:
    """Two producer processes store 300 messages each while three worker
    processes deliver; one worker is SIGKILLed once a hundred messages have
    arrived. Every message is delivered, and only those whose outcome died with
    the killed worker may arrive twice: at most two per delivery thread (the
    message whose reply was awaited and the next, pipelined behind it)."""

    def kill_the_first_after_a_hundred(workers: list[subprocess.Popen[str]]) -> None:
        wait_until(lambda: len(server.handler.messages) >= 100, timeout=120)
        kill(workers[0])

    with SmtpServer(handler=RecordingHandler(data_delay=0.005)) as server:
        ids, received, helos = producers_and_workers(
            postgres_dsn, server, 5, kill_the_first_after_a_hundred
        )
    assert "EHLO w1.example.test" in helos  # the killed worker had delivered
    assert set(received) == set(ids)
    assert sum(received.values()) - len(ids) <= 2 * 2
