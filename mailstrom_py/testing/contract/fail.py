"""The contract for fail(): an operator fails pending mail now."""

from __future__ import annotations

from ...codes import OTHER_SYSTEM_PERMANENT
from ...status import DeliveryResult
from ...storage import QueueFilter
from .admin import QueueContract, claimed
from .common import Backend, claim_one, ids, mid, outcome

__all__ = ["FailContract"]


class FailContract(QueueContract):
    """fail(): every pending recipient fails, with the operator's code."""

    def test_pending_recipients_fail_and_the_rest_stay(self, queue: Backend) -> None:
        """A failed recipient is FAILED with 5.3.0 and "failed by an operator",
        due never; its attempts stay; a delivered one stays delivered."""
        before = queue.status(mid(1))
        failed = queue.fail(QueueFilter(ids=(mid(1),)), now=600.0)
        assert [s.message_id for s in failed] == [mid(1)]
        after = queue.status(mid(1))
        assert failed[0] == after
        assert after.completed
        b = after.recipient("b@other.test")
        assert b.result is DeliveryResult.FAILED
        assert b.status_code == OTHER_SYSTEM_PERMANENT
        assert b.detail == "failed by an operator"
        assert b.next_attempt_at is None
        assert b.attempts == 1
        assert after.recipient("a@example.test") == before.recipient("a@example.test")

    def test_failed_mail_is_never_attempted_and_is_reported(
        self, queue: Backend
    ) -> None:
        """Failed messages are complete: not due, counted as completed, and
        reported once by recent()."""
        queue.recent()
        failed = queue.fail(QueueFilter(domain="example.test"), now=600.0)
        assert [s.message_id for s in failed] == [mid(1), mid(2), mid(4)]
        assert claimed(queue, 1e12) == [mid(5)]
        assert ids(queue.find(QueueFilter(completed=True))) == [1, 2, 3, 4]
        assert ids(queue.recent()) == [1, 2, 4, 5]
        assert ids(queue.recent()) == [5]

    def test_completed_mail_is_left_alone(self, queue: Backend) -> None:
        """fail() changes and returns only messages with pending recipients."""
        before = queue.status(mid(3))
        assert queue.fail(QueueFilter(ids=(mid(3),)), now=600.0) == []
        assert queue.status(mid(3)) == before
        assert queue.fail(QueueFilter(domain="nowhere.test"), now=600.0) == []

    def test_an_attempt_under_way_is_not_recorded(self, queue: Backend) -> None:
        """The claim ends as with drop(): the attempt's outcome is refused."""
        claim = claim_one(queue, mid(2), now=20.0)
        [failed] = queue.fail(QueueFilter(ids=(mid(2),)), now=30.0)
        late = outcome(claim.status, "C@Example.TEST", DeliveryResult.DEFERRED, 99.0)
        assert queue.record(claim, [late]) is None
        assert queue.status(mid(2)) == failed
