"""Processes sharing one SQLite queue: producers that only store mail, and
workers that claim and deliver it.

Each process is a fresh interpreter running this checkout's package
(support.children); they deliver to an aiosmtpd server in this process, which
records every message it accepts, so a message delivered twice shows as its
Message-ID counted twice.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from contextlib import closing
from pathlib import Path

from support.children import kill, readline, spawn, wait_until
from support.smtpd import SmtpServer

from mailstrom_py import QueueFilter, SqliteStorage, prepare_email

WORKER = """
import sys, threading
from mailstrom_py import *
path, port, helo = sys.argv[1], int(sys.argv[2]), sys.argv[3]
config = Config(
    helo_name=helo,
    delivery=RelayConfig(host="127.0.0.1", port=port, tls="none"),
    retry=RetryPolicy(initial_delay=60, jitter=0.0),
    timeouts=Timeouts.uniform(10),
    delivery_threads=4,
)
Mailstrom(config, SqliteStorage(path, synchronous="NORMAL")).start()
print("started", flush=True)
threading.Event().wait()
"""

PRODUCER = """
import sys
from mailstrom_py import *
path, count = sys.argv[1], int(sys.argv[2])
config = Config(
    helo_name="producer.example.test",
    delivery=RelayConfig(host="127.0.0.1", port=9, tls="none"),
)
mailer = Mailstrom(config, SqliteStorage(path))  # never started: it only stores
for n in range(count):
    message = (f"From: app@example.test\\r\\nTo: r{n}@example.test\\r\\n"
               f"Subject: n{n}\\r\\n\\r\\nbody {n}\\r\\n")
    print(mailer.send_email(message), flush=True)
mailer.stop()
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


def completed(db: Path) -> int:
    with closing(SqliteStorage(db)) as storage:
        return storage.count(QueueFilter(completed=True))


def test_mail_a_producer_process_stores_is_delivered_once_by_a_worker_process(
    tmp_path: Path,
) -> None:
    """A producer that never starts its mailer stores 300 messages while a worker
    process delivers from the same file: each arrives exactly once."""
    db = tmp_path / "outbox.db"
    with SmtpServer() as server:
        worker = spawn(WORKER, db, server.port, "worker.example.test")
        try:
            assert readline(worker) == "started"
            producer = spawn(PRODUCER, db, 300)
            out, err = producer.communicate(timeout=120)
            assert producer.returncode == 0, err
            ids = out.split()
            wait_until(lambda: completed(db) == 300, timeout=120)
        finally:
            kill(worker)
        received = deliveries(server)
    assert len(set(ids)) == 300
    assert received == Counter(dict.fromkeys(ids, 1))
    with closing(SqliteStorage(db)) as storage:
        assert all(s.succeeded for s in storage.find(QueueFilter()))


def test_two_worker_processes_never_deliver_one_message_twice(tmp_path: Path) -> None:
    """Two worker processes on one file, each with four delivery threads, share
    600 messages: each message is delivered exactly once, and both workers
    deliver some."""
    db = tmp_path / "outbox.db"
    SqliteStorage(db).close()
    with SmtpServer() as server:
        workers = [
            spawn(WORKER, db, server.port, f"worker{n}.example.test") for n in (1, 2)
        ]
        try:
            for worker in workers:
                assert readline(worker) == "started"
            emails = [
                prepare_email(
                    f"From: app@example.test\r\nTo: r{n}@example.test\r\n"
                    f"Subject: n{n}\r\n\r\nbody {n}\r\n",
                    helo_name="producer.example.test",
                )
                for n in range(600)
            ]
            with closing(SqliteStorage(db)) as storage:
                storage.add_many(emails, time.time())  # wakes neither worker
            wait_until(lambda: completed(db) == 600, timeout=120)
        finally:
            for worker in workers:
                kill(worker)
        received = deliveries(server)
        helos = {
            session.commands[0]
            for session in server.handler.sessions
            if "MAIL" in session.verbs
        }
    assert received == Counter({e.message_id: 1 for e in emails})
    assert helos == {"EHLO worker1.example.test", "EHLO worker2.example.test"}
