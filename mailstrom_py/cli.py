"""The ``mailstrom-py`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import __version__
from .demo import run_demo

__all__ = ["main"]


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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line on ``argv`` (default ``sys.argv[1:]``); return the code."""
    args = _parser().parse_args(argv)
    if args.command == "demo":
        return run_demo(args.seconds)
    return 2  # pragma: no cover (argparse rejects unknown commands)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
