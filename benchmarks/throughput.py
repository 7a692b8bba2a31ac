"""Throughput of mailstrom_py against a naive smtplib loop, measured in one run.

Starts a sink on 127.0.0.1 (Postfix's smtp-sink when installed, otherwise an
aiosmtpd sink in a child process), then for N messages of about 2 KB with one
recipient measures, end to end (first send to last recipient delivered):

* the baseline: an smtplib loop that connects, sends and quits per message;
* mailstrom_py with MemoryStorage;
* mailstrom_py with SqliteStorage at its default durability (FULL), then with
  send_emails() batches, from four caller threads at once (as a web
  application's request threads would), and with synchronous=NORMAL, to show
  what the disk sync on the caller's path costs;
* mailstrom_py with PostgresStorage, on a throwaway PostgreSQL server on
  127.0.0.1 started by the script (``tests/support/postgres.py``) at its
  default durability; skipped, with the reason printed, when the PostgreSQL
  server programs or psycopg are missing;
* with ``--postfix``, as the "hand it to the local MTA" reference: a private
  Postfix instance (needs root; see _postfix.py) relaying to the sink, fed by
  smtplib over four reused connections from four threads.

It prints messages per second, the ratio to the baseline, client CPU time per
message, the median and p99 time of ``send_email()`` on the caller's thread,
and checks that the sink received exactly as many messages as were sent.
Only loopback addresses are used.

    python benchmarks/throughput.py --messages 10000
    python benchmarks/throughput.py --only 1,2   # the baseline and two variants
    python benchmarks/throughput.py --postfix    # every variant and Postfix

Variants are numbered from 0 (the baseline) in the order they are printed;
Postfix is the last one and runs only when asked for (``--postfix`` or ``--only``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import resource
import shutil
import signal
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from _postfix import PostfixUnavailable, PrivatePostfix

from mailstrom_py import (
    Config,
    Mailstrom,
    MemoryStorage,
    PostgresStorage,
    QueueFilter,
    RelayConfig,
    SqliteStorage,
    Storage,
    Timeouts,
)

try:
    from support.postgres import PgServer, find_bin_dir
except ImportError as exc:  # psycopg is missing
    PG_MISSING: str | None = f"cannot use PostgreSQL here: {exc}"
else:
    PG_MISSING = (
        None if find_bin_dir() else "the PostgreSQL server programs are not installed"
    )

LOOPBACK = "127.0.0.1"

_AIOSMTPD_SINK = """
import asyncio, sys
from aiosmtpd.controller import Controller
class Sink:
    count = 0
    async def handle_DATA(self, server, session, envelope):
        Sink.count += 1
        return "250 2.0.0 ok"
c = Controller(Sink(), hostname=sys.argv[1], port=int(sys.argv[2]),
               server_hostname="sink.test")
c.start()
print("ready", flush=True)
sys.stdin.read()
c.stop()
print(Sink.count, flush=True)
"""


class VariantSkipped(Exception):
    """Raised when a variant cannot run on this machine; the message says why."""


@dataclass(frozen=True)
class Result:
    name: str
    messages: int
    seconds: float
    cpu: float
    send_latencies: tuple[float, ...] = ()

    @property
    def rate(self) -> float:
        return self.messages / self.seconds


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


class Sink:
    """A sink process on loopback that counts what it receives."""

    def __init__(self, kind: str) -> None:
        self.port = free_port()
        self.kind = kind
        if kind == "smtp-sink":
            # -c prints a running count; a file, not a pipe, so it never blocks.
            self.log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 (closed in count())
            cmd = ["smtp-sink", "-c", "-u", "nobody", f"{LOOPBACK}:{self.port}", "256"]
            self.proc = subprocess.Popen(
                cmd, stdout=self.log, stderr=subprocess.DEVNULL
            )
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                with (
                    contextlib.suppress(OSError),
                    socket.create_connection((LOOPBACK, self.port), timeout=1),
                ):
                    break
                time.sleep(0.05)
        else:
            cmd = [sys.executable, "-c", _AIOSMTPD_SINK, LOOPBACK, str(self.port)]
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
            )
            assert self.proc.stdout is not None
            assert self.proc.stdout.readline().strip() == "ready"

    def wait_for(self, messages: int, stall_s: float = 30) -> int:
        """Wait until a live smtp-sink has received ``messages`` messages, or until
        its count has not moved for ``stall_s`` seconds; return the count."""
        assert self.kind == "smtp-sink"
        received, moved = 0, time.monotonic()
        while received < messages and time.monotonic() - moved < stall_s:
            time.sleep(0.005)
            # pread leaves alone the file offset smtp-sink shares and writes at.
            size = os.fstat(self.log.fileno()).st_size
            tail = os.pread(self.log.fileno(), 256, max(size - 256, 0))
            counts = re.findall(rb"mesg=(\d+)\r", tail)
            if counts and int(counts[-1]) > received:
                received, moved = int(counts[-1]), time.monotonic()
        return received

    def count(self) -> int:
        """Stop the sink and return how many messages it accepted."""
        if self.kind == "smtp-sink":
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=10)
            self.log.seek(0)
            counts = re.findall(r"mesg=(\d+)", self.log.read())
            self.log.close()
            return int(counts[-1]) if counts else 0
        out, _ = self.proc.communicate("", timeout=30)
        return int(out.split()[-1])


def build_message(n: int, size: int) -> bytes:
    body = ("x" * 70 + "\r\n") * (size // 72)
    return (
        f"From: bench@example.test\r\nTo: sink{n % 10}@example.test\r\n"
        f"Subject: benchmark {n}\r\n\r\n{body}"
    ).encode()


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_naive(port: int, messages: list[bytes]) -> Result:
    """The 1.0x baseline: connect, send, quit for every message."""
    cpu0, t0 = cpu_seconds(), time.perf_counter()
    for raw in messages:
        with smtplib.SMTP(LOOPBACK, port, local_hostname="bench.test", timeout=30) as s:
            s.sendmail("bench@example.test", ["sink@example.test"], raw)
    return Result(
        "smtplib, new connection per message",
        len(messages),
        time.perf_counter() - t0,
        cpu_seconds() - cpu0,
    )


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
    return Result(name, len(messages), elapsed, cpu, every_latency)


def wait_until_delivered(mailer: Mailstrom, last: str) -> None:
    """Wait until no message has a pending recipient (a count, not a read of
    every status, so that the waiting costs little next to the sending)."""
    mailer.wait(last, timeout=300)
    deadline = time.monotonic() + 300
    while mailer.count_messages(QueueFilter(completed=False)):
        if time.monotonic() > deadline:
            raise SystemExit("messages still pending after 300 seconds")
        time.sleep(0.02)


def run_postfix(sink: Sink, messages: list[bytes], connections: int = 4) -> Result:
    """A private Postfix relaying to the sink, fed by smtplib from ``connections``
    threads, each over its own reused connection; timed from the first submission
    until the sink has counted every message. Postfix's own CPU time is not in
    the result's, which is the submitting threads' only.

    Raises:
        VariantSkipped: when Postfix cannot run here.
    """
    if sink.kind != "smtp-sink":
        raise VariantSkipped("needs smtp-sink as the sink, to count while it runs")
    shares = [messages[n::connections] for n in range(connections)]
    failures: list[BaseException] = []

    def submit(port: int, share: list[bytes]) -> None:
        try:
            with smtplib.SMTP(
                LOOPBACK, port, local_hostname="bench.test", timeout=30
            ) as smtp:
                for raw in share:
                    smtp.sendmail("bench@example.test", ["sink@example.test"], raw)
        except (OSError, smtplib.SMTPException) as exc:
            failures.append(exc)

    postfix = PrivatePostfix(relay_port=sink.port)
    try:
        postfix.start()
    except PostfixUnavailable as exc:
        raise VariantSkipped(str(exc)) from exc
    try:
        cpu0, t0 = cpu_seconds(), time.perf_counter()
        submitters = [
            threading.Thread(target=submit, args=(postfix.port, share))
            for share in shares
        ]
        for submitter in submitters:
            submitter.start()
        for submitter in submitters:
            submitter.join()
        received = 0 if failures else sink.wait_for(len(messages))
        elapsed = time.perf_counter() - t0
        cpu = cpu_seconds() - cpu0
        if failures or received != len(messages):
            failure = f"{failures[0]}; " if failures else ""
            raise SystemExit(
                f"Postfix: {failure}sink received {received} of {len(messages)}; "
                f"its log ends:\n{postfix.log_tail()}"
            )
    finally:
        postfix.stop()
    return Result(
        f"Postfix relaying (smtplib, {connections} connections)",
        len(messages),
        elapsed,
        cpu,
    )


Variant = Callable[[Sink], Result]

#: The number of the Postfix variant, which runs only when asked for.
POSTFIX = 7


class Postgres:
    """A PostgreSQL server started on first use and stopped by ``close()``;
    each storage it makes has a database of its own."""

    def __init__(self) -> None:
        self.server: PgServer | None = None

    def storage(self, sink: Sink) -> Storage:
        if PG_MISSING:
            raise VariantSkipped(PG_MISSING)
        if self.server is None:
            self.server = PgServer(settings={"shared_buffers": "128MB"})
            self.server.start()
        dsn = self.server.create_database(f"bench_{sink.port}")
        return PostgresStorage(dsn)

    def close(self) -> None:
        if self.server is not None:
            self.server.close()


def variants(
    messages: list[bytes], threads: int, tmp: Path, postgres: Postgres
) -> list[Variant]:
    """The variants to measure, each taking the sink."""

    def sqlite(sink: Sink, **options: str) -> Storage:
        return SqliteStorage(str(tmp / f"bench-{sink.port}.db"), **options)  # type: ignore[arg-type]

    def mailstrom(
        name: str, storage: Callable[[Sink], Storage], **options: int
    ) -> Variant:
        return lambda sink: run_mailstrom(
            name, sink.port, messages, storage(sink), threads, **options
        )

    return [
        lambda sink: run_naive(sink.port, messages),
        mailstrom("mailstrom_py, MemoryStorage", lambda _: MemoryStorage()),
        mailstrom("mailstrom_py, SqliteStorage (default)", sqlite),
        mailstrom("  ... send_emails() batches of 100", sqlite, batch=100),
        mailstrom("  ... from 4 caller threads", sqlite, callers=4),
        mailstrom(
            "  ... synchronous=NORMAL",
            lambda sink: sqlite(sink, synchronous="NORMAL"),
        ),
        mailstrom("mailstrom_py, PostgresStorage", postgres.storage),
        lambda sink: run_postfix(sink, messages),
    ]


def report(results: list[Result]) -> None:
    base = results[0].rate
    width = max(40, *(len(r.name) for r in results))
    header = (
        f"{'variant':<{width}} {'msgs/s':>8} {'x naive':>8} {'CPU us/msg':>11} "
        f"{'send p50 us':>12} {'send p99 us':>12}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        p50 = p99 = ""
        if r.send_latencies:
            ordered = sorted(r.send_latencies)
            p50 = f"{statistics.median(ordered) * 1e6:.0f}"
            p99 = f"{ordered[max(int(len(ordered) * 0.99) - 1, 0)] * 1e6:.0f}"
        print(
            f"{r.name:<{width}} {r.rate:>8.0f} {r.rate / base:>8.2f} "
            f"{r.cpu / r.messages * 1e6:>11.0f} {p50:>12} {p99:>12}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description="mailstrom_py throughput benchmark")
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=2048, help="body bytes")
    parser.add_argument("--threads", type=int, default=4, help="delivery threads")
    parser.add_argument(
        "--sink", choices=["auto", "smtp-sink", "aiosmtpd"], default="auto"
    )
    parser.add_argument(
        "--only",
        type=lambda text: {int(n) for n in text.split(",")},
        help="comma-separated variant numbers to run (0 is the baseline, always run)",
    )
    parser.add_argument(
        "--postfix",
        action="store_true",
        help=f"also run variant {POSTFIX}: a private Postfix relaying to the sink "
        "(needs root and Postfix; skipped with the reason otherwise)",
    )
    args = parser.parse_args()
    chosen = args.only or set(range(1, POSTFIX))
    if args.postfix:
        chosen |= {POSTFIX}
    kind = args.sink
    if kind == "auto":
        kind = "smtp-sink" if shutil.which("smtp-sink") else "aiosmtpd"
    messages = [build_message(n, args.size) for n in range(args.messages)]
    print(
        f"{args.messages} messages of {len(messages[0])} bytes, one recipient; "
        f"sink: {kind} on {LOOPBACK}; {os.cpu_count()} CPUs; "
        f"{args.threads} delivery threads\n"
    )
    results = []
    skipped = []
    postgres = Postgres()
    with tempfile.TemporaryDirectory() as tmp, contextlib.closing(postgres):
        every = variants(messages, args.threads, Path(tmp), postgres)
        for number, variant in enumerate(every):
            if number and number not in chosen:
                continue
            sink = Sink(kind)
            try:
                result = variant(sink)
            except VariantSkipped as exc:
                skipped.append(f"variant {number} skipped: {exc}")
                continue
            finally:
                received = sink.count()
            if received != result.messages:
                print(
                    f"{result.name}: sink received {received}, sent {result.messages}"
                )
                return 1
            results.append(result)
    report(results)
    print("\nEvery sink received exactly the number of messages sent.")
    if any(r.name.startswith("Postfix") for r in results):
        print("Postfix's CPU column is its submitters' only, not Postfix's own.")
    for line in skipped:
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
