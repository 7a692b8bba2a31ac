"""How the queue commands show a message: text lines, as ``mailq`` does, or JSON.

A listed message is its status plus two facts from the stored message, its
size and its envelope sender (:class:`Listed`). Times are shown relative to
``now`` in text and as UTC ISO 8601 timestamps in JSON.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from ..status import MessageStatus, RecipientStatus
from ..storage import Storage

__all__ = [
    "Listed",
    "as_json",
    "describe",
    "duration",
    "listed",
    "timestamp",
]

Json = dict[str, object]


@dataclass(frozen=True)
class Listed:
    """A message as the queue commands show it.

    Attributes:
        status: its delivery status.
        size: the stored message's length in bytes.
        sender: the envelope sender; ``""`` for the null reverse-path.
    """

    status: MessageStatus
    size: int
    sender: str


def listed(storage: Storage, status: MessageStatus) -> Listed:
    """Return ``status`` with the size and sender of its stored message.

    Raises:
        MessageNotFound: the message was dropped since ``status`` was read.
    """
    email = storage.email(status.message_id)
    return Listed(status, len(email.data), email.mail_from)


def duration(seconds: float) -> str:
    """Return a span of time as ``45s``, ``12m``, ``2h5m`` or ``3d4h``
    (rounded down to its unit; less than a second counts as ``0s``)."""
    left = max(0, int(seconds))
    if left < 60:
        return f"{left}s"
    if left < 3600:
        return f"{left // 60}m"
    if left < 86400:
        hours, minutes = divmod(left // 60, 60)
        return f"{hours}h{minutes}m" if minutes else f"{hours}h"
    days, hours = divmod(left // 3600, 24)
    return f"{days}d{hours}h" if hours else f"{days}d"


def timestamp(moment: float | None) -> str | None:
    """Return ``moment`` (epoch seconds) as ``2025-01-31T12:00:00Z``, or None."""
    if moment is None:
        return None
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def describe(item: Listed, now: float) -> list[str]:
    """Return the lines ``queue list`` and ``status`` print for one message.

    The first line holds the id, size, age, when the message was first due
    and since when its retries count (each only when not its creation time),
    envelope sender and state; each recipient follows on a line of its own,
    indented, with its result, the attempts so far, when the next is due, and
    the last outcome.
    """
    status = item.status
    state = "completed" if status.completed else "pending"
    first_due, retry_since = _schedule_times(status)
    head = [
        status.message_id,
        f"{item.size} bytes",
        f"age {duration(now - status.created_at)}",
        *([] if first_due is None else [f"first due {_relative(first_due, now)}"]),
        *(
            []
            if retry_since is None
            else [f"retry since {_relative(retry_since, now)}"]
        ),
        f"from <{item.sender}>",
        state + (" held" if status.held else ""),
    ]
    return ["  ".join(head), *(_recipient_line(r, now) for r in status.recipients)]


def _schedule_times(status: MessageStatus) -> tuple[float | None, float | None]:
    """When ``status``'s message was first due and since when its retries
    count (:attr:`~mailstrom_py.MessageStatus.retry_since`), each ``None``
    when it is the message's creation time (nothing worth showing)."""
    first = status.first_due_at
    since = status.retry_since
    return (
        None if first is None or first == status.created_at else first,
        None if since == status.created_at else since,
    )


def _relative(moment: float, now: float) -> str:
    """``moment`` as ``in 2h`` or ``5m ago``."""
    if moment > now:
        return f"in {duration(moment - now)}"
    return f"{duration(now - moment)} ago"


def _recipient_line(r: RecipientStatus, now: float) -> str:
    parts = [f"  {r.address}", r.result.value, f"attempts={r.attempts}"]
    if not r.completed and r.next_attempt_at is not None:
        wait = r.next_attempt_at - now
        parts.append(f"next in {duration(wait)}" if wait >= 1 else "due now")
    if r.possibly_delivered:
        parts.append("possibly-delivered")
    outcome = " ".join(p for p in (r.status_code, r.detail) if p)
    if outcome:
        parts.append(outcome)
    return "  ".join(parts)


def as_json(item: Listed, now: float) -> Json:
    """Return one message as ``--json`` shows it: a JSON-ready mapping
    (``first_due`` and ``retry_since`` are ``null`` when they are its creation
    time)."""
    status = item.status
    first_due, retry_since = _schedule_times(status)
    return {
        "id": status.message_id,
        "created": timestamp(status.created_at),
        "age": max(0, round(now - status.created_at)),
        "first_due": timestamp(first_due),
        "retry_since": timestamp(retry_since),
        "size": item.size,
        "sender": item.sender,
        "held": status.held,
        "completed": status.completed,
        "recipients": [_recipient_json(r) for r in status.recipients],
    }


def _recipient_json(r: RecipientStatus) -> Json:
    return {
        "address": r.address,
        "result": r.result.value,
        "attempts": r.attempts,
        "last_attempt": timestamp(r.last_attempt_at),
        "next_attempt": None if r.completed else timestamp(r.next_attempt_at),
        "status_code": r.status_code,
        "detail": r.detail,
        "last_reply": None if r.last_reply is None else str(r.last_reply),
        "possibly_delivered": r.possibly_delivered,
        "remote": None if r.remote is None else r.remote.as_json(),
    }
