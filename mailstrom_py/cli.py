"""The ``mailstrom-py`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import __version__
from .demo import run_demo
from .dkim import generate_key, txt_record, write_key
from .errors import ConfigError

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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line on ``argv`` (default ``sys.argv[1:]``); return the code."""
    args = _parser().parse_args(argv)
    if args.command == "demo":
        return run_demo(args.seconds)
    if args.command == "dkim-keygen":
        return _dkim_keygen(args)
    return 2  # pragma: no cover (argparse rejects unknown commands)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
