"""``mailstrom-py suppression`` and ``destination``: the suppression list and the
suspended destinations of a configuration file's queue (or of an SQLite file).

They change what the workers sharing that storage do, in any process: a worker
reads the suppression list as it claims mail, and the suspensions within a
second.

Exit status: 0 on success; 1 when an address or destination given to
``remove`` or ``resume`` had no entry (the others are still removed) or the
storage fails; 2 for a usage error or a configuration that cannot be used.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from ..config import SuppressionPolicy
from ..storage import Storage
from ..storage.controls import (
    Controls,
    Suppression,
    Suspension,
    fold_address,
    fold_destination,
)
from .queue import add_source, open_queue
from .times import duration

__all__ = ["add_controls_commands", "run_controls"]

AddParser = Callable[..., argparse.ArgumentParser]
Entry = Suppression | Suspension


def add_controls_commands(add_parser: AddParser) -> None:
    """Add ``suppression list|add|remove`` and ``destination
    list|suspend|resume``."""
    days = SuppressionPolicy().duration / 86400
    suppression = add_parser(
        "suppression", help="list, add or remove suppressed recipient addresses"
    )
    actions = suppression.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="show the suppressed addresses")
    add = actions.add_parser("add", help="suppress addresses")
    add.add_argument("addresses", nargs="+", metavar="ADDRESS")
    add.add_argument("--reason", default="a command", help="why, shown in statuses")
    add.add_argument(
        "--for",
        dest="duration",
        type=duration,
        default=SuppressionPolicy().duration,
        metavar="DURATION",
        help=f"how long (default {days:g}d)",
    )
    remove = actions.add_parser("remove", help="take addresses off the list")
    remove.add_argument("addresses", nargs="+", metavar="ADDRESS")

    destination = add_parser(
        "destination", help="list, suspend or resume delivery to destinations"
    )
    verbs = destination.add_subparsers(dest="action", required=True)
    shown = verbs.add_parser("list", help="show the suspended destinations")
    suspend = verbs.add_parser(
        "suspend", help="stop delivering to a destination for a while"
    )
    suspend.add_argument(
        "destination",
        metavar="NAME",
        help='"relay", a preset such as "gmail", a set of exchangers, or a domain',
    )
    suspend.add_argument(
        "--for",
        dest="duration",
        type=duration,
        required=True,
        metavar="DURATION",
        help="how long (2h, 30m...)",
    )
    suspend.add_argument("--reason", default="a command", help="why")
    resume = verbs.add_parser("resume", help="end a destination's suspension")
    resume.add_argument("destination", metavar="NAME")
    for parser in (listing, add, remove, shown, suspend, resume):
        add_source(parser)
    for parser in (listing, shown):
        parser.add_argument("--json", action="store_true", help="print JSON")


def run_controls(args: argparse.Namespace) -> int:
    """Run ``suppression ACTION`` or ``destination ACTION``; return the exit
    status."""
    storage, _ = open_queue(args)
    try:
        controls = _controls(storage)
        if args.command == "suppression":
            return _suppression(controls, args, time.time())
        return _destination(controls, args, time.time())
    finally:
        storage.close()


def _controls(storage: Storage) -> Controls:
    if not isinstance(storage, Controls):  # pragma: no cover (every backend is)
        raise TypeError(f"{type(storage).__name__} keeps no suppression list")
    return storage


def _suppression(controls: Controls, args: argparse.Namespace, now: float) -> int:
    if args.action == "list":
        _show(
            controls.suppressions(now),
            args.json,
            "no address is suppressed",
            lambda e: (
                f"{e.address}  since {_when(e.since)}  until {_when(e.until)}"
                f"\n  {e.reason}"
            ),
        )
        return 0
    if args.action == "add":
        entries = [
            Suppression.lasting(a, args.reason, now, args.duration)
            for a in args.addresses
        ]
        controls.suppress(entries)
        for entry in entries:
            print(entry.address)
        return 0
    removed = controls.unsuppress(args.addresses)
    for address in removed:
        print(address)
    missing = [a for a in args.addresses if fold_address(a) not in removed]
    for address in missing:
        print(f"mailstrom-py: {address} is not suppressed", file=sys.stderr)
    return 1 if missing else 0


def _destination(controls: Controls, args: argparse.Namespace, now: float) -> int:
    if args.action == "list":
        _show(
            controls.suspensions(now),
            args.json,
            "no destination is suspended",
            lambda e: f"{e.destination}  until {_when(e.until)}  {e.reason}",
        )
        return 0
    name = fold_destination(args.destination)
    if args.action == "suspend":
        entry = Suspension.lasting(name, args.reason, now, args.duration)
        controls.suspend(entry)
        print(f"{name} suspended until {_when(entry.until)}")
        return 0
    if controls.resume(name):
        print(f"{name} resumed")
        return 0
    print(f"mailstrom-py: {name} is not suspended", file=sys.stderr)
    return 1


def _show(
    entries: Sequence[Entry], as_json: bool, empty: str, line: Callable[[Any], str]
) -> None:
    if as_json:
        print(json.dumps([dataclasses.asdict(e) for e in entries], indent=2))
        return
    if not entries:
        print(empty)
    for entry in entries:
        print(line(entry))


def _when(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
