"""The baselines of the throughput benchmark: what a user could write by hand
with smtplib, the disk's raw sync rate, and the parts of a ``send_email()`` on
SqliteStorage: the same rows committed as bare SQL, and the preparation of the
message.

Every smtplib baseline sends the same bytes with ``sendmail()`` (nothing is
built per message) and gives ``local_hostname`` so that no name is looked up.
"""

from __future__ import annotations

import os
import smtplib
import sqlite3
import statistics
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from _harness import LOOPBACK, Result, cpu_seconds

from mailstrom_py import (
    Config,
    MemoryStorage,
    Outbox,
    QueueFilter,
    RelayConfig,
    SqliteStorage,
)
from mailstrom_py.storage.rows import queued_values, recipient_domain
from mailstrom_py.storage.sqlite.messages import INSERT_MESSAGE, INSERT_RECIPIENT

_FROM = "bench@example.test"
_TO = ["sink@example.test"]


def run_naive(port: int, messages: list[bytes]) -> Result:
    """Connect, send and quit for every message."""
    cpu0, t0 = cpu_seconds(), time.perf_counter()
    for raw in messages:
        with smtplib.SMTP(LOOPBACK, port, local_hostname="bench.test", timeout=30) as s:
            s.sendmail(_FROM, _TO, raw)
    return Result(len(messages), time.perf_counter() - t0, cpu_seconds() - cpu0)


def _send_over_one_connection(port: int, share: list[bytes]) -> None:
    with smtplib.SMTP(LOOPBACK, port, local_hostname="bench.test", timeout=30) as s:
        for raw in share:
            s.sendmail(_FROM, _TO, raw)


def run_reused(port: int, messages: list[bytes], threads: int = 1) -> Result:
    """Send from ``threads`` threads, each over one connection of its own that
    it keeps for its whole share of the messages (one thread: a plain loop)."""
    shares = [messages[n::threads] for n in range(threads)]
    failures: list[BaseException] = []

    def send(share: list[bytes]) -> None:
        try:
            _send_over_one_connection(port, share)
        except (OSError, smtplib.SMTPException) as exc:
            failures.append(exc)

    cpu0, t0 = cpu_seconds(), time.perf_counter()
    if threads == 1:
        _send_over_one_connection(port, messages)
    else:
        senders = [threading.Thread(target=send, args=(s,)) for s in shares]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join()
    elapsed, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
    if failures:
        raise SystemExit(f"smtplib, {threads} threads: {failures[0]}")
    return Result(len(messages), elapsed, cpu)


@dataclass(frozen=True)
class DiskSync:
    """The disk's raw sync cost and the parts of a ``send_email()`` in one
    repetition, in seconds per operation (medians):

    * ``fsync``: a 2 KB write plus fsync of a small file;
    * ``commit``: the commit of one 2 KB row in SQLite (WAL,
      ``synchronous=FULL``, as SqliteStorage's default);
    * ``schema_commit``: the rows SqliteStorage's add writes for a message of
      one recipient (the message, its body, the recipient, and their indexes),
      inserted as bare SQL in one such transaction, in a file SqliteStorage
      made: the commit ``send_email()`` cannot do without on this schema;
    * ``prepare``: ``send_email()`` on an Outbox over MemoryStorage, with no
      worker: the preparation of the message (parsing, checks, headers) that
      every storage pays, plus MemoryStorage's own small add.
    """

    fsync: float
    commit: float
    schema_commit: float
    prepare: float

    @property
    def commit_rate(self) -> float:
        return 1 / self.commit


class DiskProbe:
    """Samples :class:`DiskSync` in short bursts between the variants, so that
    its figures span the same minutes as theirs on a disk others use too.

    The probe's files live in ``directory`` as long as it is open. The SQLite
    files stay open for the whole run, so that their write-ahead logs grow and
    are checkpointed and reused as SqliteStorage's is, rather than only grow.
    ``message`` is what the preparation is timed on (its Message-ID is added
    each time, so it may be sent again and again).
    """

    def __init__(self, directory: Path, message: bytes) -> None:
        self._block = os.urandom(2048)
        self._fd = os.open(
            directory / "fsync-probe", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600
        )
        self._db = sqlite3.connect(directory / "commit-probe.db", isolation_level=None)
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = FULL")
        self._db.execute("CREATE TABLE probe (id INTEGER PRIMARY KEY, body BLOB)")
        schema = directory / "schema-probe.db"
        SqliteStorage(schema).close()
        self._schema = sqlite3.connect(schema, isolation_level=None)
        self._schema.execute("PRAGMA synchronous = FULL")
        self._added = 0
        self._message = message
        self._outbox = Outbox(
            Config(helo_name="bench.test", delivery=RelayConfig(host=LOOPBACK)),
            MemoryStorage(),
        )
        self._fsyncs: list[float] = []
        self._commits: list[float] = []
        self._schema_commits: list[float] = []
        self._prepares: list[float] = []

    def sample(self, count: int = 40) -> None:
        """Time ``count`` of each: fsyncs, commits, schema commits, preparations."""
        for _ in range(count):
            t0 = time.perf_counter()
            os.pwrite(self._fd, self._block, 0)
            os.fsync(self._fd)
            self._fsyncs.append(time.perf_counter() - t0)
        # One of each in turn, so that both see the disk in the same state
        # (it may still be writing back what the last variant wrote).
        for _ in range(count):
            t0 = time.perf_counter()
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("INSERT INTO probe (body) VALUES (?)", (self._block,))
            self._db.execute("COMMIT")
            self._commits.append(time.perf_counter() - t0)
            self._schema_commits.append(self._schema_commit())
        for _ in range(count):
            t0 = time.perf_counter()
            self._outbox.send_email(self._message)
            self._prepares.append(time.perf_counter() - t0)

    def _schema_commit(self) -> float:
        """Add one message of one recipient as bare SQL; return the time it took."""
        self._added += 1
        message_id = f"{self._added}.schema-probe@bench.test"
        address = f"sink{self._added % 10}@example.test"
        now = time.time()
        t0 = time.perf_counter()
        db = self._schema
        db.execute("BEGIN IMMEDIATE")
        rowid = db.execute(
            INSERT_MESSAGE,
            (message_id, "bench@example.test", 0, 0, 0, 0, now, 1, now, now),
        ).lastrowid
        db.execute(
            "INSERT INTO bodies (message, data) VALUES (?, ?)", (rowid, self._block)
        )
        db.execute(
            INSERT_RECIPIENT,
            (rowid, 0, address, recipient_domain(address), *queued_values(now)),
        )
        db.execute("COMMIT")
        return time.perf_counter() - t0

    def end_repetition(self) -> DiskSync:
        """The medians of the samples since the last call."""
        sync = DiskSync(
            statistics.median(self._fsyncs),
            statistics.median(self._commits),
            statistics.median(self._schema_commits),
            statistics.median(self._prepares),
        )
        self._fsyncs, self._commits = [], []
        self._schema_commits, self._prepares = [], []
        return sync

    def close(self) -> None:
        os.close(self._fd)
        self._db.close()
        self._schema.close()
        self._outbox.drop(QueueFilter())  # never to be delivered: said so here
        self._outbox.close()
