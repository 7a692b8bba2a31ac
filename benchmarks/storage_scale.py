"""How SqliteStorage behaves with a large queue.

Measures, on this machine:

1. the cost of ``send_email()`` and of ``SqliteStorage.add()`` per message, with
   ``synchronous="FULL"`` and ``"NORMAL"`` (``--sample`` messages each);
2. with ``--messages`` messages queued in one file (default one million), in a
   freshly started process: the time to open the file, ``query_status()`` times,
   the time from starting the process to the first delivery (to an SMTP server
   on 127.0.0.1), and the process's memory once the worker runs. The same is
   measured on a small queue, to show that memory does not grow with the queue.

Needs aiosmtpd (the ``demo`` or ``test`` extra). Nothing leaves the machine.

    python benchmarks/storage_scale.py                      # one million: minutes
    python benchmarks/storage_scale.py --messages 2000 --sample 50    # a smoke run
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from mailstrom_py import (
    Config,
    Mailstrom,
    QueueFilter,
    RelayConfig,
    SqliteStorage,
    prepare_email,
)

HELO = "bench.example.test"
RAW = (
    "From: Bench <bench@example.test>\r\n"
    "To: someone@example.test\r\n"
    "Subject: benchmark message {n}\r\n"
    "\r\n" + "A line of a typical short notification message.\r\n" * 8
)


def message_id(n: int) -> str:
    return f"bench-{n}@{HELO}"


def rss_mb() -> float:
    """The resident set size of this process now, in MiB (Linux)."""
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def config(port: int = 9) -> Config:
    return Config(helo_name=HELO, delivery=RelayConfig("127.0.0.1", port, tls="none"))


# -- 1. enqueue cost ----------------------------------------------------------------


def enqueue_cost(directory: Path, synchronous: str, sample: int) -> dict[str, float]:
    path = directory / f"enqueue-{synchronous.lower()}.db"
    storage = SqliteStorage(path, synchronous=synchronous)  # type: ignore[arg-type]
    mailer = Mailstrom(config(), storage)
    started = time.perf_counter()
    for n in range(sample):
        mailer.send_email(RAW.format(n=n))
    send = (time.perf_counter() - started) / sample
    emails = [
        prepare_email(RAW.format(n=n), helo_name=HELO, message_id=message_id(n))
        for n in range(sample)
    ]
    started = time.perf_counter()
    for email in emails:
        storage.add(email, time.time())
    add = (time.perf_counter() - started) / sample
    mailer.stop()
    return {"send_email_us": send * 1e6, "add_us": add * 1e6}


# -- 2. a large queue -----------------------------------------------------------------


def fill(path: Path, count: int) -> float:
    """Queue `count` messages, all due now; return the seconds it took."""
    template = prepare_email(RAW.format(n=0), helo_name=HELO)
    storage = SqliteStorage(path, synchronous="NORMAL")
    started = time.perf_counter()
    now = time.time() - count * 1e-3
    for n in range(count):
        storage.add(dataclasses.replace(template, message_id=message_id(n)), now)
        now += 1e-3
        if n and n % 100_000 == 0:
            print(f"  queued {n:,}", file=sys.stderr, flush=True)
    storage.close()
    return time.perf_counter() - started


def restart(path: Path, count: int, port: int) -> dict[str, Any]:
    """In this fresh process: open, start, first delivery, then query_status()
    times and memory while the worker keeps delivering."""
    started = time.perf_counter()
    storage = SqliteStorage(path)
    opened = time.perf_counter() - started
    mailer = Mailstrom(config(port), storage)
    mailer.start()
    first = mailer.wait(message_id(0), timeout=120)
    assert first.succeeded, first
    to_first = time.perf_counter() - started
    rng = random.Random(1)
    timings = []
    for _ in range(1000):
        wanted = message_id(rng.randrange(count))
        began = time.perf_counter()
        mailer.query_status(wanted)
        timings.append(time.perf_counter() - began)
    timings.sort()
    result = {
        "open_s": opened,
        "open_to_first_delivery_s": to_first,
        "status_median_ms": statistics.median(timings) * 1e3,
        "status_p99_ms": timings[int(len(timings) * 0.99)] * 1e3,
        "rss_mb": rss_mb(),
        "peak_rss_mb": peak_rss_mb(),
        "delivered_meanwhile": mailer.count_messages(QueueFilter(completed=True)),
    }
    mailer.stop(timeout=60)
    return result


class _FirstArrival:
    def __init__(self) -> None:
        self.first: float | None = None
        self.arrived = threading.Event()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        if self.first is None:
            self.first = time.monotonic()
            self.arrived.set()
        return "250 2.0.0 OK"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def measure_restart(path: Path, count: int) -> dict[str, Any]:
    """Restart a mailer on `path` in a new process, timed from its launch."""
    handler = _FirstArrival()
    port = _free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        launched = time.monotonic()
        done = subprocess.run(
            [sys.executable, __file__, "--restart", str(path), str(count), str(port)],
            capture_output=True,
            text=True,
            check=True,
        )
        assert handler.first is not None
        result: dict[str, Any] = json.loads(done.stdout)
        result["launch_to_first_delivery_s"] = handler.first - launched
    finally:
        controller.stop()
    return result


# -- the report -----------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--sample", type=int, default=2000)
    parser.add_argument(
        "--dir", type=Path, help="where to put the files (default: a new temp dir)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the files")
    parser.add_argument("--restart", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.restart:
        path, count, port = args.restart
        print(json.dumps(restart(Path(path), int(count), int(port))))
        return

    temporary = args.dir is None
    directory = args.dir or Path(tempfile.mkdtemp(prefix="mailstrom-bench-"))
    directory.mkdir(parents=True, exist_ok=True)
    try:
        report: dict[str, Any] = {"messages": args.messages, "sample": args.sample}
        for synchronous in ("FULL", "NORMAL"):
            report[f"enqueue_{synchronous}"] = enqueue_cost(
                directory, synchronous, args.sample
            )
        sizes = sorted({min(args.messages, 10_000), args.messages})
        for size in sizes:
            path = directory / f"queue-{size}.db"
            print(f"filling {size:,} messages", file=sys.stderr, flush=True)
            fill_s = fill(path, size)
            report[f"queue_{size}"] = {
                "fill_s": fill_s,
                "file_mb": path.stat().st_size / 2**20,
                **measure_restart(path, size),
            }
        print(json.dumps(report, indent=2))
        print_table(report, sizes)
    finally:
        if args.keep:
            pass
        elif temporary:
            shutil.rmtree(directory, ignore_errors=True)
        else:  # someone else's directory: remove only our own files
            for path in directory.glob("*.db*"):
                if path.name.startswith(("enqueue-", "queue-")):
                    path.unlink()


def print_table(report: dict[str, Any], sizes: list[int]) -> None:
    print()
    for synchronous in ("FULL", "NORMAL"):
        cost = report[f"enqueue_{synchronous}"]
        print(
            f"enqueue, synchronous={synchronous:<6}"
            f"  send_email {cost['send_email_us']:8.0f} us"
            f"   storage.add {cost['add_us']:8.0f} us   per message"
        )
    for size in sizes:
        q = report[f"queue_{size}"]
        print(
            f"{size:>9,} queued ({q['file_mb']:.0f} MiB file):"
            f" open {q['open_s'] * 1e3:.0f} ms,"
            f" query_status median {q['status_median_ms']:.3f} ms"
            f" (p99 {q['status_p99_ms']:.3f} ms),"
            f" launch to first delivery {q['launch_to_first_delivery_s']:.2f} s"
            f" (open to first {q['open_to_first_delivery_s'] * 1e3:.0f} ms),"
            f" RSS {q['rss_mb']:.0f} MiB (peak {q['peak_rss_mb']:.0f} MiB)"
        )


if __name__ == "__main__":
    main()
