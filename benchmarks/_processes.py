"""Worker processes delivering from one queue (an SQLite file, or a PostgreSQL
database), for the throughput benchmark.

A queue is named by a spec: ``sqlite:PATH`` or ``postgres:DSN``. The benchmark
process fills it through an :class:`~mailstrom_py.Outbox`
(``send_emails()`` in batches of 100, as producers in other processes would),
while the workers, each a fresh interpreter running a started
:class:`~mailstrom_py.Mailstrom` on the same queue (what ``mailstrom-py
worker`` runs), wait for a word on their standard input. The clock then runs
from that word until no message is pending: the rate is the workers' delivery
rate from a full queue, and their CPU time is counted from the same moment.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from _harness import LOOPBACK, Result, cpu_seconds

import mailstrom_py
from mailstrom_py import (
    Config,
    Outbox,
    QueueFilter,
    RelayConfig,
    SqliteStorage,
    Storage,
)

ROOT = Path(__file__).resolve().parent.parent

_WORKER = """
import resource, sys
sys.path.insert(0, "benchmarks")
from _processes import open_queue
from mailstrom_py import Config, Mailstrom, RelayConfig, Timeouts
spec, host, port, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
storage = open_queue(spec)
def cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
config = Config(
    helo_name="bench.test",
    delivery=RelayConfig(host=host, port=port, tls="none"),
    timeouts=Timeouts.uniform(30),
    delivery_threads=threads,
)
mailer = Mailstrom(config, storage)
print("ready", flush=True)
sys.stdin.readline()
cpu0 = cpu()
mailer.start()
sys.stdin.readline()
mailer.stop()
print(cpu() - cpu0, flush=True)
"""

_BATCH = 100


def open_queue(spec: str) -> Storage:
    """The storage ``spec`` names: ``sqlite:PATH`` or ``postgres:DSN``."""
    kind, _, where = spec.partition(":")
    if kind == "sqlite":
        return SqliteStorage(where)
    if kind == "postgres":
        # Looked up here: without psycopg only this spec fails, not the import.
        postgres: type[Storage] = mailstrom_py.PostgresStorage
        return postgres(where)  # type: ignore[call-arg]
    raise ValueError(f"not a queue spec: {spec!r}")


def _spawn(spec: str, port: int, threads: int) -> subprocess.Popen[str]:
    worker = subprocess.Popen(
        [sys.executable, "-c", _WORKER, spec, LOOPBACK, str(port), str(threads)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert worker.stdout is not None
    line = worker.stdout.readline().strip()
    if line != "ready":
        worker.kill()
        raise SystemExit(f"a worker process did not start: {line!r}")
    return worker


def _tell(worker: subprocess.Popen[str]) -> None:
    assert worker.stdin is not None
    worker.stdin.write("\n")
    worker.stdin.flush()


def run_worker_processes(
    spec: str, port: int, messages: list[bytes], processes: int, threads: int
) -> Result:
    """Fill the queue ``spec`` names with ``messages``, then deliver them with
    ``processes`` worker processes of ``threads`` delivery threads each; check
    that every message was delivered."""
    config = Config(
        helo_name="bench.test", delivery=RelayConfig(host=LOOPBACK, port=port)
    )
    workers = [_spawn(spec, port, threads) for _ in range(processes)]
    latencies = []
    try:
        with Outbox(config, open_queue(spec)) as outbox:
            ids: list[str] = []
            for start in range(0, len(messages), _BATCH):
                chunk = messages[start : start + _BATCH]
                s0 = time.perf_counter()
                ids += outbox.send_emails(chunk)
                latencies.append((time.perf_counter() - s0) / len(chunk))
            cpu0, t0 = cpu_seconds(), time.perf_counter()
            for worker in workers:
                _tell(worker)
            pending = QueueFilter(completed=False)
            deadline = time.monotonic() + 300
            while outbox.count_messages(pending):
                if time.monotonic() > deadline:
                    raise SystemExit("worker processes: mail pending after 300 s")
                time.sleep(0.005)
            elapsed, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
            failed = sum(not outbox.query_status(i).succeeded for i in ids)
        for worker in workers:
            _tell(worker)
        for worker in workers:
            out, _ = worker.communicate(timeout=120)
            cpu += float(out.split()[-1])
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    if failed or len(ids) != len(messages):
        raise SystemExit(f"worker processes: {failed} messages not delivered")
    return Result(len(messages), elapsed, cpu, tuple(latencies))
