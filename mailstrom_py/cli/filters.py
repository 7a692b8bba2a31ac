"""The options of the queue commands that select messages, and the
:class:`~mailstrom_py.QueueFilter` they make."""

from __future__ import annotations

import argparse

from ..status import DeliveryResult
from ..storage import QueueFilter
from .times import age

__all__ = ["add_filters", "bare", "queue_filter"]


def add_filters(parser: argparse.ArgumentParser) -> None:
    """Add the message ids and the filter options to ``parser``."""
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
        "--sender",
        metavar="ADDRESS",
        help="only messages with this envelope sender ('' for the null sender)",
    )
    parser.add_argument(
        "--older-than",
        type=age,
        metavar="AGE",
        help="only messages older than AGE (90, 15m, 2h, 3d)",
    )
    parser.add_argument(
        "--newer-than", type=age, metavar="AGE", help="only messages younger"
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


def bare(message_id: str) -> str:
    """An id as given, less the angle brackets of a pasted Message-ID."""
    return message_id.strip().removeprefix("<").removesuffix(">")


def queue_filter(args: argparse.Namespace, now: float) -> QueueFilter:
    """The filter the options of :func:`add_filters` ask for."""
    sender = args.sender
    if sender is not None:
        sender = bare(sender)
    return QueueFilter(
        ids=tuple(dict.fromkeys(bare(i) for i in args.ids)),
        results=tuple(DeliveryResult(r) for r in args.result or ()),
        completed=args.completed,
        held=args.held,
        domain=args.domain,
        recipient=args.recipient,
        sender=sender,
        created_before=None if args.older_than is None else now - args.older_than,
        created_after=None if args.newer_than is None else now - args.newer_than,
    )
