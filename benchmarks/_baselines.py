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


def measure_disk_sync(directory: Path, samples: int = 200) -> DiskSync:
    """Measure :class:`DiskSync` with files in ``directory``, then remove them."""
    block = os.urandom(2048)
    path = directory / "fsync-probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    fsyncs = []
    try:
        for _ in range(samples):
            t0 = time.perf_counter()
            os.pwrite(fd, block, 0)
            os.fsync(fd)
            fsyncs.append(time.perf_counter() - t0)
    finally:
        os.close(fd)
        path.unlink()
    db = directory / "commit-probe.db"
    conn = sqlite3.connect(db, isolation_level=None)
    commits = []
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("CREATE TABLE probe (id INTEGER PRIMARY KEY, body BLOB)")
        for _ in range(samples):
            t0 = time.perf_counter()
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO probe (body) VALUES (?)", (block,))
            conn.execute("COMMIT")
            commits.append(time.perf_counter() - t0)
    finally:
        conn.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
    return DiskSync(statistics.median(fsyncs), statistics.median(commits))
