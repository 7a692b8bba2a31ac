"""The JSON behind each page, for monitoring to poll.

Times are UTC ISO 8601 strings (``2025-01-31T12:00:00Z``) or ``null``; ages
are whole seconds. A reply is ``{"code", "enhanced", "text", "step"}``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from ..status import MessageStatus, RecipientStatus, SmtpReply
from .facts import Destination, Failure, Timeline
from .messages import MessageDetail, MessageList, Row
from .views import DestinationsView, Overview

__all__ = [
    "destinations_json",
    "message_json",
    "messages_json",
    "overview_json",
    "timestamp",
]

Json = dict[str, object]


def timestamp(moment: float | None) -> str | None:
    """``moment`` (epoch seconds) as ``2025-01-31T12:00:00Z``, or ``None``."""
    if moment is None:
        return None
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def overview_json(view: Overview) -> Json:
    oldest = view.oldest
    return {
        "time": timestamp(view.now),
        "messages": view.counts.as_dict(),
        "depth": view.counts.depth,
        "oldest_pending": None
        if oldest is None
        else {
            "id": oldest.message_id,
            "created": timestamp(oldest.created_at),
            "age": _age(view.now, oldest.created_at),
        },
        "per_minute": _timeline_json(view.timeline),
        "failed_last_hour": [_failure_json(f) for f in view.failures],
        "scanned": view.scanned,
    }


def _timeline_json(line: Timeline) -> Json:
    return {
        "counts": "recipients, at the start of their last attempt, by result now",
        "partial": line.partial,
        "totals": line.totals(),
        "minutes": [
            {
                "start": timestamp(m.start),
                "delivered": m.delivered,
                "deferred": m.deferred,
                "failed": m.failed,
            }
            for m in line.minutes
        ],
    }


def _failure_json(failure: Failure) -> Json:
    return {"message_id": failure.message_id, **recipient_json(failure.recipient)}


def destinations_json(view: DestinationsView) -> Json:
    return {
        "time": timestamp(view.now),
        "since": timestamp(view.since),
        "relay": view.relay,
        "destinations": [_destination_json(d) for d in view.destinations],
        "domains": [_destination_json(d) for d in view.domains],
        "scanned": view.scanned,
        "partial": view.partial,
    }


def _destination_json(d: Destination) -> Json:
    return {
        "destination": d.name,
        "pending": d.pending,
        "deferred": d.deferred,
        "held": d.held,
        "delivered": d.delivered,
        "failed": d.failed,
        "oldest_pending": timestamp(d.oldest_pending_at),
        "last": None if d.last is None else recipient_json(d.last),
        "last_trouble": None
        if d.last_trouble is None
        else recipient_json(d.last_trouble),
    }


def messages_json(listing: MessageList, now: float) -> Json:
    return {
        "total": listing.total,
        "partial": listing.partial,
        "messages": [_row_json(row, now) for row in listing.rows],
    }


def _row_json(row: Row, now: float) -> Json:
    return {
        **_status_json(row.status, now),
        "state": row.state,
        "sender": row.sender,
        "subject": row.subject,
        "size": row.size,
    }


def message_json(detail: MessageDetail, now: float) -> Json:
    email = detail.email
    shown: Json = {
        **_status_json(detail.status, now),
        "state": detail.state,
        "sender": email.mail_from,
        "size": len(email.data),
        "smtputf8": email.smtputf8,
        "eight_bit": email.eight_bit,
        "require_tls": email.require_tls,
        "tls_optional": email.tls_optional,
        "headers": [[name, value] for name, value in detail.fields],
    }
    if detail.body is not None:
        shown["body"] = detail.body
        shown["body_truncated"] = detail.body_truncated
    return shown


def _status_json(status: MessageStatus, now: float) -> Json:
    """A status as JSON; ``first_due`` and ``retry_since`` are ``null`` when
    they are the message's creation time."""
    first = status.first_due_at
    return {
        "id": status.message_id,
        "created": timestamp(status.created_at),
        "age": _age(now, status.created_at),
        "first_due": None if first == status.created_at else timestamp(first),
        "retry_since": (
            None
            if status.retry_since == status.created_at
            else timestamp(status.retry_since)
        ),
        "held": status.held,
        "completed": status.completed,
        "recipients": [recipient_json(r) for r in status.recipients],
    }


def recipient_json(r: RecipientStatus) -> Json:
    """One recipient's status as JSON."""
    return {
        "address": r.address,
        "result": r.result.value,
        "attempts": r.attempts,
        "last_attempt": timestamp(r.last_attempt_at),
        "next_attempt": None if r.completed else timestamp(r.next_attempt_at),
        "status_code": r.status_code,
        "detail": r.detail,
        "last_reply": reply_json(r.last_reply),
        "rcpt_reply": reply_json(r.rcpt_reply),
        "possibly_delivered": r.possibly_delivered,
        "remote": None if r.remote is None else r.remote.as_json(),
    }


def reply_json(reply: SmtpReply | None) -> Json | None:
    if reply is None:
        return None
    return {
        "code": reply.code,
        "enhanced": reply.enhanced,
        "text": reply.text,
        "step": None if reply.step is None else reply.step.value,
    }


def _age(now: float, then: float) -> int:
    return max(0, round(now - then))
