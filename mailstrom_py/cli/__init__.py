"""The ``mailstrom-py`` command line: the parser, and dispatch to the commands.

``worker`` delivers the queue of a configuration file as a daemon; ``send`` is
a sendmail that puts a message in that queue (and ``mailstrom-py`` invoked as
``sendmail`` is ``send``); ``queue`` and ``status`` look at and change the
queue, ``suppression`` and ``destination`` the suppression list and the
suspended destinations, and ``dashboard`` serves web pages that do both;
``config check`` loads
a configuration file and shows its settings; ``dkim-keygen`` makes a DKIM key
pair; ``demo`` runs the demonstration. Each command lives in a module of its
own here.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from .. import __version__
from ..errors import ConfigError, MessageNotFound, StorageError
from .configfile import add_config_command, run_config
from .controls import add_controls_commands, run_controls
from .dashboard import add_dashboard_command, run_dashboard
from .demo import run_demo
from .keygen import add_keygen_command, run_keygen
from .queue import add_queue_command, add_status_command, run_queue, run_status
from .send import run_send
from .worker import add_worker_command, run_worker

__all__ = ["main"]

# Tools written in C die of SIGPIPE when their reader goes away, silently, and
# a shell reports 128 + 13; exiting so lets `set -o pipefail` see what it would
# for cat or grep.
_SIGPIPE_EXIT = 141
#: The names under which the program is ``send`` (installed as a sendmail).
SENDMAIL_NAMES = frozenset({"sendmail"})


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mailstrom-py",
        description="A background mailer with per-recipient delivery status.",
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    add_worker_command(commands.add_parser)
    # send parses sendmail's options itself (main() hands it its arguments);
    # it is listed here for --help.
    commands.add_parser(
        "send",
        help="queue a message read from standard input, as sendmail does"
        " (see: mailstrom-py send --help)",
        add_help=False,
    )
    add_queue_command(commands.add_parser)
    add_status_command(commands.add_parser)
    add_controls_commands(commands.add_parser)
    add_dashboard_command(commands.add_parser)
    add_config_command(commands.add_parser)
    add_keygen_command(commands.add_parser)
    demo = commands.add_parser(
        "demo",
        help="deliver a few messages to a loopback SMTP server and show their status",
    )
    demo.add_argument(
        "--seconds", type=float, default=3.5, help="how long to watch (default 3.5)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line on ``argv`` (default ``sys.argv[1:]``); return the code.

    Returns the command's exit status (its module says which): 0 on success,
    2 for a usage error or a bad configuration file (``send``: sendmail's
    codes, 64 to 78), and 141 when the reader of the output went away (as in
    ``queue list | head -1``), quietly. Invoked as ``sendmail`` (through a
    link of that name) it is ``send`` on all of ``sys.argv[1:]``.
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
    if argv is None:
        if os.path.basename(sys.argv[0]) in SENDMAIL_NAMES:
            return run_send(sys.argv[1:], prog="sendmail")
        argv = sys.argv[1:]
    if argv and argv[0] == "send":
        return run_send(argv[1:])
    args = _parser().parse_args(argv)
    if args.command == "demo":
        return run_demo(args.seconds)
    if args.command == "dkim-keygen":
        return run_keygen(args)
    if args.command == "config":
        return run_config(args)
    if args.command == "worker":
        return run_worker(args)
    if args.command == "dashboard":
        return run_dashboard(args)
    try:
        if args.command in ("suppression", "destination"):
            return run_controls(args)
        return run_queue(args) if args.command == "queue" else run_status(args)
    except ConfigError as exc:
        print(f"mailstrom-py: {exc}", file=sys.stderr)
        return 2
    except (MessageNotFound, StorageError) as exc:
        print(f"mailstrom-py: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
