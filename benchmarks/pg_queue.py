"""Claims from a PostgreSQL queue shared by worker processes: the bare baseline.

Each worker process loops: claim a batch of due jobs (one statement, its own
transaction: ``FOR UPDATE SKIP LOCKED`` picks rows no one else holds, and the
claim sets a lease and a claim token), then mark them done (a second
transaction that checks the token). Default durability: ``fsync`` and
``synchronous_commit`` on, so every claim and every completion waits for its
commit to reach the disk.

For each contender, batch size and number of processes, the table gives the
jobs completed per second over ``--seconds``, the median of ``--repeat``
runs, each on a freshly filled queue of ``--rows`` due jobs. The contenders
are in ``CONTENDERS``; "bare SQL" is plain SQL on a one-table queue, the floor
any storage built on the same statements pays.

A throwaway server is started on 127.0.0.1 with the test harness
(``tests/support/postgres.py``); it needs the PostgreSQL server programs and
psycopg 3 (the ``test`` extra). Nothing leaves the machine.

    python benchmarks/pg_queue.py                       # about two minutes
    python benchmarks/pg_queue.py --seconds 0.5 --repeat 1 --rows 20000   # smoke
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any, Protocol

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from support.postgres import PgServer

from mailstrom_py import PostgresStorage
from mailstrom_py.status import DeliveryResult, RecipientStatus

LEASE = timedelta(minutes=5)
# The server's own defaults, not the test harness's small buffers.
SERVER_SETTINGS = {"shared_buffers": "128MB"}


class QueueClient(Protocol):
    """One worker's view of a queue: a claim and its completion, each one
    transaction."""

    def claim(self, limit: int) -> Sequence[Any]:
        """Lease up to ``limit`` due jobs to this worker; return them."""

    def finish(self, claimed: Sequence[Any]) -> None:
        """Record the jobs of one claim as done."""

    def close(self) -> None: ...


@dataclass(frozen=True)
class Contender:
    """A way to run the queue: ``fill(dsn, rows)`` makes a queue of ``rows``
    due jobs in an empty database, ``connect(dsn)`` opens one worker's client
    (module-level functions, so worker processes can be handed them)."""

    name: str
    fill: Callable[[str, int], None]
    connect: Callable[[str], QueueClient]


# -- the bare SQL baseline ------------------------------------------------------------

BARE_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id bigserial PRIMARY KEY,
    due timestamptz NOT NULL,
    done boolean NOT NULL DEFAULT false,
    leased_until timestamptz,
    token uuid
);
CREATE INDEX IF NOT EXISTS jobs_due ON jobs (due) WHERE NOT done;
"""

BARE_CLAIM = """
UPDATE jobs SET leased_until = now() + %(lease)s, token = %(token)s
WHERE id IN (
    SELECT id FROM jobs
    WHERE NOT done AND due <= now()
      AND (leased_until IS NULL OR leased_until < now())
    ORDER BY due LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
RETURNING id
"""

BARE_FINISH = """
UPDATE jobs SET done = true, leased_until = NULL
WHERE id = ANY(%(ids)s) AND token = %(token)s
"""


def bare_fill(dsn: str, rows: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(BARE_SCHEMA)
        conn.execute("TRUNCATE jobs")
        conn.execute(
            "INSERT INTO jobs (due) SELECT now() - n * interval '1 ms'"
            " FROM generate_series(1, %s) AS n",
            (rows,),
        )
        conn.execute("VACUUM ANALYZE jobs")


class BareClient:
    """Plain SQL in autocommit mode: each statement is its own transaction."""

    def __init__(self, dsn: str) -> None:
        self.conn = psycopg.connect(dsn, autocommit=True)
        self.token: uuid.UUID | None = None

    def claim(self, limit: int) -> Sequence[Any]:
        self.token = uuid.uuid4()
        params = {"lease": LEASE, "token": self.token, "limit": limit}
        cursor = self.conn.execute(BARE_CLAIM, params)
        return [row[0] for row in cursor.fetchall()]

    def finish(self, claimed: Sequence[Any]) -> None:
        params = {"ids": list(claimed), "token": self.token}
        cursor = self.conn.execute(BARE_FINISH, params)
        assert cursor.rowcount == len(claimed), "a lease was lost"

    def close(self) -> None:
        self.conn.close()


def bare_connect(dsn: str) -> QueueClient:
    return BareClient(dsn)


# -- the library: PostgresStorage doing its real work ---------------------------------

LIBRARY_SCHEMA = "bench"
BODY = (
    b"From: bench@example.test\r\nTo: someone@example.test\r\n"
    b"Subject: benchmark\r\n\r\n" + b"A line of a short notification.\r\n" * 8
)


def library_storage(dsn: str) -> PostgresStorage:
    return PostgresStorage(dsn, schema=LIBRARY_SCHEMA, max_connections=2)


def library_fill(dsn: str, rows: int) -> None:
    """``rows`` messages of one recipient each, due now, in the storage's tables
    (made by opening the storage): written with SQL, as ``add_many`` writes
    them, because adding is not what is measured and SQL fills in seconds."""
    library_storage(dsn).close()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"SET search_path = {LIBRARY_SCHEMA}")
        conn.execute("TRUNCATE messages, bodies, recipients")
        conn.execute(
            "INSERT INTO messages (message_id, mail_from, smtputf8, eight_bit,"
            " require_tls, tls_optional, created_at, pending, due_at)"
            " SELECT n || '@bench.example.test', 'bench@example.test', false, false,"
            " false, false, t, 1, t FROM generate_series(1, %s) AS n,"
            " LATERAL (SELECT extract(epoch FROM now())::float8 - n * 0.001) AS c(t)",
            (rows,),
        )
        conn.execute("INSERT INTO bodies SELECT id, %s FROM messages", (BODY,))
        conn.execute(
            "INSERT INTO recipients (message, position, address, domain,"
            " next_attempt_at) SELECT id, 0, 'rcpt' || id || '@example.test',"
            " 'example.test', due_at FROM messages"
        )
        for table in ("messages", "bodies", "recipients"):
            conn.execute(f"VACUUM ANALYZE {table}")


class LibraryClient:
    """A worker's storage calls: ``claim_due`` of a batch, then ``record_many``
    of every claimed recipient delivered, as the worker records them."""

    def __init__(self, dsn: str) -> None:
        self.storage = library_storage(dsn)

    def claim(self, limit: int) -> Sequence[Any]:
        return self.storage.claim_due(time.time(), limit, LEASE.total_seconds())

    def finish(self, claimed: Sequence[Any]) -> None:
        now = time.time()
        records = [
            (claim, [delivered(r, now) for r in claim.status.pending])
            for claim in claimed
        ]
        statuses = self.storage.record_many(records)
        assert all(statuses), "a lease was lost"

    def close(self) -> None:
        self.storage.close()


def delivered(recipient: RecipientStatus, now: float) -> RecipientStatus:
    return dataclasses.replace(
        recipient,
        result=DeliveryResult.DELIVERED,
        status_code="2.0.0",
        detail="250 2.0.0 queued as benchmark",
        next_attempt_at=None,
    )


def library_connect(dsn: str) -> QueueClient:
    return LibraryClient(dsn)


CONTENDERS = [
    Contender("bare SQL", bare_fill, bare_connect),
    Contender("PostgresStorage", library_fill, library_connect),
]


# -- running them ---------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """What each worker process of one run does."""

    contender: Contender
    dsn: str
    batch: int
    seconds: float


def work(run: Run, start: Barrier, results: Any) -> None:
    """One worker process: connect, wait for the others, then claim and finish
    batches until ``run.seconds`` have passed or the queue is empty."""
    try:
        client = run.contender.connect(run.dsn)
        done = 0
        start.wait(timeout=60)
        began = time.perf_counter()
        while time.perf_counter() - began < run.seconds:
            claimed = client.claim(run.batch)
            if not claimed:
                break
            client.finish(claimed)
            done += len(claimed)
        took = time.perf_counter() - began
        client.close()
    except BaseException:
        results.put((0, 0.0))  # the parent need not wait out its timeout
        raise
    results.put((done, took))


def run_once(run: Run, processes: int) -> float:
    """Jobs done per second by ``processes`` workers together."""
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(processes)
    results = context.Queue()
    workers = [
        context.Process(target=work, args=(run, start, results), daemon=True)
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    outcomes: list[tuple[int, float]] = [
        results.get(timeout=run.seconds + 120) for _ in workers
    ]
    for worker in workers:
        worker.join()
        assert worker.exitcode == 0, f"a worker failed ({worker.exitcode})"
    return sum(done for done, _ in outcomes) / max(took for _, took in outcomes)


def measure(
    server: PgServer, contender: Contender, args: argparse.Namespace
) -> list[tuple[int, int, list[float]]]:
    """``(batch, processes, rates)`` for each combination, on a database of
    the contender's own."""
    name = "bench_" + "".join(ch if ch.isalnum() else "_" for ch in contender.name)
    dsn = server.create_database(name)
    table = []
    for batch in args.batches:
        for processes in args.processes:
            rates = []
            for _ in range(args.repeat):
                contender.fill(dsn, args.rows)
                run = Run(contender, dsn, batch, args.seconds)
                rates.append(run_once(run, processes))
            table.append((batch, processes, rates))
            print(
                f"  {contender.name}: batch {batch}, processes {processes}: "
                + ", ".join(f"{rate:,.0f}" for rate in rates),
                file=sys.stderr,
                flush=True,
            )
    server.drop_database(name)
    return table


def numbers(text: str) -> list[int]:
    return [int(part) for part in text.split(",")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per run")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure")
    parser.add_argument("--rows", type=int, default=200_000, help="queue size")
    parser.add_argument("--batches", type=numbers, default=[1, 10, 100])
    parser.add_argument("--processes", type=numbers, default=[1, 2, 4])
    args = parser.parse_args()

    began = time.perf_counter()
    with PgServer(settings=SERVER_SETTINGS) as server:
        started = time.perf_counter() - began
        with server.admin() as conn:
            version = conn.execute("SHOW server_version").fetchone()
        print(
            f"PostgreSQL {version[0] if version else '?'} on 127.0.0.1 "
            f"(initdb and start: {started:.1f} s); fsync and synchronous_commit on; "
            f"{args.rows:,} due jobs per run, {args.seconds:g} s per run, "
            f"median of {args.repeat}; load average (1, 5, 15 min) {load()}, "
            f"{os.cpu_count()} CPUs\n"
        )
        figures = {
            contender.name: {
                (batch, processes): rates
                for batch, processes, rates in measure(server, contender, args)
            }
            for contender in CONTENDERS
        }
    print_table(figures)
    print(f"\nload average (1, 5, 15 min) at the end: {load()}")


def print_table(figures: dict[str, dict[tuple[int, int], list[float]]]) -> None:
    """One line per batch size and process count: each contender's median rate
    (its runs in brackets), then each contender's share of the first's."""
    names = [contender.name for contender in CONTENDERS]
    first = names[0]
    header = f"{'batch':>5} {'processes':>9}"
    header += "".join(f" {name + ' /s':>17}" for name in names)
    header += "".join(f" {name + ' ratio':>22}" for name in names[1:])
    print(header)
    for key in figures[first]:
        line = f"{key[0]:>5} {key[1]:>9}"
        medians = {name: statistics.median(figures[name][key]) for name in names}
        line += "".join(f" {medians[name]:>17,.0f}" for name in names)
        line += "".join(
            f" {medians[name] / medians[first]:>22.2f}" for name in names[1:]
        )
        print(line)
    print("\nruns (jobs/s):")
    for name in names:
        for (batch, processes), rates in figures[name].items():
            runs = ", ".join(f"{rate:,.0f}" for rate in rates)
            print(f"  {name}, batch {batch}, processes {processes}: {runs}")


def load() -> str:
    return ", ".join(f"{figure:.2f}" for figure in os.getloadavg())


if __name__ == "__main__":
    main()
