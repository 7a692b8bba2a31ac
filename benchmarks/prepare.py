"""Time prepare_email() on the caller's thread, by kind of message.

Prints the median and best CPU time per call of the calling thread, in
microseconds, for the 2 KB message of throughput.py as bytes and as str, and for
a typical EmailMessage built with set_content(); and, for each, the time of the
full path alone (the email package's parse, fold and generate), which is what
bytes or str cost whenever the fast path declines them. The row "as send_email"
calls what ``Mailstrom.send_email()`` calls: a mailer's Preparer, with the time.

Thread CPU time rather than wall time: it is the caller's cost, and it does not
count the time other processes on a busy machine hold the CPU.

    python benchmarks/prepare.py
"""

from __future__ import annotations

import statistics
import sys
import time
import timeit
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from throughput import build_message

from mailstrom_py import Config, RelayConfig
from mailstrom_py.message import PreparedEmail, Preparer, prepare_email
from mailstrom_py.message.completion import MessageIds
from mailstrom_py.message.fullpath import prepare_full
from mailstrom_py.message.parsing import CachingHeaderRegistry

HELO = "bench.example.test"
IDS = MessageIds(HELO)
PREPARER = Preparer.from_config(
    Config(helo_name=HELO, delivery=RelayConfig(host="relay.example.test"))
)


def typical_email() -> EmailMessage:
    message = EmailMessage()
    message["From"] = "Alice Example <alice@example.org>"
    message["To"] = "Bob <bob@example.org>, carol@example.org"
    message["Subject"] = "Your order has shipped"
    line = "This is a line of a typical notification email.\n"
    message.set_content("Hello Bob,\n\n" + line * 30 + "\nRegards\n")
    return message


def quick(message: EmailMessage | bytes | str) -> PreparedEmail:
    return prepare_email(message, helo_name=HELO)


def as_send_email(message: EmailMessage | bytes | str) -> PreparedEmail:
    """Prepare as Mailstrom.send_email() does: its Preparer, with the time."""
    return PREPARER.prepare(message, now=datetime.fromtimestamp(time.time(), UTC))


def full_path(message: EmailMessage | bytes | str) -> PreparedEmail:
    return prepare_full(
        message,
        CachingHeaderRegistry(),
        allow_8bit=False,
        mail_from=None,
        rcpt_to=None,
        allow_null_sender=False,
        now=datetime.now(UTC),
        new_message_id=IDS.new,
    )


def micros(call: Callable[[], object]) -> tuple[float, float]:
    """Median and best of 200 rounds of 20 calls, per call, in microseconds."""
    rounds = timeit.repeat(call, number=20, repeat=200, timer=time.thread_time)
    per_call = [t / 20 * 1e6 for t in rounds]
    return statistics.median(per_call), min(per_call)


def main() -> None:
    data = build_message(3, 2048)
    inputs: list[tuple[str, EmailMessage | bytes | str]] = [
        ("2 KB bytes", data),
        ("2 KB str", data.decode()),
        ("EmailMessage", typical_email()),
    ]
    ways = [("prepare_email", quick), ("as send_email", as_send_email)]
    ways.append(("full path only", full_path))
    print(f"{'input':<14}{'way':<15}{'median µs':>11}{'best µs':>10}")
    for name, message in inputs:
        for way, prepare in ways:
            median, best = micros(lambda: prepare(message))  # noqa: B023 (called now)
            print(f"{name:<14}{way:<15}{median:>11.1f}{best:>10.1f}")


if __name__ == "__main__":
    main()
