"""The ``mailstrom-py`` command line.

``demo`` runs the demonstration; ``dkim-keygen`` makes a DKIM key pair and prints
the DNS record to publish; ``config check`` loads a configuration file and shows
its settings. ``queue`` and ``status`` work on the queue in a
SQLite database (``--db PATH``), thin over :class:`~mailstrom_py.SqliteStorage`
and :class:`~mailstrom_py.QueueFilter`; they may run while a mailer in another
process uses the same file, which picks up kicked and released mail on its next
look at storage (within a second by default).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime

from .. import __version__
from ..errors import ConfigError, MessageNotFound, StorageError
from ..message.dkim import generate_key, txt_record, write_key
from ..status import DeliveryResult, MessageStatus
from ..storage import QueueFilter, SqliteStorage
from .configfile import add_config_command, run_config
from .demo import run_demo

__all__ = ["main"]

_ACTIONS = {
    "list": "show the selected messages and their recipients, oldest first",
    "count": "print how many messages are selected",
    "kick": "make the selected messages due now",
    "hold": "stop attempting the selected messages until released",
    "release": "take the selected messages off hold",
    "drop": "remove the selected messages for good, telling no one",
}
_PAST_TENSE = {
    "kick": "kicked",
    "hold": "held",
    "release": "released",
    "drop": "dropped",
}
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
# Tools written in C die of SIGPIPE when their reader goes away, silently, and
# a shell reports 128 + 13; exiting so lets `set -o pipefail` see what it would
# for cat or grep.
_SIGPIPE_EXIT = 141


def _duration(text: str) -> float:
    match = _DURATION.match(text.strip().lower())
    if match is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an age such as 90, 90s, 15m, 2h or 3d"
        )
    return float(match.group(1)) * _UNITS[match.group(2)]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mailstrom-py",
        description="A background mailer with per-recipient delivery status.",
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo",
        help="deliver a few messages to a loopback SMTP server and show their status",
    )
    demo.add_argument(
        "--seconds", type=float, default=3.5, help="how long to watch (default 3.5)"
    )
    keygen = commands.add_parser(
        "dkim-keygen",
        help="generate a DKIM key pair and print the DNS record to publish",
    )
    keygen.add_argument("--domain", required=True, help="the signing domain")
    keygen.add_argument("--selector", required=True, help="the selector")
    keygen.add_argument(
        "--algorithm",
        choices=("rsa-sha256", "ed25519-sha256"),
        default="rsa-sha256",
        help="the key type (default rsa-sha256)",
    )
    keygen.add_argument(
        "--bits", type=int, default=2048, help="RSA key size (default 2048)"
    )
    keygen.add_argument(
        "--out", required=True, help="the private key file to create (mode 0600)"
    )
    queue = commands.add_parser(
        "queue", help="list, count, kick, hold, release or drop queued mail"
    )
    actions = queue.add_subparsers(dest="action", required=True)
    for action, text in _ACTIONS.items():
        sub = actions.add_parser(action, help=text, description=text)
        _add_database(sub)
        _add_filters(sub)
        if action == "list":
            sub.add_argument(
                "--limit", type=int, help="show at most this many (the oldest)"
            )
        if action == "drop":
            sub.add_argument(
                "--all",
                action="store_true",
                help="drop every message (needed when no id or filter is given)",
            )
    status = commands.add_parser("status", help="show the status of one message")
    status.add_argument("message_id", help="the id send_email() returned")
    _add_database(status)
    add_config_command(commands.add_parser)
    return parser


def _dkim_keygen(args: argparse.Namespace) -> int:
    try:
        key = generate_key(args.domain, args.selector, args.algorithm, bits=args.bits)
        write_key(key, args.out)
    except ConfigError as exc:
        print(f"dkim-keygen: {exc.args[-1]}: {exc.args[0]}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"dkim-keygen: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.out}; publish this record:", file=sys.stderr)
    print(txt_record(key))
    return 0


def _add_database(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db", required=True, metavar="PATH", help="the SqliteStorage database file"
    )


def _add_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("ids", nargs="*", metavar="ID", help="only these messages")
    parser.add_argument(
        "--result",
        action="append",
        choices=[r.value for r in DeliveryResult],
        help="only messages with a recipient in this state (repeatable)",
    )
    parser.add_argument("--domain", help="only messages with a recipient there")
    parser.add_argument("--recipient", help="only messages with this recipient")
    parser.add_argument(
        "--older-than",
        type=_duration,
        metavar="AGE",
        help="only messages older than AGE (90, 15m, 2h, 3d)",
    )
    parser.add_argument(
        "--newer-than", type=_duration, metavar="AGE", help="only messages younger"
    )
    held = parser.add_mutually_exclusive_group()
    held.add_argument(
        "--held", dest="held", action="store_const", const=True, help="only held ones"
    )
    held.add_argument(
        "--not-held", dest="held", action="store_const", const=False, help="no held"
    )
    state = parser.add_mutually_exclusive_group()
    state.add_argument(
        "--pending",
        dest="completed",
        action="store_const",
        const=False,
        help="only messages with a queued or deferred recipient",
    )
    state.add_argument(
        "--completed",
        dest="completed",
        action="store_const",
        const=True,
        help="only messages whose recipients are all delivered or failed",
    )


def _filter(args: argparse.Namespace, now: float) -> QueueFilter:
    return QueueFilter(
        ids=tuple(args.ids),
        results=tuple(DeliveryResult(r) for r in args.result or ()),
        completed=args.completed,
        held=args.held,
        domain=args.domain,
        recipient=args.recipient,
        created_before=None if args.older_than is None else now - args.older_than,
        created_after=None if args.newer_than is None else now - args.newer_than,
    )


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def describe(status: MessageStatus) -> list[str]:
    """Return the lines ``queue list`` and ``status`` print for one message."""
    state = "completed" if status.completed else "pending"
    lines = [
        f"{status.message_id}  created {_when(status.created_at)}  {state}"
        + ("  held" if status.held else "")
    ]
    for r in status.recipients:
        parts = [f"  {r.address}", r.result.value, f"attempts={r.attempts}"]
        if not r.completed and r.next_attempt_at is not None:
            parts.append(f"next={_when(r.next_attempt_at)}")
        if r.possibly_delivered:
            parts.append("possibly-delivered")
        outcome = " ".join(p for p in (r.status_code, r.detail) if p)
        if outcome:
            parts.append(outcome)
        lines.append("  ".join(parts))
    return lines


def _queue(args: argparse.Namespace) -> int:
    now = time.time()
    where = _filter(args, now)
    if args.action == "drop" and where == QueueFilter() and not args.all:
        print(
            "mailstrom-py: drop needs message ids, a filter, or --all",
            file=sys.stderr,
        )
        return 2
    storage = SqliteStorage(args.db, create=False)
    try:
        if args.action == "list":
            for status in storage.find(where, args.limit):
                print("\n".join(describe(status)))
        elif args.action == "count":
            print(storage.count(where))
        else:
            operations = {
                "kick": lambda: storage.kick(where, now),
                "hold": lambda: storage.hold(where),
                "release": lambda: storage.release(where),
                "drop": lambda: storage.drop(where),
            }
            changed = operations[args.action]()
            for message_id in changed:
                print(message_id)
            print(
                f"{_PAST_TENSE[args.action]} {len(changed)} message"
                + ("" if len(changed) == 1 else "s"),
                file=sys.stderr,
            )
    finally:
        storage.close()
    return 0


def _status(args: argparse.Namespace) -> int:
    storage = SqliteStorage(args.db, create=False)
    try:
        print("\n".join(describe(storage.status(args.message_id))))
    finally:
        storage.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line on ``argv`` (default ``sys.argv[1:]``); return the code.

    Returns 0 on success, 1 when the message is unknown or the storage fails,
    2 for a usage error, and 141 when the reader of the output went away (as in
    ``queue list | head -1``), quietly.
    """
    try:
        try:
            return _run(argv)
        finally:
            sys.stdout.flush()
    except BrokenPipeError:
        # Python would print a traceback, then fail again flushing at exit.
        _discard_stdout()
        return _SIGPIPE_EXIT


def _discard_stdout() -> None:
    """Point standard output at the null device (what is still buffered too)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass  # no file descriptor (a captured stream): nothing flushes to the pipe


def _run(argv: Sequence[str] | None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "demo":
        return run_demo(args.seconds)
    if args.command == "dkim-keygen":
        return _dkim_keygen(args)
    if args.command == "config":
        return run_config(args)
    try:
        return _queue(args) if args.command == "queue" else _status(args)
    except (MessageNotFound, StorageError) as exc:
        print(f"mailstrom-py: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
