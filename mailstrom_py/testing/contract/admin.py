"""The contract's queue operations: find, count, kick, hold, release, drop, recent."""

from __future__ import annotations

import dataclasses

import pytest

from ...errors import MessageNotFound
from ...status import DeliveryResult
from ...storage import QueueFilter
from .common import LEASE, Backend, attempt, claim_one, email, finish, ids, mid

__all__ = [
    "DropContract",
    "FindContract",
    "HoldAndReleaseContract",
    "KickContract",
    "QueueContract",
    "RecentContract",
    "claimed",
]


class QueueContract:
    """The queue the queue-operation tests start from."""

    @pytest.fixture
    def queue(self, storage: Backend) -> Backend:
        """Five messages in every state the filters tell apart.

        m1 (t=10): a@example.test delivered, b@other.test deferred until 500.
        m2 (t=20): C@Example.TEST queued.
        m3 (t=30): d@other.test failed (completed).
        m4 (t=40): e@example.test queued, held.
        m5 (t=50): f@xn--bcher-kva.test queued.
        """
        # Each message is attempted at its due time before the next due is added.
        storage.add(email(1, ("a@example.test", "b@other.test")), now=10.0)
        attempt(
            storage,
            "m1@example.test",
            {
                "a@example.test": (DeliveryResult.DELIVERED, None),
                "b@other.test": (DeliveryResult.DEFERRED, 500.0),
            },
        )
        storage.add(email(3, ("d@other.test",)), now=30.0)
        finish(storage, "m3@example.test", "d@other.test", DeliveryResult.FAILED)
        storage.add(email(2, ("C@Example.TEST",)), now=20.0)
        storage.add(email(4, ("e@example.test",)), now=40.0)
        storage.hold(QueueFilter(ids=("m4@example.test",)))
        storage.add(email(5, ("f@xn--bcher-kva.test",)), now=50.0)
        return storage


class FindContract(QueueContract):
    """find() and count(): a QueueFilter selects messages."""

    @pytest.mark.parametrize(
        ("where", "expected"),
        [
            (QueueFilter(), [1, 2, 3, 4, 5]),
            (QueueFilter(ids=("m3@example.test", "m1@example.test")), [1, 3]),
            (QueueFilter(ids=("nope@example.test",)), []),
            (QueueFilter(results=(DeliveryResult.DELIVERED,)), [1]),
            (QueueFilter(results=(DeliveryResult.DEFERRED,)), [1]),
            (QueueFilter(results=(DeliveryResult.QUEUED,)), [2, 4, 5]),
            (
                QueueFilter(results=(DeliveryResult.FAILED, DeliveryResult.DELIVERED)),
                [1, 3],
            ),
            (QueueFilter(completed=True), [3]),
            (QueueFilter(completed=False), [1, 2, 4, 5]),
            (QueueFilter(held=True), [4]),
            (QueueFilter(held=False), [1, 2, 3, 5]),
            (QueueFilter(domain="example.test"), [1, 2, 4]),
            (QueueFilter(domain="OTHER.test"), [1, 3]),
            (QueueFilter(domain="bücher.test"), [5]),
            (QueueFilter(domain="xn--bcher-kva.test"), [5]),
            (QueueFilter(domain="nowhere.test"), []),
            (QueueFilter(recipient="c@example.test"), [2]),
            (QueueFilter(recipient="B@OTHER.TEST"), [1]),
            (QueueFilter(recipient="b@example.test"), []),
            (QueueFilter(created_before=30.0), [1, 2]),
            (QueueFilter(created_after=30.0), [3, 4, 5]),
            (QueueFilter(created_after=20.0, created_before=41.0), [2, 3, 4]),
            (QueueFilter(domain="other.test", completed=False), [1]),
            (QueueFilter(domain="example.test", held=False, completed=False), [1, 2]),
        ],
    )
    def test_filters_select_messages_oldest_first(
        self, queue: Backend, where: QueueFilter, expected: list[int]
    ) -> None:
        """find() and count() select the messages meeting every criterion set."""
        assert ids(queue.find(where)) == expected
        assert queue.count(where) == len(expected)

    def test_a_sender_filter_selects_by_envelope_sender(self, storage: Backend) -> None:
        """sender= compares the envelope sender without ASCII case; "" selects
        the null sender."""
        for n, sender in enumerate(("Ann@Example.TEST", "bob@example.test", ""), 1):
            storage.add(dataclasses.replace(email(n), mail_from=sender), now=float(n))
        assert ids(storage.find(QueueFilter(sender="ann@example.test"))) == [1]
        assert ids(storage.find(QueueFilter(sender="BOB@EXAMPLE.test"))) == [2]
        assert ids(storage.find(QueueFilter(sender=""))) == [3]
        assert storage.find(QueueFilter(sender="ann@other.test")) == []
        assert storage.count(QueueFilter(sender="bob@example.test", held=False)) == 1
        assert storage.hold(QueueFilter(sender="bob@example.test")) == [mid(2)]

    def test_found_statuses_are_the_current_ones(self, queue: Backend) -> None:
        """find() returns the same statuses status() does."""
        for found in queue.find(QueueFilter()):
            assert found == queue.status(found.message_id)

    def test_limit_keeps_the_oldest(self, queue: Backend) -> None:
        """find(limit=n) returns the n oldest of the selected messages."""
        assert ids(queue.find(QueueFilter(completed=False), limit=2)) == [1, 2]
        assert queue.find(QueueFilter(), limit=0) == []

    def test_ties_in_creation_time_keep_the_order_added(self, storage: Backend) -> None:
        """Messages created at the same moment are listed in the order they were
        added."""
        for n in (3, 1, 2):
            storage.add(email(n), now=7.0)
        assert ids(storage.find(QueueFilter())) == [3, 1, 2]

    def test_an_empty_storage_has_nothing_to_find(self, storage: Backend) -> None:
        """A filter that matches nothing is not an error."""
        assert storage.find(QueueFilter(domain="example.test")) == []
        assert storage.count(QueueFilter()) == 0


class KickContract(QueueContract):
    """kick(): pending mail is due now."""

    def test_kick_makes_deferred_mail_due_now(self, queue: Backend) -> None:
        """Kicked pending recipients are due at `now`; attempts stay as they were."""
        before = queue.status("m1@example.test")
        assert queue.kick(QueueFilter(ids=("m1@example.test",)), now=100.0) == [
            "m1@example.test"
        ]
        after = queue.status("m1@example.test")
        assert after.next_attempt_at == 100.0
        assert after.recipient("b@other.test").attempts == 1
        assert after.recipient("a@example.test") == before.recipient("a@example.test")
        assert queue.next_due() == 20.0
        assert "m1@example.test" in claimed(queue, 100.0)

    def test_kick_never_delays_and_skips_completed_mail(self, queue: Backend) -> None:
        """A message due before `now` keeps its time; completed ones are not kicked."""
        kicked = queue.kick(QueueFilter(domain="other.test"), now=600.0)
        assert kicked == ["m1@example.test"]
        assert queue.kick(QueueFilter(ids=("m2@example.test",)), now=600.0) == [
            "m2@example.test"
        ]
        assert queue.status("m2@example.test").next_attempt_at == 20.0
        assert queue.status("m3@example.test").completed

    def test_a_kicked_held_message_waits_for_its_release(self, queue: Backend) -> None:
        """Kicking a held message makes it due but not attempted until released."""
        assert queue.kick(QueueFilter(held=True), now=45.0) == ["m4@example.test"]
        assert "m4@example.test" not in claimed(queue, 1e12)
        queue.release(QueueFilter(held=True))
        assert claimed(queue, 45.0) == ["m4@example.test"]

    def test_a_message_under_a_live_claim_is_left_to_its_attempt(
        self, queue: Backend
    ) -> None:
        """Kicking a message being attempted changes nothing: it is not claimed
        twice at once."""
        claim = claim_one(queue, "m2@example.test", now=20.0)
        assert queue.kick(QueueFilter(ids=("m2@example.test",)), now=30.0) == [
            "m2@example.test"
        ]
        assert queue.status("m2@example.test") == claim.status
        assert "m2@example.test" not in claimed(queue, 30.0)

    def test_kicking_nothing_is_not_an_error(self, queue: Backend) -> None:
        """A kick that selects nothing returns an empty list."""
        assert queue.kick(QueueFilter(domain="nowhere.test"), now=1.0) == []


class HoldAndReleaseContract(QueueContract):
    """hold() and release(): held mail is never attempted."""

    def test_a_held_message_is_never_attempted(self, queue: Backend) -> None:
        """Held: not due, not claimable, and its status says so."""
        assert queue.hold(QueueFilter(ids=("m2@example.test",))) == ["m2@example.test"]
        assert queue.status("m2@example.test").held
        assert "m2@example.test" not in claimed(queue, 1e12)

    def test_release_brings_it_back_at_its_own_time(self, queue: Backend) -> None:
        """A released message is due again when it was due before the hold."""
        assert queue.release(QueueFilter(ids=("m4@example.test",))) == [
            "m4@example.test"
        ]
        assert not queue.status("m4@example.test").held
        assert claimed(queue, 40.0) == ["m2@example.test", "m4@example.test"]

    def test_hold_and_release_change_only_what_they_must(self, queue: Backend) -> None:
        """hold() skips completed and held mail; release() only held mail."""
        assert queue.hold(QueueFilter()) == [
            "m1@example.test",
            "m2@example.test",
            "m5@example.test",
        ]
        assert not queue.status("m3@example.test").held
        assert queue.release(QueueFilter(domain="other.test")) == ["m1@example.test"]
        assert queue.release(QueueFilter(domain="other.test")) == []
        assert queue.count(QueueFilter(held=True)) == 3


class DropContract(QueueContract):
    """drop(): dropped mail is gone."""

    def test_dropped_messages_are_gone(self, queue: Backend) -> None:
        """A dropped message is unknown everywhere; the others are untouched."""
        others = {
            s.message_id: s for s in queue.find(QueueFilter(domain="example.test"))
        }
        assert queue.drop(QueueFilter(domain="other.test")) == [
            "m1@example.test",
            "m3@example.test",
        ]
        for gone in ("m1@example.test", "m3@example.test"):
            with pytest.raises(MessageNotFound):
                queue.status(gone)
            with pytest.raises(MessageNotFound):
                queue.email(gone)
        assert ids(queue.find(QueueFilter())) == [2, 4, 5]
        assert queue.status("m2@example.test") == others["m2@example.test"]
        assert claimed(queue, 1e12) == ["m2@example.test", "m5@example.test"]

    def test_a_dropped_id_can_be_added_again(self, queue: Backend) -> None:
        """Dropping frees the id."""
        queue.drop(QueueFilter(ids=("m2@example.test",)))
        assert queue.add(email(2), now=60.0).created_at == 60.0

    def test_dropping_nothing_is_not_an_error(self, queue: Backend) -> None:
        """A drop that selects nothing removes nothing."""
        assert queue.drop(QueueFilter(recipient="nobody@example.test")) == []
        assert queue.count(QueueFilter()) == 5


class RecentContract(QueueContract):
    """recent(): each completed message once, every pending one always."""

    def test_completed_mail_is_reported_once_and_pending_mail_always(
        self, queue: Backend
    ) -> None:
        """recent(): completed messages not yet reported, then every incomplete one."""
        assert ids(queue.recent()) == [3, 1, 2, 4, 5]
        assert ids(queue.recent()) == [1, 2, 4, 5]
        finish(queue, "m2@example.test", "C@Example.TEST", DeliveryResult.DELIVERED)
        assert ids(queue.recent()) == [2, 1, 4, 5]
        assert ids(queue.recent()) == [1, 4, 5]

    def test_reported_statuses_are_current(self, queue: Backend) -> None:
        """The statuses recent() returns equal those status() returns."""
        for status in queue.recent():
            assert status == queue.status(status.message_id)

    def test_a_limit_leaves_the_rest_for_later_calls(self, storage: Backend) -> None:
        """Completed messages left out by the limit come in a later call, once each."""
        for n in range(1, 5):
            storage.add(email(n, ("a@example.test",)), now=float(n))
            if n != 4:
                finish(
                    storage,
                    f"m{n}@example.test",
                    "a@example.test",
                    DeliveryResult.FAILED,
                )
        assert ids(storage.recent(limit=2)) == [1, 2]
        assert ids(storage.recent(limit=2)) == [3, 4]
        assert ids(storage.recent(limit=2)) == [4]

    def test_dropped_mail_is_not_reported(self, queue: Backend) -> None:
        """A message dropped before it was reported never appears."""
        queue.drop(QueueFilter(completed=True))
        assert ids(queue.recent()) == [1, 2, 4, 5]


def claimed(storage: Backend, now: float) -> list[str]:
    """Claim every message due at ``now``; return their ids."""
    return [c.message_id for c in storage.claim_due(now, 100, LEASE)]
