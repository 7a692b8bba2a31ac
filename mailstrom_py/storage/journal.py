"""The event journal: events written in the same atomic step as the outcomes
they describe, kept until a consumer (a webhook sender) has handed them on.

A storage that implements :class:`EventJournal` lets a webhook deliver every
event at least once, across restarts: an outcome is never recorded without
its events, and an event leaves the journal only when acknowledged. Events are
opaque text here (JSON, as :class:`~mailstrom_py.event.Event` writes it).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from ..message import PreparedEmail
from ..status import MessageStatus, RecipientStatus
from .base import Claim

__all__ = ["EventJournal", "JournalEntry", "check_journal"]


@dataclass(frozen=True)
class JournalEntry:
    """One event in the journal.

    Attributes:
        id: its place in the journal: ids grow in the order events were written.
        payload: the event, as written.
    """

    id: int
    payload: str


class EventJournal(ABC):
    """**Interface** of a storage that keeps an event journal.

    Contract: the two writes are :meth:`~mailstrom_py.Storage.add_many` and
    :meth:`~mailstrom_py.Storage.record_many` with events, in the same atomic
    step (one transaction); the journal keeps events in the order written,
    each until :meth:`ack_events` names it. The journal is shared, like the
    queue, by every process using the storage.
    """

    @abstractmethod
    def add_journaled(
        self,
        emails: Sequence[PreparedEmail],
        now: float,
        events: Sequence[str],
        *,
        send_at: float | None = None,
    ) -> list[MessageStatus]:
        """:meth:`~mailstrom_py.Storage.add_many`, and write ``events`` to the
        journal in the same atomic step: both or neither."""

    @abstractmethod
    def record_journaled(
        self,
        records: Sequence[tuple[Claim, Sequence[RecipientStatus]]],
        events: Sequence[Sequence[str]],
    ) -> list[MessageStatus | None]:
        """:meth:`~mailstrom_py.Storage.record_many`, and in the same atomic
        step write ``events[i]`` to the journal for each record ``i`` that was
        not refused.

        Raises:
            ValueError: ``events`` and ``records`` differ in length.
        """

    @abstractmethod
    def take_events(self, limit: int) -> list[JournalEntry]:
        """Return up to ``limit`` of the oldest events not acknowledged, oldest
        first, leaving them in the journal."""

    @abstractmethod
    def ack_events(self, ids: Sequence[int]) -> None:
        """Remove the events ``ids`` name from the journal; unknown ids are
        ignored."""


def check_journal(records: Sequence[object], events: Sequence[object]) -> None:
    """Raise ``ValueError`` unless there is one list of events per record."""
    if len(records) != len(events):
        raise ValueError(
            f"one list of events per record: {len(records)} records,"
            f" {len(events)} lists"
        )
