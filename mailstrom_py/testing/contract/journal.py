"""The contract for the event journal, for backends that keep one
(:class:`~mailstrom_py.storage.EventJournal`); others skip it."""

from __future__ import annotations

import pytest

from ...errors import DuplicateMessageError
from ...status import DeliveryResult
from ...storage.journal import EventJournal
from .common import LEASE, Backend, email, mid, outcome

__all__ = ["JournalContract"]


def _journal(storage: Backend) -> EventJournal:
    if not isinstance(storage, EventJournal):
        pytest.skip("the backend keeps no event journal")
    return storage


class JournalContract:
    """add_journaled(), record_journaled(), take_events(), ack_events()."""

    def test_events_are_written_with_the_messages_and_taken_in_order(
        self, storage: Backend
    ) -> None:
        """Events added with messages come back oldest first, until acknowledged;
        the messages are stored as add_many() stores them."""
        journal = _journal(storage)
        journal.add_journaled([email(1), email(2)], 10.0, ["e1", "e2"])
        journal.add_journaled([email(3)], 11.0, ["e3"])
        assert storage.status(mid(2)).created_at == 10.0
        taken = journal.take_events(2)
        assert [e.payload for e in taken] == ["e1", "e2"]
        assert taken[0].id < taken[1].id
        assert [e.payload for e in journal.take_events(10)] == ["e1", "e2", "e3"]
        journal.ack_events([taken[0].id, 987654])
        assert [e.payload for e in journal.take_events(10)] == ["e2", "e3"]
        journal.ack_events([e.id for e in journal.take_events(10)])
        assert journal.take_events(10) == []

    def test_a_refused_add_writes_no_event(self, storage: Backend) -> None:
        """A duplicate id refuses the whole add, events included."""
        journal = _journal(storage)
        storage.add(email(1), 10.0)
        with pytest.raises(DuplicateMessageError):
            journal.add_journaled([email(2), email(1)], 11.0, ["lost"])
        assert journal.take_events(10) == []

    def test_events_are_written_only_for_outcomes_recorded(
        self, storage: Backend
    ) -> None:
        """record_journaled() writes each record's events only when its outcome
        is recorded: a refused claim leaves none."""
        journal = _journal(storage)
        storage.add_many([email(1), email(2)], 10.0)
        first, second = storage.claim_due(10.0, 2, LEASE)
        done = [outcome(first.status, "a@example.test", DeliveryResult.DELIVERED, None)]
        recorded = journal.record_journaled(
            [(first, done), (first, done), (second, [])],
            [["d1"], ["again"], ["s1", "s2"]],
        )
        assert recorded[0] is not None
        assert recorded[1] is None
        assert recorded[2] is not None
        assert [e.payload for e in journal.take_events(10)] == ["d1", "s1", "s2"]
        with pytest.raises(ValueError, match="one list of events per record"):
            journal.record_journaled([(second, [])], [])
