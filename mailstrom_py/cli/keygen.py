"""``mailstrom-py dkim-keygen``: make a DKIM key pair, print the record to publish."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from ..errors import ConfigError
from ..message.dkim import generate_key, txt_record, write_key

__all__ = ["add_keygen_command", "run_keygen"]


def add_keygen_command(add_parser: Callable[..., argparse.ArgumentParser]) -> None:
    """Add ``dkim-keygen`` through the subcommands' ``add_parser``."""
    keygen = add_parser(
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


def run_keygen(args: argparse.Namespace) -> int:
    """Write the key; 0, or 2 for bad arguments, 1 when the file cannot be made."""
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
