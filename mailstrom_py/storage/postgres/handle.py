"""What the parts of :class:`~mailstrom_py.storage.postgres.PostgresStorage`
share: its database, whose clock decides, and where new work is announced."""

from __future__ import annotations

from typing import Literal

from .db import Database
from .notify import Notifier
from .settings import Offset

__all__ = ["ClockSource", "PostgresHandle"]

#: Whose clock decides what is due: the database's, or the callers' ``now``.
ClockSource = Literal["database", "caller"]


class PostgresHandle:
    """The attributes the storage sets in its constructor, which its mixins
    (queue operations, journal, retention) use; and the time their statements
    use."""

    _db: Database
    _clock: ClockSource
    _offset: Offset
    _channel: str
    _notifier: Notifier

    def _now(self, now: float) -> float | None:
        """The time a statement uses: ``now``, or None for the database's."""
        return float(now) if self._clock == "caller" else None
