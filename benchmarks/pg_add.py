"""Adding mail to PostgreSQL: where one ``add`` (one ``send_email()``) spends its time.

Contenders, each run from one and from several threads, each thread on a
connection of its own, one message per call:

* ``PostgresStorage.add``: the storage as shipped (one statement, its own
  transaction; the storage's notifier thread notifies the ``<schema>_due``
  channel after the commit, once for the adds committed meanwhile).
* ``insert + notify``: a plain one-table insert of a message-sized row and a
  ``pg_notify`` in the same statement, so in the same transaction.
* ``insert``: the same insert without the notification.
* ``insert, then notify``: the insert, then a second autocommit statement that
  notifies (an extra round trip and commit).
* ``SELECT 1``: one round trip, the floor of any call.

For each, the median latency of one call and the calls per second over all
threads, the median of ``--repeat`` runs; the contenders take turns within
each repeat so that they meet the same load on the machine. A worker listens
on the channel throughout, so notifications are delivered as in production.

A throwaway server is started on 127.0.0.1 with the test harness
(``tests/support/postgres.py``), ``fsync`` and ``synchronous_commit`` on.

    python benchmarks/pg_add.py                     # about a minute
    python benchmarks/pg_add.py --calls 100 --repeat 1   # smoke
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from support.postgres import PgServer

from mailstrom_py import PostgresStorage
from mailstrom_py.testing.emails import prepared_email

SERVER_SETTINGS = {"shared_buffers": "128MB"}
CHANNEL = "mailstrom_due"
BODY = b"x" * 2000

Call = Callable[[int], None]


@dataclass(frozen=True)
class Contender:
    """A name, and a maker of one thread's call (given that thread's
    connection, or None for the storage's own pool)."""

    name: str
    make: Callable[[psycopg.Connection[Any] | None], Call]


INSERT = "INSERT INTO bench_add (message_id, data) VALUES (%s, %s) RETURNING id"
INSERT_NOTIFY = (
    "INSERT INTO bench_add (message_id, data) VALUES (%s, %s)"
    " RETURNING id, pg_notify('mailstrom_due', '')"
)
NOTIFY = "SELECT pg_notify('mailstrom_due', '')"


def contenders(storage: PostgresStorage) -> list[Contender]:
    now = time.time()

    def add(_conn: psycopg.Connection[Any] | None) -> Call:
        def call(n: int) -> None:
            storage.add(prepared_email(n), now)

        return call

    def statements(*texts: str) -> Callable[[Any], Call]:
        def make(conn: Any) -> Call:
            def call(n: int) -> None:
                for text in texts:
                    params = (f"m{n}", BODY) if "%s" in text else None
                    conn.execute(text, params).fetchall()

            return call

        return make

    return [
        Contender("PostgresStorage.add", add),
        Contender("insert + notify", statements(INSERT_NOTIFY)),
        Contender("insert", statements(INSERT)),
        Contender("insert, then notify", statements(INSERT, NOTIFY)),
        Contender("SELECT 1", statements("SELECT 1")),
    ]


def run(
    dsn: str, contender: Contender, threads: int, calls: int, ids: Any
) -> tuple[float, float]:
    """(median seconds per call, calls per second) of ``threads`` threads
    making ``calls`` calls each."""
    latencies: list[float] = []
    lock = threading.Lock()
    start = threading.Barrier(threads + 1)

    def worker() -> None:
        conn = None
        if contender.name != "PostgresStorage.add":
            conn = psycopg.connect(dsn, autocommit=True)
        call = contender.make(conn)
        numbers = [next(ids) for _ in range(calls)]
        mine = []
        start.wait()
        for n in numbers:
            began = time.perf_counter()
            call(n)
            mine.append(time.perf_counter() - began)
        with lock:
            latencies.extend(mine)
        if conn is not None:
            conn.close()

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in pool:
        thread.join()
    elapsed = time.perf_counter() - began
    return statistics.median(latencies), threads * calls / elapsed


def listen(dsn: str, stop: threading.Event) -> None:
    """A worker's listener: consume every notification, as a waiting worker
    does."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"LISTEN {CHANNEL}")
        while not stop.is_set():
            for _ in conn.notifies(timeout=0.2):
                pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=500, help="per thread and run")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 4])
    args = parser.parse_args()

    with PgServer(settings=SERVER_SETTINGS) as server:
        dsn = server.create_database("bench_add")
        storage = PostgresStorage(dsn, max_connections=max(args.threads))
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                "CREATE TABLE bench_add (id bigserial PRIMARY KEY,"
                " message_id text UNIQUE NOT NULL, data bytea NOT NULL)"
            )
        stop = threading.Event()
        listener = threading.Thread(target=listen, args=(dsn, stop))
        listener.start()
        ids = itertools.count()
        print(
            f"fsync and synchronous_commit on; {args.calls} calls per thread"
            f" and run, median of {args.repeat} runs; load average {load()},"
            f" {os.cpu_count()} CPUs\n"
        )
        figures: dict[tuple[str, int], list[tuple[float, float]]] = {}
        try:
            for _ in range(args.repeat):
                for threads in args.threads:
                    for contender in contenders(storage):
                        figure = run(dsn, contender, threads, args.calls, ids)
                        figures.setdefault((contender.name, threads), []).append(figure)
        finally:
            stop.set()
            listener.join()
            storage.close()
    print(f"{'contender':<22} {'threads':>7} {'median ms':>10} {'calls/s':>9}")
    for (name, threads), runs in figures.items():
        latency = statistics.median(run[0] for run in runs) * 1000
        rate = statistics.median(run[1] for run in runs)
        print(f"{name:<22} {threads:>7} {latency:>10.2f} {rate:>9,.0f}")
    print(f"\nload average at the end: {load()}")


def load() -> str:
    return ", ".join(f"{figure:.2f}" for figure in os.getloadavg())


if __name__ == "__main__":
    main()
