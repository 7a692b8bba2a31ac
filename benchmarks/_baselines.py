"""The baselines of the throughput benchmark: what a user could write by hand
with smtplib, and the disk's raw sync rate.

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
    """The disk's raw sync cost in one repetition, in seconds per operation
    (medians): a 2 KB write plus fsync of a small file, and the commit of one
    2 KB row in SQLite (WAL, ``synchronous=FULL``, as SqliteStorage's default)."""

    fsync: float
    commit: float

    @property
    def commit_rate(self) -> float:
        return 1 / self.commit


class DiskProbe:
    """Samples :class:`DiskSync` in short bursts between the variants, so that
    its figures span the same minutes as theirs on a disk others use too.

    The probe's files live in ``directory`` as long as it is open. The SQLite
    file stays open for the whole run, so that its write-ahead log grows and
    is checkpointed and reused as SqliteStorage's is, rather than only grows.
    """

    def __init__(self, directory: Path) -> None:
        self._block = os.urandom(2048)
        self._fd = os.open(
            directory / "fsync-probe", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600
        )
        self._db = sqlite3.connect(directory / "commit-probe.db", isolation_level=None)
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = FULL")
        self._db.execute("CREATE TABLE probe (id INTEGER PRIMARY KEY, body BLOB)")
        self._fsyncs: list[float] = []
        self._commits: list[float] = []

    def sample(self, count: int = 40) -> None:
        """Time ``count`` fsyncs, then ``count`` commits."""
        for _ in range(count):
            t0 = time.perf_counter()
            os.pwrite(self._fd, self._block, 0)
            os.fsync(self._fd)
            self._fsyncs.append(time.perf_counter() - t0)
        for _ in range(count):
            t0 = time.perf_counter()
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("INSERT INTO probe (body) VALUES (?)", (self._block,))
            self._db.execute("COMMIT")
            self._commits.append(time.perf_counter() - t0)

    def end_repetition(self) -> DiskSync:
        """The medians of the samples since the last call."""
        sync = DiskSync(
            statistics.median(self._fsyncs), statistics.median(self._commits)
        )
        self._fsyncs, self._commits = [], []
        return sync

    def close(self) -> None:
        os.close(self._fd)
        self._db.close()
