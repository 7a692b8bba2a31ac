"""What events cost: queueing with no listener, with the metrics listener, and
with the event journal a webhook reads (SQLite), and how fast the dispatcher
hands events on.

    python benchmarks/events.py                    # 5,000 messages each
    python benchmarks/events.py --messages 500     # a smoke run

Nothing is delivered and nothing leaves the machine: an Outbox queues the
messages; the dispatcher is measured by emitting events straight to it.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import threading
import time
from pathlib import Path

from mailstrom_py import (
    Config,
    Event,
    EventKind,
    MemoryStorage,
    Outbox,
    RelayConfig,
    SqliteStorage,
    Storage,
    WebhookConfig,
)
from mailstrom_py.events import Dispatcher


def config(webhook: bool) -> Config:
    return Config(
        helo_name="bench.example.test",
        delivery=RelayConfig(host="127.0.0.1", port=1, tls="none"),
        webhook=WebhookConfig(url="http://127.0.0.1:9/") if webhook else None,
        event_queue_size=10_000_000,
    )


def queue_rate(
    storage: Storage, messages: int, *, metrics: bool, webhook: bool
) -> float:
    """Messages queued per second by send_email()."""
    raw = [
        f"From: a@example.test\r\nTo: b@example.test\r\nSubject: {n}\r\n\r\nhi\r\n"
        for n in range(messages)
    ]
    with Outbox(config(webhook), storage) as outbox:
        if metrics:
            _ = outbox.metrics
        started = time.perf_counter()
        for text in raw:
            outbox.send_email(text)
        return messages / (time.perf_counter() - started)


def dispatch_rate(events: int) -> float:
    """Events per second through a dispatcher to one listener that counts."""
    dispatcher = Dispatcher(capacity=events + 1)
    done = threading.Event()
    seen = 0

    def count(event: Event) -> None:
        nonlocal seen
        seen += 1
        if seen == events:
            done.set()

    dispatcher.subscribe(count)
    event = Event(EventKind.DELIVERED, "m@x", "a@example.test", 0.0)
    started = time.perf_counter()
    for _ in range(events):
        dispatcher.emit([event])
    done.wait(60)
    rate = events / (time.perf_counter() - started)
    dispatcher.stop(5)
    return rate


def main() -> None:
    logging.getLogger("mailstrom_py").setLevel(logging.ERROR)  # no loss warnings
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    args = parser.parse_args()
    n = args.messages
    print(f"send_email(), {n} messages, msgs/s:")
    for label, metrics in (("no listener", False), ("metrics listener", True)):
        rate = queue_rate(MemoryStorage(), n, metrics=metrics, webhook=False)
        print(f"  MemoryStorage, {label:<26} {rate:10,.0f}")
    with tempfile.TemporaryDirectory() as folder:
        for label, webhook in (("no journal", False), ("journal (webhook set)", True)):
            db = Path(folder) / f"{webhook}.db"
            rate = queue_rate(
                SqliteStorage(db, synchronous="NORMAL"),
                n,
                metrics=False,
                webhook=webhook,
            )
            print(f"  SqliteStorage NORMAL, {label:<19} {rate:10,.0f}")
    print(
        f"dispatcher, {n * 10} events to one listener: "
        f"{dispatch_rate(n * 10):,.0f} events/s"
    )


if __name__ == "__main__":
    main()
