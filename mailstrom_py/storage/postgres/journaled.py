"""The event journal of :class:`~mailstrom_py.storage.postgres.PostgresStorage`:
messages added and attempts recorded in the same transaction as their events."""

from __future__ import annotations

from collections.abc import Sequence

from ...message import PreparedEmail
from ...status import MessageStatus, RecipientStatus
from ..base import Claim, check_distinct
from ..journal import EventJournal, JournalEntry, check_journal
from . import journal, messages, outcomes
from .db import Connection
from .handle import PostgresHandle

__all__ = ["PostgresJournal"]


class PostgresJournal(PostgresHandle, EventJournal):
    """:class:`~mailstrom_py.storage.journal.EventJournal` on the storage's
    database; each call is one transaction."""

    def add_journaled(
        self,
        emails: Sequence[PreparedEmail],
        now: float,
        events: Sequence[str],
        *,
        send_at: float | None = None,
    ) -> list[MessageStatus]:
        check_distinct(emails)
        if not emails:
            self._db.write("write events", lambda conn: journal.write(conn, events))
            return []
        at = self._now(now)
        due = None if send_at is None else float(send_at)

        def add(conn: Connection) -> list[MessageStatus]:
            added = messages.add_many(conn, emails, at, due)
            journal.write(conn, events)
            return added

        added = self._db.write("add messages", add)
        self._notifier.notify()
        self._offset.learn(now, added[0].created_at)
        return added

    def record_journaled(
        self,
        records: Sequence[tuple[Claim, Sequence[RecipientStatus]]],
        events: Sequence[Sequence[str]],
    ) -> list[MessageStatus | None]:
        check_journal(records, events)
        if not records:
            return []
        database_clock = self._clock == "database"

        def record(conn: Connection) -> list[MessageStatus | None]:
            recorded = outcomes.record(conn, records, database_clock=database_clock)
            for status, written in zip(recorded, events, strict=True):
                if status is not None:
                    journal.write(conn, written)
            return recorded

        return self._db.write("record attempts", record)

    def take_events(self, limit: int) -> list[JournalEntry]:
        return self._db.read(
            "read the event journal", lambda conn: journal.take(conn, limit)
        )

    def ack_events(self, ids: Sequence[int]) -> None:
        if ids:
            self._db.write("acknowledge events", lambda conn: journal.ack(conn, ids))
