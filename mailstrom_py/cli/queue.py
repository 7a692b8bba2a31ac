"""``mailstrom-py queue`` and ``status``: what ``mailq``, ``postsuper`` and
``postcat -q`` do, on the queue of a configuration file or an SQLite file.

The commands are thin over :class:`~mailstrom_py.Storage` and
:class:`~mailstrom_py.QueueFilter` (the filter options are
:mod:`.filters`, the changes :mod:`.changes`). They may run while a worker in
another process uses the same queue; it picks up kicked, released and
rescheduled mail, and the reports of failed mail, on its next look at storage
(within a second by default).

Exit status: 0 on success; 1 when a message id given matches no message (the
others are still acted on) or the storage fails; 2 for a usage error (a time
for ``schedule`` that cannot be used among them) or a configuration that
cannot be used.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol, runtime_checkable

from ..config.loader import load_config
from ..config.settings import LoadedConfig
from ..errors import MessageNotFound
from ..storage import QueueFilter, SqliteStorage, Storage, queue_admin
from .changes import OpenQueue, change
from .common import config_path, open_storage, require_shared_storage
from .filters import add_filters, bare, queue_filter
from .listing import Listed, as_json, describe, listed
from .times import age, when

__all__ = [
    "add_queue_command",
    "add_source",
    "add_status_command",
    "open_queue",
    "run_queue",
    "run_status",
]

_ACTIONS = {
    "list": "show the selected messages and their recipients, oldest first",
    "count": "print how many messages are selected",
    "kick": "make the selected messages due now",
    "hold": "stop attempting the selected messages until released",
    "release": "take the selected messages off hold",
    "schedule": "set when the next attempt on the selected messages is due",
    "fail": "fail the pending recipients of the selected messages now, and send"
    " the senders a delivery status notification when DSNs are on",
    "drop": "remove the selected messages for good, telling no one",
}
# The actions that need ids, a filter or --all: they cannot be undone.
_FINAL = ("fail", "drop")
_SHOW = "print a stored message exactly as it will be sent (as postcat -q does)"
_PURGE = (
    "remove messages completed (every recipient delivered or failed) more than"
    " AGE ago, in small batches"
)

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


def add_queue_command(add_parser: AddParser) -> None:
    """Add ``queue list|count|kick|hold|release|schedule|fail|drop|purge|show``."""
    queue = add_parser(
        "queue",
        help="list, count, kick, hold, release, schedule, fail, drop, purge or"
        " show queued mail",
    )
    actions = queue.add_subparsers(dest="action", required=True)
    for action, text in _ACTIONS.items():
        sub = actions.add_parser(action, help=text, description=text)
        add_source(sub)
        add_filters(sub)
        if action in ("list", "count"):
            _add_json(sub)
        if action == "list":
            sub.add_argument(
                "--limit", type=int, help="show at most this many (the oldest)"
            )
        if action in _FINAL:
            sub.add_argument(
                "--all",
                action="store_true",
                help=f"{action} every message (needed when no id or filter is given)",
            )
        if action == "schedule":
            _add_when(sub)
    show = actions.add_parser("show", help=_SHOW, description=_SHOW)
    show.add_argument("message_id", metavar="ID", help="the message")
    add_source(show)
    _add_json(show)
    purge = actions.add_parser("purge", help=_PURGE, description=_PURGE)
    purge.add_argument(
        "--older-than",
        metavar="AGE",
        type=age,
        required=True,
        help="time since completion: 90, 90s, 15m, 2h or 3d",
    )
    add_source(purge)


def add_status_command(add_parser: AddParser) -> None:
    """Add ``status ID``."""
    status = add_parser("status", help="show the status of one message")
    status.add_argument("message_id", help="the id send_email() returned")
    add_source(status)
    _add_json(status)


def _add_when(parser: argparse.ArgumentParser) -> None:
    when_ = parser.add_mutually_exclusive_group(required=True)
    when_.add_argument(
        "--in",
        dest="after",
        metavar="DURATION",
        help="due this long from now: 90s, 15m, 2h, 1d, 1h30m",
    )
    when_.add_argument(
        "--at",
        metavar="TIME",
        help="due at this ISO 8601 time (2026-12-24T09:00, local time unless"
        " it has an offset such as +01:00 or Z); at most 60 days ahead",
    )


def add_source(parser: argparse.ArgumentParser) -> None:
    """Add ``--config FILE`` or ``--db PATH``: where the queue is."""
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


def open_queue(args: argparse.Namespace) -> tuple[Storage, LoadedConfig | None]:
    """Open the queue that ``--db`` or the configuration file names; never
    create one.

    Returns:
        The queue, and the configuration it came from (None for ``--db``).

    Raises:
        ConfigError: the configuration file cannot be used.
        StorageError: the queue cannot be opened (a missing file among them).
    """
    if args.db is not None:
        return SqliteStorage(args.db, create=False), None
    loaded = load_config(config_path(args.config))
    require_shared_storage(loaded)
    return open_storage(loaded.storage, create=False), loaded


def run_queue(args: argparse.Namespace) -> int:
    """Run ``queue ACTION``; return the exit status."""
    now = time.time()
    if args.action == "show":
        return _with_queue(args, lambda queue: _show(queue.storage, args))
    if args.action == "purge":
        return _with_queue(args, lambda queue: _purge(queue.storage, args.older_than))
    where = queue_filter(args, now)
    if args.action in _FINAL and where == QueueFilter() and not args.all:
        print(
            f"mailstrom-py: {args.action} needs message ids, a filter, or --all",
            file=sys.stderr,
        )
        return 2
    try:
        at = when(args.at, args.after, now) if args.action == "schedule" else None
    except ValueError as exc:
        print(f"mailstrom-py: {exc}", file=sys.stderr)
        return 2
    return _with_queue(args, lambda queue: _act(queue, args, where, now, at))


def run_status(args: argparse.Namespace) -> int:
    """Run ``status ID``; return the exit status."""
    now = time.time()

    def show(queue: OpenQueue) -> int:
        storage = queue.storage
        item = listed(storage, storage.status(bare(args.message_id)))
        _print_items([item], args.json, now, single=True)
        return 0

    return _with_queue(args, show)


def _with_queue(args: argparse.Namespace, work: Callable[[OpenQueue], int]) -> int:
    storage, loaded = open_queue(args)
    try:
        return work(OpenQueue(storage, loaded))
    finally:
        storage.close()


def _act(
    queue: OpenQueue,
    args: argparse.Namespace,
    where: QueueFilter,
    now: float,
    at: datetime | None,
) -> int:
    storage = queue.storage
    unknown = _unknown(storage, where.ids)
    if args.action == "list":
        _list(storage, args, where, now)
    elif args.action == "count":
        count = queue_admin(storage).count(where)
        print(json.dumps({"count": count}) if args.json else count)
    else:
        change(queue, args.action, where, now, at)
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
    email = storage.email(bare(args.message_id))
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
