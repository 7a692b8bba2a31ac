"""Duplicates after SIGKILL are bounded by the transactions in flight.

A child process delivers a queue held in an SQLite file to a pipelining sink
in this process, which counts the final dots it reads per Message-ID. The
child is killed with SIGKILL several times mid-run and restarted until the
queue is empty. A message is sent again after a kill only if the sink had
its final dot but the child had not yet recorded it: at most the one whose
dot's reply was being read, and the one whose content went with it, on each
of the child's sessions (one per delivery thread).

``MAILSTROM_SOAK_KILLS`` sets the number of kills (5 by default); with
``pytest -s`` the duplicates of each kill are printed next to the
transactions open at the sink when it came.
"""

from __future__ import annotations

import os
import random
import re
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from support.children import integrity, kill, readline, spawn, wait_until
from support.scripted import Conversation, ScriptedServer, normal

from mailstrom_py import QueueFilter, SqliteStorage, prepare_email

KILLS = int(os.environ.get("MAILSTROM_SOAK_KILLS", "5"))
THREADS = 4
# Two per session: the message whose dot's reply is being read, and the one
# whose content was written with it (RFC 2920 pipelining across messages).
BOUND = 2 * THREADS

DELIVER_FOREVER = """
import sys, threading
from mailstrom_py import *
path, port, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
config = Config(
    helo_name="soak.example.test",
    delivery=RelayConfig(host="127.0.0.1", port=port, tls="none"),
    retry=RetryPolicy(initial_delay=0.2, jitter=0.0),
    timeouts=Timeouts.uniform(10),
    delivery_threads=threads,
)
Mailstrom(config, SqliteStorage(path)).start()
print("started", flush=True)
threading.Event().wait()
"""

_MESSAGE_ID = re.compile(rb"^Message-ID: <([^>]+)>", re.MULTILINE | re.IGNORECASE)


class Sink:
    """A pipelining SMTP server that accepts everything, counting final dots
    per Message-ID and the transactions open (MAIL read, dot not yet read)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._received: Counter[str] = Counter()
        self._open: dict[int, int] = {}
        self._serve = normal(on_mail=self._on_mail, on_dot=self._on_dot)

    def __call__(self, conv: Conversation) -> None:
        try:
            self._serve(conv)
        finally:
            with self._lock:
                self._open.pop(id(conv), None)

    def _on_mail(self, conv: Conversation, line: str) -> None:
        with self._lock:
            self._open[id(conv)] = self._open.get(id(conv), 0) + 1

    def _on_dot(self, conv: Conversation, body: bytes) -> None:
        found = _MESSAGE_ID.search(body)
        assert found is not None
        time.sleep(0.002)  # a server taking a moment to queue the message
        with self._lock:
            self._received[found.group(1).decode()] += 1
            self._open[id(conv)] -= 1

    def received(self) -> Counter[str]:
        with self._lock:
            return Counter(self._received)

    def total(self) -> int:
        with self._lock:
            return self._received.total()

    def in_flight(self) -> int:
        with self._lock:
            return sum(self._open.values())


@dataclass(frozen=True)
class Kill:
    duplicates: int
    """Messages the sink had whose delivery the child had not recorded."""
    in_flight: int
    """Transactions open at the sink just before the kill."""


def enqueue(db: Path, count: int) -> list[str]:
    storage = SqliteStorage(db)
    emails = [
        prepare_email(
            f"From: a@example.test\r\nTo: b@example.test\r\nSubject: n{n}\r\n"
            "\r\nbody\r\n",
            helo_name="soak.example.test",
        )
        for n in range(count)
    ]
    storage.add_many(emails, time.time())
    storage.close()
    return [e.message_id for e in emails]


def delivered(db: Path) -> set[str]:
    storage = SqliteStorage(db)
    try:
        return {s.message_id for s in storage.find(QueueFilter(completed=True))}
    finally:
        storage.close()


def poll(predicate: Callable[[], bool], timeout: float = 60) -> None:
    """Wait until ``predicate()`` holds, looking every 2 ms (the sink is fast)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.002)


def report(kills: list[Kill]) -> None:
    print()
    for n, k in enumerate(kills, start=1):
        print(f"kill {n:2}: {k.duplicates:2} duplicates, {k.in_flight} in flight")
    for name in ("duplicates", "in_flight"):
        values = [getattr(k, name) for k in kills]
        print(
            f"{name}: min {min(values)} median {statistics.median(values)} "
            f"max {max(values)} (bound {BOUND})"
        )


def test_duplicates_after_each_kill_are_bounded_by_the_transactions_in_flight(
    tmp_path: Path,
) -> None:
    """After each SIGKILL mid-run no message is lost, and at most two per
    session were delivered but not recorded (and so are sent again)."""
    db = tmp_path / "outbox.db"
    ids = enqueue(db, 150 * KILLS)
    rng = random.Random()
    sink = Sink()
    kills: list[Kill] = []
    before: Counter[str] = Counter()  # what the sink had at the last kill
    with ScriptedServer(sink) as server:
        for _ in range(KILLS):
            proc = spawn(DELIVER_FOREVER, db, server.port, THREADS)
            assert readline(proc) == "started"
            target = sink.total() + rng.randint(5, 50)
            poll(lambda: sink.total() >= target)  # noqa: B023 (called at once)
            time.sleep(rng.uniform(0, 0.01))
            in_flight = sink.in_flight()
            kill(proc)
            server.wait_idle()  # every dot that reached the sink is counted
            assert integrity(db) == "ok"
            received, done = sink.received(), delivered(db)
            assert len(done) < len(ids), "the kill came after the last message"
            # Taken by the sink since the last kill, yet not recorded: each is
            # sent again after the restart.
            unrecorded = [i for i in received - before if i not in done]
            kills.append(Kill(len(unrecorded), in_flight))
            before = received
        proc = spawn(DELIVER_FOREVER, db, server.port, THREADS)
        wait_until(lambda: len(delivered(db)) == len(ids), timeout=120)
        kill(proc)
        server.wait_idle()
    received = sink.received()
    report(kills)
    assert set(received) == set(ids)  # nothing lost
    extra = received.total() - len(ids)
    assert extra <= sum(k.duplicates for k in kills)
    assert max(k.duplicates for k in kills) <= BOUND, kills
