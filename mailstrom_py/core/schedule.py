"""When a scheduled message is due: :func:`send_time`, the check behind
``send_email(send_at=...)`` and ``Outbox.schedule()``."""

from __future__ import annotations

from datetime import datetime

from ..errors import InvalidMessageError

__all__ = ["MAX_AHEAD", "send_time"]

#: How far ahead a message may be scheduled, in seconds: 60 days, as mox allows.
MAX_AHEAD = 60 * 86400.0


def send_time(at: datetime, now: float, field: str = "send_at") -> float | None:
    """Return ``at`` as seconds since the epoch, or ``None`` when it is not
    after ``now`` (a time past is "at once").

    Args:
        at: when the message is due: a datetime with a time zone.
        now: the time of the call, in seconds since the epoch.
        field: the name the error gives the value.

    Raises:
        InvalidMessageError: ``at`` is not a datetime, has no time zone (a
            naive datetime means no single time), or is more than
            :data:`MAX_AHEAD` (60 days) after ``now``.
    """
    if not isinstance(at, datetime):
        raise InvalidMessageError(
            f"must be a datetime with a time zone, not {type(at).__name__}", field
        )
    if at.tzinfo is None or at.utcoffset() is None:
        raise InvalidMessageError(
            f"{at.isoformat()} has no time zone; give one, such as"
            " datetime.now(UTC) + timedelta(hours=2)",
            field,
        )
    when = at.timestamp()
    if when - now > MAX_AHEAD:
        raise InvalidMessageError(
            f"{at.isoformat()} is more than 60 days ahead; a message may be"
            " scheduled at most 60 days ahead",
            field,
        )
    return when if when > now else None
