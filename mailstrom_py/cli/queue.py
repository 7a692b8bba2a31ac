"""``mailstrom-py queue`` and ``status``: what ``mailq``, ``postsuper`` and
``postcat -q`` do, on the queue of a configuration file or an SQLite file.

The commands are thin over :class:`~mailstrom_py.Storage` and
:class:`~mailstrom_py.QueueFilter`. They may run while a worker in another
process uses the same queue; it picks up kicked and released mail on its next
look at storage (within a second by default).

Exit status: 0 on success; 1 when a message id given matches no message (the
others are still acted on) or the storage fails; 2 for a usage error or a
configuration that cannot be used.
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import sys
import time
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

from ..config.loader import load_config
from ..errors import MessageNotFound
from ..status import DeliveryResult
from ..storage import QueueFilter, SqliteStorage, Storage, queue_admin
from .common import config_path, open_storage, require_shared_storage
from .listing import Listed, as_json, describe, listed

__all__ = ["add_queue_command", "add_status_command", "run_queue", "run_status"]

_ACTIONS = {
    "list": "show the selected messages and their recipients, oldest first",
    "count": "print how many messages are selected",
    "kick": "make the selected messages due now",
    "hold": "stop attempting the selected messages until released",
    "release": "take the selected messages off hold",
    "drop": "remove the selected messages for good, telling no one",
}
_SHOW = "print a stored message exactly as it will be sent (as postcat -q does)"
_PURGE = (
    "remove messages completed (every recipient delivered or failed) more than"
    " AGE ago, in small batches"
)
_PAST_TENSE = {
    "kick": "kicked",
    "hold": "held",
    "release": "released",
    "drop": "dropped",
}
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}

#: What ``queue list`` prints for a queue without messages.
EMPTY = "mail queue is empty"
#: What it prints when the queue has messages but none is selected.
NONE_SELECTED = "no message selected"

AddParser = Callable[..., argparse.ArgumentParser]


@runtime_checkable
class Purging(Protocol):
    """A queue that removes completed mail by age (SQLite's and PostgreSQL's)."""

    def purge_completed(
        self, older_than: float, *, now: float | None = None, batch: int = 500
    ) -> int: ...


def _duration(text: str) -> float:
    match = _DURATION.match(text.strip().lower())
    if match is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an age such as 90, 90s, 15m, 2h or 3d"
        )
    return float(match.group(1)) * _UNITS[match.group(2)]


def add_queue_command(add_parser: AddParser) -> None:
    """Add ``queue list|count|kick|hold|release|drop|purge|show``."""
    queue = add_parser(
        "queue",
        help="list, count, kick, hold, release, drop, purge or show queued mail",
    )
    actions = queue.add_subparsers(dest="action", required=True)
    for action, text in _ACTIONS.items():
        sub = actions.add_parser(action, help=text, description=text)
        _add_source(sub)
        _add_filters(sub)
        if action in ("list", "count"):
            _add_json(sub)
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
    purge = actions.add_parser("purge", help=_PURGE, description=_PURGE)
    purge.add_argument(
        "--older-than",
        metavar="AGE",
        type=_duration,
        required=True,
        help="time since completion: 90, 90s, 15m, 2h or 3d",
    )
    _add_source(purge)
    show = actions.add_parser("show", help=_SHOW, description=_SHOW)
    show.add_argument("message_id", metavar="ID", help="the message")
    _add_source(show)
    _add_json(show)


def add_status_command(add_parser: AddParser) -> None:
    """Add ``status ID``."""
    status = add_parser("status", help="show the status of one message")
    status.add_argument("message_id", help="the id send_email() returned")
    _add_source(status)
    _add_json(status)


def _add_source(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--config",
        metavar="FILE",
        help="the queue of this configuration file (the default: the file"
        " $MAILSTROM_CONFIG names, else /etc/mailstrom/mailstrom.toml)",
    )
    source.add_argument(
        "--db", metavar="PATH", help="the queue in this SqliteStorage file"
    )


def _add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", action="store_true", help="print JSON instead of text"
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


def _bare(message_id: str) -> str:
    """An id as given, less the angle brackets of a pasted Message-ID."""
    return message_id.strip().removeprefix("<").removesuffix(">")


def _filter(args: argparse.Namespace, now: float) -> QueueFilter:
    return QueueFilter(
        ids=tuple(dict.fromkeys(_bare(i) for i in args.ids)),
        results=tuple(DeliveryResult(r) for r in args.result or ()),
        completed=args.completed,
        held=args.held,
        domain=args.domain,
        recipient=args.recipient,
        created_before=None if args.older_than is None else now - args.older_than,
        created_after=None if args.newer_than is None else now - args.newer_than,
    )


def open_queue(args: argparse.Namespace) -> Storage:
    """Open the queue that ``--db`` or the configuration file names; never
    create one.

    Raises:
        ConfigError: the configuration file cannot be used.
        StorageError: the queue cannot be opened (a missing file among them).
    """
    if args.db is not None:
        return SqliteStorage(args.db, create=False)
    loaded = load_config(config_path(args.config))
    require_shared_storage(loaded)
    return open_storage(loaded.storage, create=False)


def run_queue(args: argparse.Namespace) -> int:
    """Run ``queue ACTION``; return the exit status."""
    now = time.time()
    if args.action == "show":
        return _with_queue(args, lambda storage: _show(storage, args))
    if args.action == "purge":
        return _with_queue(args, lambda storage: _purge(storage, args.older_than))
    where = _filter(args, now)
    if args.action == "drop" and where == QueueFilter() and not args.all:
        print(
            "mailstrom-py: drop needs message ids, a filter, or --all",
            file=sys.stderr,
        )
        return 2
    return _with_queue(args, lambda storage: _act(storage, args, where, now))


def run_status(args: argparse.Namespace) -> int:
    """Run ``status ID``; return the exit status."""
    now = time.time()

    def show(storage: Storage) -> int:
        item = listed(storage, storage.status(_bare(args.message_id)))
        _print_items([item], args.json, now, single=True)
        return 0

    return _with_queue(args, show)


def _with_queue(args: argparse.Namespace, work: Callable[[Storage], int]) -> int:
    storage = open_queue(args)
    try:
        return work(storage)
    finally:
        storage.close()


def _act(
    storage: Storage, args: argparse.Namespace, where: QueueFilter, now: float
) -> int:
    unknown = _unknown(storage, where.ids)
    if args.action == "list":
        _list(storage, args, where, now)
    elif args.action == "count":
        count = queue_admin(storage).count(where)
        print(json.dumps({"count": count}) if args.json else count)
    else:
        _change(storage, args.action, where, now)
    for message_id in unknown:
        print(f"mailstrom-py: no message with id {message_id!r}", file=sys.stderr)
    return 1 if unknown else 0


def _unknown(storage: Storage, ids: Sequence[str]) -> list[str]:
    """The ids of ``ids`` that name no stored message."""
    if not ids:
        return []
    found = {
        s.message_id for s in queue_admin(storage).find(QueueFilter(ids=tuple(ids)))
    }
    return [i for i in ids if i not in found]


def _list(
    storage: Storage, args: argparse.Namespace, where: QueueFilter, now: float
) -> None:
    admin = queue_admin(storage)
    items = []
    for status in admin.find(where, args.limit):
        try:
            items.append(listed(storage, status))
        except MessageNotFound:
            continue  # dropped while listing
    if items or args.json:
        _print_items(items, args.json, now)
    else:
        print(EMPTY if admin.count(QueueFilter()) == 0 else NONE_SELECTED)


def _print_items(
    items: list[Listed], as_json_: bool, now: float, *, single: bool = False
) -> None:
    if as_json_:
        shown = [as_json(item, now) for item in items]
        print(json.dumps(shown[0] if single else shown, indent=2))
        return
    for item in items:
        print("\n".join(describe(item, now)))


def _change(storage: Storage, action: str, where: QueueFilter, now: float) -> None:
    admin = queue_admin(storage)
    operations = {
        "kick": lambda: admin.kick(where, now),
        "hold": lambda: admin.hold(where),
        "release": lambda: admin.release(where),
        "drop": lambda: admin.drop(where),
    }
    changed = operations[action]()
    for message_id in changed:
        print(message_id)
    print(
        f"{_PAST_TENSE[action]} {len(changed)} message"
        + ("" if len(changed) == 1 else "s"),
        file=sys.stderr,
    )


def _purge(storage: Storage, older_than: float) -> int:
    if not isinstance(storage, Purging):
        print(
            f"mailstrom-py: {type(storage).__name__} cannot purge completed mail",
            file=sys.stderr,
        )
        return 2
    removed = storage.purge_completed(older_than)
    print(f"purged {removed} message" + ("" if removed == 1 else "s"), file=sys.stderr)
    return 0


def _show(storage: Storage, args: argparse.Namespace) -> int:
    email = storage.email(_bare(args.message_id))
    if args.json:
        print(
            json.dumps(
                {
                    "id": email.message_id,
                    "sender": email.mail_from,
                    "recipients": list(email.recipients),
                    "size": len(email.data),
                    "smtputf8": email.smtputf8,
                    "eight_bit": email.eight_bit,
                    "require_tls": email.require_tls,
                    "tls_optional": email.tls_optional,
                    "data_base64": base64.b64encode(email.data).decode("ascii"),
                },
                indent=2,
            )
        )
        return 0
    sys.stdout.flush()
    sys.stdout.buffer.write(email.data)
    return 0
