"""The contract for scheduled mail: adding it due later, and schedule()."""

from __future__ import annotations

import pytest

from ...status import DeliveryResult
from ...storage import QueueFilter
from .admin import QueueContract, claimed
from .common import Backend, claim_one, email, finish, mid, outcome

__all__ = ["ScheduleContract", "ScheduledAddContract"]


class ScheduledAddContract:
    """add(send_at=...) and add_many(send_at=...): due at that time, not before."""

    def test_a_scheduled_message_is_due_at_its_time(self, storage: Backend) -> None:
        """Every recipient is queued and due at send_at; it is not claimed before
        then, and is claimed when it comes."""
        status = storage.add(email(), now=100.0, send_at=5000.0)
        assert status.created_at == 100.0
        assert all(
            r.result is DeliveryResult.QUEUED and r.next_attempt_at == 5000.0
            for r in status.recipients
        )
        assert storage.status(mid(1)) == status
        assert storage.next_due() == 5000.0
        assert claimed(storage, 4999.0) == []
        assert claimed(storage, 5000.0) == [mid(1)]

    def test_scheduled_mail_waits_behind_mail_due_now(self, storage: Backend) -> None:
        """A message added later but due now goes first."""
        storage.add(email(1), now=10.0, send_at=900.0)
        storage.add(email(2), now=20.0)
        assert storage.next_due() == 20.0
        assert claimed(storage, 500.0) == [mid(2)]
        assert claimed(storage, 550.0) == []
        assert mid(1) in claimed(storage, 900.0)

    def test_a_batch_shares_its_time(self, storage: Backend) -> None:
        """add_many(send_at=...) schedules every message of the batch."""
        statuses = storage.add_many([email(1), email(2)], now=1.0, send_at=60.0)
        assert [s.next_attempt_at for s in statuses] == [60.0, 60.0]
        assert [s.created_at for s in statuses] == [1.0, 1.0]
        assert claimed(storage, 59.0) == []
        assert claimed(storage, 60.0) == [mid(1), mid(2)]

    def test_a_message_is_first_due_at_its_time(self, storage: Backend) -> None:
        """A scheduled message is first due at send_at, an unscheduled one
        when it was added (``first_due_at`` None means that too); retries
        count from then (``retry_since``), as stored."""
        scheduled = storage.add(email(1), now=100.0, send_at=5000.0)
        now = storage.add(email(2), now=200.0)
        batch = storage.add_many([email(3)], now=300.0, send_at=900.0)
        assert scheduled.first_due_at == 5000.0
        assert now.first_due_at in (200.0, None)
        assert batch[0].first_due_at == 900.0
        assert [storage.status(mid(n)).retry_since for n in (1, 2, 3)] == [
            5000.0,
            200.0,
            900.0,
        ]

    def test_first_due_stays_through_an_attempt(self, storage: Backend) -> None:
        """Claiming and recording an outcome keep the first due time."""
        storage.add(email(1), now=100.0, send_at=5000.0)
        claim = claim_one(storage, mid(1), now=5000.0)
        assert claim.status.first_due_at == 5000.0
        deferred = outcome(
            claim.status, "a@example.test", DeliveryResult.DEFERRED, 6000.0
        )
        after = storage.record(claim, [deferred])
        assert after is not None
        assert after.first_due_at == 5000.0
        assert storage.status(mid(1)).retry_since == 5000.0


class ScheduleContract(QueueContract):
    """schedule(): pending mail is next due at the time given, sooner or later."""

    def test_schedule_delays_and_hastens(self, queue: Backend) -> None:
        """Pending recipients are due at `at`; attempts stay; completed recipients
        and messages are untouched."""
        before = queue.status(mid(1))
        assert queue.schedule(QueueFilter(ids=(mid(1), mid(2))), 7000.0, 60.0) == [
            mid(1),
            mid(2),
        ]
        after = queue.status(mid(1))
        assert after.recipient("b@other.test").next_attempt_at == 7000.0
        assert after.recipient("b@other.test").attempts == 1
        assert after.recipient("a@example.test") == before.recipient("a@example.test")
        assert queue.status(mid(2)).next_attempt_at == 7000.0
        assert mid(2) not in claimed(queue, 6999.0)
        assert queue.schedule(QueueFilter(ids=(mid(1),)), 70.0, 60.0) == [mid(1)]
        assert queue.next_due() == 70.0
        assert claimed(queue, 70.0) == [mid(1)]

    def test_an_unattempted_message_is_first_due_when_rescheduled(
        self, queue: Backend
    ) -> None:
        """schedule() moves the first due time of a message none of whose
        recipients was attempted, sooner or later, but not that of one
        attempted before: its retries count from when it was first due."""
        assert queue.schedule(QueueFilter(ids=(mid(1), mid(2))), 7000.0, 60.0) == [
            mid(1),
            mid(2),
        ]
        assert queue.status(mid(2)).first_due_at == 7000.0
        assert queue.status(mid(2)).retry_since == 7000.0
        assert queue.status(mid(1)).retry_since == 10.0
        assert queue.schedule(QueueFilter(ids=(mid(2),)), 3000.0, 60.0) == [mid(2)]
        assert queue.status(mid(2)).retry_since == 3000.0

    def test_completed_mail_is_not_scheduled(self, queue: Backend) -> None:
        """A message whose recipients are all delivered or failed is left alone."""
        before = queue.status(mid(3))
        assert queue.schedule(QueueFilter(ids=(mid(3),)), 100.0, 60.0) == []
        assert queue.status(mid(3)) == before

    def test_a_held_message_stays_held(self, queue: Backend) -> None:
        """Scheduling a held message sets its time; it waits for its release."""
        assert queue.schedule(QueueFilter(held=True), 100.0, 60.0) == [mid(4)]
        assert queue.status(mid(4)).held
        assert queue.status(mid(4)).next_attempt_at == 100.0
        assert claimed(queue, 200.0) == [mid(2), mid(5)]
        queue.release(QueueFilter(held=True))
        assert claimed(queue, 99.0) == []
        assert claimed(queue, 100.0) == [mid(4)]

    def test_a_message_under_a_live_claim_is_left_to_its_attempt(
        self, queue: Backend
    ) -> None:
        """Scheduling a message being attempted changes nothing."""
        claim = claim_one(queue, mid(2), now=20.0)
        assert queue.schedule(QueueFilter(ids=(mid(2),)), 9000.0, 30.0) == []
        assert queue.status(mid(2)) == claim.status

    @pytest.mark.parametrize("at", [0.0, 1e9])
    def test_scheduling_nothing_is_not_an_error(
        self, queue: Backend, at: float
    ) -> None:
        """A schedule that selects nothing changes nothing."""
        assert queue.schedule(QueueFilter(domain="nowhere.test"), at, 1.0) == []
        finish(queue, mid(2), "C@Example.TEST", DeliveryResult.DELIVERED)
        assert queue.schedule(QueueFilter(ids=(mid(2),)), at, 1.0) == []
