"""The queue operations of :class:`~mailstrom_py.storage.postgres.PostgresStorage`:
listing, counting and changing the messages a filter selects."""

from __future__ import annotations

from ...status import MessageStatus
from ..admin import QueueAdmin
from ..query import QueueFilter
from . import admin
from .handle import PostgresHandle

__all__ = ["PostgresQueueAdmin"]


class PostgresQueueAdmin(PostgresHandle, QueueAdmin):
    """:class:`~mailstrom_py.storage.admin.QueueAdmin` on the storage's
    database; each call is one transaction. Changes that make mail due notify
    the storage's channel when they commit.

    The calls that select by a filter run with the planner's own choices
    (:meth:`Database.survey`): over a large queue, a count of the pending mail
    or a filter by sender is best served by reading a table whole, or by a
    plan made for the values given. ``fail`` and ``recent`` keep the session's
    plans: beyond the selection, their work is reading and changing the
    messages found, and their recipients, by key, where the planner's own
    choices read the whole table of recipients to hash it (on a queue of
    50,000 messages both calls were as fast or faster so, up to 1.4 times)."""

    def find(self, where: QueueFilter, limit: int | None = None) -> list[MessageStatus]:
        return self._db.survey(
            "list messages", lambda conn: admin.find(conn, where, limit)
        )

    def count(self, where: QueueFilter) -> int:
        return self._db.survey("count messages", lambda conn: admin.count(conn, where))

    def kick(self, where: QueueFilter, now: float) -> list[str]:
        at = self._now(now)
        return self._db.survey(
            "kick messages", lambda conn: admin.kick(conn, where, at, self._channel)
        )

    def hold(self, where: QueueFilter) -> list[str]:
        return self._db.survey("hold messages", lambda conn: admin.hold(conn, where))

    def release(self, where: QueueFilter) -> list[str]:
        return self._db.survey(
            "release messages",
            lambda conn: admin.release(conn, where, self._channel),
        )

    def schedule(self, where: QueueFilter, at: float, now: float) -> list[str]:
        """See :meth:`QueueAdmin.schedule`. ``at`` is stored as given; with the
        database's clock, whether a claim lasts is judged by the database's."""
        when, clock = float(at), self._now(now)
        return self._db.survey(
            "schedule messages",
            lambda conn: admin.schedule(conn, where, when, clock, self._channel),
        )

    def fail(self, where: QueueFilter, now: float) -> list[MessageStatus]:
        """See :meth:`QueueAdmin.fail`; with the database's clock, the messages
        complete at the database's time."""
        at = self._now(now)
        return self._db.write("fail messages", lambda conn: admin.fail(conn, where, at))

    def drop(self, where: QueueFilter) -> list[str]:
        return self._db.survey("drop messages", lambda conn: admin.drop(conn, where))

    def recent(self, limit: int | None = None) -> list[MessageStatus]:
        return self._db.write(
            "report recent outcomes", lambda conn: admin.recent(conn, limit)
        )
