"""Times given on the command line: ``--in 2h`` and ``--at 2026-12-24T09:00``,
for ``send`` and ``queue schedule``."""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta

from ..config.loader import parse_duration
from ..core.schedule import send_time
from ..errors import InvalidMessageError

__all__ = ["age", "duration", "when"]


def age(text: str) -> float:
    """An ``argparse`` type: seconds, bare or with units (``90``, ``90s``,
    ``15m``, ``2h``, ``3d``, ``1h30m``), at least 0."""
    stripped = text.strip()
    bare = stripped.replace(".", "", 1).isdigit()
    seconds = float(stripped) if bare else parse_duration(stripped)
    if seconds is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an age such as 90, 90s, 15m, 2h, 3d or 1h30m"
        )
    return seconds


def duration(text: str) -> float:
    """An ``argparse`` type: a duration with units (``90s``, ``15m``, ``30d``,
    ``1h30m``), above 0."""
    seconds = parse_duration(text)
    if seconds is None or seconds <= 0:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration such as 90s, 15m, 2h, 30d or 1h30m"
        )
    return seconds


def when(
    at: str | None, after: str | None, now: float | None = None
) -> datetime | None:
    """Return the time ``--at`` or ``--in`` names, or ``None`` when neither is
    given.

    Args:
        at: an ISO 8601 date and time (``2026-12-24T09:00``,
            ``2026-12-24 09:00+01:00``, ``...Z``); one without an offset is the
            local time of this machine.
        after: a duration from now: ``90s``, ``15m``, ``2h``, ``1d``, ``1h30m``.
        now: the time to count ``after`` from; the clock's by default.

    Raises:
        ValueError: both are given, either cannot be read, or the time is more
            than 60 days ahead; the message says which and why.
    """
    if at is not None and after is not None:
        raise ValueError("give --at or --in, not both")
    now = time.time() if now is None else now
    if after is not None:
        seconds = parse_duration(after)
        if seconds is None:
            raise ValueError(
                f"--in {after!r} is not a duration such as 90s, 15m, 2h, 1d or 1h30m"
            )
        chosen = datetime.fromtimestamp(now, UTC) + timedelta(seconds=seconds)
    elif at is not None:
        try:
            chosen = datetime.fromisoformat(at.strip())
        except ValueError:
            raise ValueError(
                f"--at {at!r} is not an ISO 8601 time such as 2026-12-24T09:00"
                " or 2026-12-24T09:00+01:00"
            ) from None
        if chosen.tzinfo is None:
            chosen = chosen.astimezone()  # the local time of this machine
    else:
        return None
    try:
        send_time(chosen, now)
    except InvalidMessageError as exc:
        raise ValueError(exc.reason) from None
    return chosen
