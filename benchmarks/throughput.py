"""Throughput of mailstrom_py against what a user could write by hand with
smtplib, every variant measured in the same run.

Starts a sink on 127.0.0.1 (Postfix's smtp-sink when installed, otherwise an
aiosmtpd sink in a child process), a fresh one for each run of a variant, then
for N messages of about 2 KB with one recipient measures, end to end (first
send to last recipient delivered):

* three baselines written with smtplib alone: a loop that connects, sends and
  quits per message (naive); one connection reused for every message; four
  threads, each with a connection of its own that it reuses;
* mailstrom_py with MemoryStorage;
* mailstrom_py with SqliteStorage at its default durability (FULL), then with
  send_emails() batches, from four caller threads at once (as a web
  application's request threads would), and with synchronous=NORMAL, to show
  what the disk sync on the caller's path costs;
* mailstrom_py with PostgresStorage, on a throwaway PostgreSQL server on
  127.0.0.1 started by the script (``tests/support/postgres.py``) at its
  default durability; skipped, with the reason printed, when the PostgreSQL
  server programs or psycopg are missing;
* one and two worker processes (what ``mailstrom-py worker`` runs) delivering
  from one SqliteStorage file, then from one PostgreSQL database, that this
  process filled through an Outbox; these are timed from a full queue, see
  _processes.py (the CPU column counts the worker processes, not the
  PostgreSQL server's);
* with ``--postfix``, as the "hand it to the local MTA" reference: a private
  Postfix instance (needs root; see _postfix.py) relaying to the sink, fed by
  smtplib over four reused connections from four threads.

Each repetition (``--repeat``) also measures the disk's raw sync cost in the
temporary directory of the SQLite files, in short bursts before and after
every variant: a 2 KB write plus fsync, and the commit of one 2 KB row in
SQLite at WAL and FULL (the median per repetition). Repetitions are interleaved
(every variant once, then every variant again), since a shared machine's
speed drifts; the table gives medians over repetitions and, for the ratios, the
median of the ratios taken within each repetition.

It prints messages per second (median and range), the ratio to each baseline,
CPU time per message (this process's, plus the worker processes'; never the
sink's), the median and p99 time of ``send_email()`` on the caller's thread
(per message of a batch for ``send_emails()``), and for the variants whose
caller waits for a sync, the rate as a fraction of the raw commit rate; and,
since the machine may be shared, how many of its cores were busy (everyone's
work included) and how much time the hypervisor stole. It checks in every run
that the sink received exactly as many messages as were sent. Only loopback
addresses are used.

    python benchmarks/throughput.py --messages 3000 --repeat 3
    python benchmarks/throughput.py --only 3,4   # the baselines and two variants
    python benchmarks/throughput.py --postfix    # every variant and Postfix
    python benchmarks/throughput.py --profile 3  # where variant 3's CPU goes

Variants are numbered from 0 in the order they are printed; 0 to 2 are the
baselines, always run. Postfix is the last one and runs only when asked for
(``--postfix`` or ``--only``).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from _baselines import DiskProbe, DiskSync, run_naive, run_reused
from _harness import (
    LOOPBACK,
    LoadMeter,
    Result,
    Sink,
    Variant,
    VariantSkipped,
    cpu_seconds,
)
from _postfix import run_postfix
from _processes import run_worker_processes
from _profile import profiled

try:
    from support.postgres import PgServer, find_bin_dir
except ImportError as exc:  # psycopg is missing
    PG_MISSING: str | None = f"cannot use PostgreSQL here: {exc}"
else:
    PG_MISSING = (
        None if find_bin_dir() else "the PostgreSQL server programs are not installed"
    )

import mailstrom_py
from mailstrom_py import (
    Config,
    Mailstrom,
    MemoryStorage,
    QueueFilter,
    RelayConfig,
    SqliteStorage,
    Storage,
    Timeouts,
)

#: The baselines, by number: every ratio column is to one of them.
NAIVE, REUSED, THREADS = 0, 1, 2


def build_message(n: int, size: int) -> bytes:
    body = ("x" * 70 + "\r\n") * (size // 72)
    return (
        f"From: bench@example.test\r\nTo: sink{n % 10}@example.test\r\n"
        f"Subject: benchmark {n}\r\n\r\n{body}"
    ).encode()


def run_mailstrom(
    name: str,
    port: int,
    messages: list[bytes],
    storage: Storage,
    threads: int,
    *,
    batch: int = 0,
    callers: int = 1,
) -> Result:
    """Send through mailstrom_py: one send_email() per message, or send_emails()
    in batches of ``batch`` (the latency column is then per message of a batch),
    from ``callers`` threads at once, each sending its share of the messages."""
    config = Config(
        helo_name="bench.test",
        delivery=RelayConfig(host=LOOPBACK, port=port, tls="none"),
        timeouts=Timeouts.uniform(30),
        delivery_threads=threads,
    )
    shares = [messages[n::callers] for n in range(callers)]
    ids: list[list[str]] = [[] for _ in shares]
    latencies: list[list[float]] = [[] for _ in shares]

    def send(mailer: Mailstrom, share: int) -> None:
        step = batch or 1
        mine = shares[share]
        for start in range(0, len(mine), step):
            chunk = mine[start : start + step]
            s0 = time.perf_counter()
            if batch:
                ids[share] += mailer.send_emails(chunk)
            else:
                ids[share].append(mailer.send_email(chunk[0]))
            latencies[share].append((time.perf_counter() - s0) / len(chunk))

    cpu0, t0 = cpu_seconds(), time.perf_counter()
    with Mailstrom(config, storage) as mailer:
        senders = [
            threading.Thread(target=send, args=(mailer, n)) for n in range(callers)
        ]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join()
        every_id = [i for share in ids for i in share]
        wait_until_delivered(mailer, every_id[-1])
        elapsed = time.perf_counter() - t0
        cpu = cpu_seconds() - cpu0
        failed = sum(not mailer.query_status(i).succeeded for i in every_id)
    if failed or len(every_id) != len(messages):
        raise SystemExit(f"{name}: {failed} messages not delivered")
    every_latency = tuple(x for share in latencies for x in share)
    return Result(len(messages), elapsed, cpu, every_latency)


def wait_until_delivered(mailer: Mailstrom, last: str) -> None:
    """Wait until no message has a pending recipient: wait for the last one
    (the worker wakes the waiter when its attempt ends), then for each message
    still pending, if any, the same way; nothing sleeps a fixed time."""
    deadline = time.monotonic() + 300
    mailer.wait(last, timeout=300)
    pending = QueueFilter(completed=False)
    while still := mailer.list_messages(pending, limit=100):
        for status in still:
            left = deadline - time.monotonic()
            if left <= 0:
                raise SystemExit("messages still pending after 300 seconds")
            after = mailer.wait(status.message_id, timeout=left)
            if not after.completed:
                time.sleep(0.001)  # deferred, due again later: no busy loop


class Postgres:
    """A PostgreSQL server started on first use and stopped by ``close()``;
    each storage it makes has a database of its own."""

    def __init__(self) -> None:
        self.server: PgServer | None = None
        self.databases = itertools.count()

    def storage(self, sink: Sink) -> Storage:
        del sink  # each run gets a database of its own
        try:
            postgres: type[Storage] = mailstrom_py.PostgresStorage
        except ImportError as exc:  # psycopg or psycopg_pool is missing
            raise VariantSkipped(f"cannot use PostgreSQL here: {exc}") from exc
        return postgres(self.dsn())  # type: ignore[call-arg]

    def dsn(self) -> str:
        """A new database on the server (started now if need be)."""
        if PG_MISSING:
            raise VariantSkipped(PG_MISSING)
        if self.server is None:
            self.server = PgServer(settings={"shared_buffers": "128MB"})
            self.server.start()
        return self.server.create_database(f"bench_{next(self.databases)}")

    def close(self) -> None:
        if self.server is not None:
            self.server.close()


def variants(
    messages: list[bytes], threads: int, tmp: Path, postgres: Postgres
) -> list[Variant]:
    """The variants to measure, in the order they are numbered and printed; the
    first three are the baselines (NAIVE, REUSED, THREADS)."""
    files = itertools.count()

    def sqlite(sink: Sink, **options: str) -> Storage:
        del sink  # each run gets a file of its own
        return SqliteStorage(str(tmp / f"bench-{next(files)}.db"), **options)  # type: ignore[arg-type]

    def mailstrom(
        name: str,
        storage: Callable[[Sink], Storage],
        *,
        synced: bool = False,
        **options: int,
    ) -> Variant:
        return Variant(
            name,
            lambda sink: run_mailstrom(
                name, sink.port, messages, storage(sink), threads, **options
            ),
            synced=synced,
        )

    def processes(count: int, *, in_postgres: bool = False) -> Variant:
        def spec() -> str:
            if in_postgres:
                return f"postgres:{postgres.dsn()}"
            return f"sqlite:{tmp / f'bench-{next(files)}.db'}"

        kind = "one PostgreSQL queue" if in_postgres else "one SqliteStorage"
        return Variant(
            f"{count} worker process{'es' if count > 1 else ''}, {kind}",
            lambda sink: run_worker_processes(
                spec(), sink.port, messages, count, threads
            ),
        )

    return [
        Variant(
            "smtplib, new connection per message",
            lambda sink: run_naive(sink.port, messages),
        ),
        Variant(
            "smtplib, one reused connection",
            lambda sink: run_reused(sink.port, messages),
        ),
        Variant(
            "smtplib, 4 threads, a connection each",
            lambda sink: run_reused(sink.port, messages, threads=4),
        ),
        mailstrom("mailstrom_py, MemoryStorage", lambda _: MemoryStorage()),
        mailstrom("mailstrom_py, SqliteStorage (default)", sqlite, synced=True),
        mailstrom("  ... send_emails() batches of 100", sqlite, batch=100),
        mailstrom("  ... from 4 caller threads", sqlite, synced=True, callers=4),
        mailstrom(
            "  ... synchronous=NORMAL",
            lambda sink: sqlite(sink, synchronous="NORMAL"),
        ),
        mailstrom("mailstrom_py, PostgresStorage", postgres.storage),
        processes(1),
        processes(2),
        processes(1, in_postgres=True),
        processes(2, in_postgres=True),
        Variant(
            "Postfix relaying (smtplib, 4 connections)",
            lambda sink: run_postfix(sink, messages),
            on_request=True,
        ),
    ]


def median_ratio(mine: list[Result], base: list[Result]) -> float:
    """The median over repetitions of the ratio of rates within a repetition."""
    return statistics.median(a.rate / b.rate for a, b in zip(mine, base, strict=True))


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[max(int(len(ordered) * fraction + 0.5) - 1, 0)]


def report(
    chosen: list[tuple[Variant, list[Result]]],
    baselines: dict[int, list[Result]],
    disk: list[DiskSync],
) -> None:
    """Print one row per variant: medians over repetitions."""
    width = max(len(v.name) for v, _ in chosen)
    header = (
        f"{'variant':<{width}} {'msgs/s':>7} {'min-max':>11} {'x naive':>7} "
        f"{'x reuse':>7} {'x 4thr':>7} {'CPU us/msg':>10} {'send p50 us':>11} "
        f"{'send p99 us':>11} {'x commits':>9} {'busy':>5} {'steal':>5}"
    )
    print(header)
    print("-" * len(header))
    for variant, results in chosen:
        rates = [r.rate for r in results]
        spread = f"{min(rates):.0f}-{max(rates):.0f}"
        ratios = [median_ratio(results, baselines[b]) for b in (NAIVE, REUSED, THREADS)]
        cpu = statistics.median(r.cpu / r.messages * 1e6 for r in results)
        p50 = p99 = commits = ""
        latencies = [x for r in results for x in r.send_latencies]
        if latencies:
            p50 = f"{statistics.median(latencies) * 1e6:.0f}"
            p99 = f"{percentile(latencies, 0.99) * 1e6:.0f}"
        if variant.synced:
            reached = statistics.median(
                r.rate / d.commit_rate for r, d in zip(results, disk, strict=True)
            )
            commits = f"{reached:.2f}"
        busy = steal = ""
        if loads := [r.load for r in results if r.load is not None]:
            busy = f"{statistics.median(x.busy for x in loads):.2f}"
            steal = f"{statistics.median(x.steal for x in loads):.2f}"
        print(
            f"{variant.name:<{width}} {statistics.median(rates):>7.0f} {spread:>11} "
            f"{ratios[0]:>7.2f} {ratios[1]:>7.2f} {ratios[2]:>7.2f} {cpu:>10.0f} "
            f"{p50:>11} {p99:>11} {commits:>9} {busy:>5} {steal:>5}"
        )


def report_disk(disk: list[DiskSync]) -> None:
    fsync = statistics.median(d.fsync for d in disk) * 1e6
    commit = statistics.median(d.commit for d in disk) * 1e6
    print(
        f"\nDisk, median of {len(disk)} repetition(s): 2 KB write + fsync "
        f"{fsync:.0f} us; one-row SQLite commit (WAL, FULL) {commit:.0f} us, "
        f"{1e6 / commit:.0f} commits/s (per repetition: "
        + ", ".join(f"{d.commit * 1e6:.0f}" for d in disk)
        + " us). 'x commits' is a rate as a fraction of that commit rate.\n"
        "'busy' is the machine's busy cores during the variant's runs (setup and"
        " sink included, and every other process on the machine); 'steal' the"
        " cores' worth of time the hypervisor gave to other machines."
    )


def report_caller_path(
    chosen: list[tuple[Variant, list[Result]]], disk: list[DiskSync]
) -> None:
    """Print, for the variants whose caller waits for a FULL commit, the time
    of one send_email() next to the raw one-row commit and to the schema
    commit (the same rows as its add, as bare SQL), and how the gap between
    the raw commit and send_email() divides: the schema's extra pages (schema
    commit - raw commit), the preparation of the message, and the rest, which
    is the storage layer's Python and its waits for the writer (medians over
    repetitions of the figures within each)."""
    synced = [(v, rs) for v, rs in chosen if v.synced and rs[0].send_latencies]
    if not synced:
        return
    us = 1e6
    raw = statistics.median(d.commit for d in disk) * us
    schema = statistics.median(d.schema_commit for d in disk) * us
    prepare = statistics.median(d.prepare for d in disk) * us
    print(
        f"\nThe caller's path at FULL, medians in us: one-row commit {raw:.0f};"
        f" schema commit (the add's rows as bare SQL, one transaction) {schema:.0f}"
        f" (x{statistics.median(d.schema_commit / d.commit for d in disk):.2f});"
        f" preparation (send_email() on MemoryStorage) {prepare:.0f}."
    )
    width = max(len(v.name) for v, _ in synced)
    header = (
        f"{'variant':<{width}} {'send p50':>8} {'x commit':>8} {'x schema':>8} "
        f"{'gap us':>6} {'schema':>6} {'prepare':>7} {'storage':>7}"
    )
    print(header)
    print("-" * len(header))
    for variant, results in synced:
        rows = []
        for result, d in zip(results, disk, strict=True):
            send = statistics.median(result.send_latencies)
            gap = send - d.commit
            rows.append(
                (
                    send,
                    send / d.commit,
                    send / d.schema_commit,
                    gap,
                    (d.schema_commit - d.commit) / gap,
                    d.prepare / gap,
                    (send - d.schema_commit - d.prepare) / gap,
                )
            )
        send, x_commit, x_schema, gap, pages, prep, rest = (
            statistics.median(column) for column in zip(*rows, strict=True)
        )
        print(
            f"{variant.name:<{width}} {send * us:>8.0f} {x_commit:>8.2f} "
            f"{x_schema:>8.2f} {gap * us:>6.0f} {pages:>6.0%} {prep:>7.0%} "
            f"{rest:>7.0%}"
        )
    print(
        "'gap' is send p50 - one-row commit; 'schema' the part of it that is the"
        " schema's extra pages (schema commit - one-row commit), 'prepare' the"
        " message's preparation, 'storage' the rest: the storage layer's Python"
        " and its waits for the writer (with the worker's bookkeeping running)."
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="mailstrom_py throughput benchmark")
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument(
        "--repeat", type=int, default=1, help="interleaved repetitions (medians)"
    )
    parser.add_argument("--size", type=int, default=2048, help="body bytes")
    parser.add_argument("--threads", type=int, default=4, help="delivery threads")
    parser.add_argument(
        "--sink", choices=["auto", "smtp-sink", "aiosmtpd"], default="auto"
    )
    parser.add_argument(
        "--only",
        type=lambda text: {int(n) for n in text.split(",")},
        help="comma-separated variant numbers to run (the baselines 0-2 always run)",
    )
    parser.add_argument(
        "--postfix",
        action="store_true",
        help="also run the last variant: a private Postfix relaying to the sink "
        "(needs root and Postfix; skipped with the reason otherwise)",
    )
    parser.add_argument(
        "--profile",
        type=int,
        metavar="N",
        help="run variant N once under cProfile (every thread) and print where "
        "its CPU went, instead of the table",
    )
    return parser.parse_args()


def run_once(variant: Variant, kind: str) -> Result:
    """Run a variant against a fresh sink; check what the sink received.

    Raises:
        VariantSkipped: the variant cannot run here.
    """
    sink = Sink(kind)
    meter = LoadMeter()
    try:
        result = variant.run(sink)
    finally:
        received = sink.count()
    result = dataclasses.replace(result, load=meter.stop())
    if received != result.messages:
        raise SystemExit(
            f"{variant.name}: sink received {received}, sent {result.messages}"
        )
    return result


def main() -> int:
    args = parse_args()
    kind = args.sink
    if kind == "auto":
        kind = "smtp-sink" if shutil.which("smtp-sink") else "aiosmtpd"
    messages = [build_message(n, args.size) for n in range(args.messages)]
    print(
        f"{args.messages} messages of {len(messages[0])} bytes, one recipient; "
        f"sink: {kind} on {LOOPBACK}; {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f}; {args.threads} delivery threads; "
        f"{args.repeat} interleaved repetition(s)\n"
    )
    postgres = Postgres()
    with tempfile.TemporaryDirectory() as tmp, contextlib.closing(postgres):
        every = variants(messages, args.threads, Path(tmp), postgres)
        if args.profile is not None:
            with profiled():
                run_once(every[args.profile], kind)
            return 0
        numbers = [
            n
            for n, v in enumerate(every)
            if n in (NAIVE, REUSED, THREADS)
            or (n in args.only if args.only else not v.on_request or args.postfix)
        ]
        results: dict[int, list[Result]] = {n: [] for n in numbers}
        skipped: dict[int, str] = {}
        disk = []
        probe = DiskProbe(Path(tmp), messages[0])
        for _ in range(args.repeat):
            for number in numbers:
                if number in skipped:
                    continue
                probe.sample()
                try:
                    results[number].append(run_once(every[number], kind))
                except VariantSkipped as exc:
                    skipped[number] = str(exc)
            probe.sample()
            disk.append(probe.end_repetition())
        probe.close()
    report([(every[n], results[n]) for n in numbers if n not in skipped], results, disk)
    report_disk(disk)
    report_caller_path(
        [(every[n], results[n]) for n in numbers if n not in skipped], disk
    )
    print(
        f"Load average at the end: {os.getloadavg()[0]:.1f}. Every sink received "
        "exactly the number of messages sent."
    )
    if args.postfix or (args.only and len(every) - 1 in args.only):
        print("Postfix's CPU column is its submitters' only, not Postfix's own.")
    for number, why in skipped.items():
        print(f"variant {number} skipped: {why}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
