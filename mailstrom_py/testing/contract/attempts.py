"""The contract for attempts: claiming due messages and recording their outcomes."""

from __future__ import annotations

import dataclasses
import threading

import pytest

from ...errors import MessageNotFound
from ...status import DeliveryResult, MessageStatus
from ...storage import Claim, QueueFilter
from .common import Backend, email, finish, ids, mid, outcome, renamed

__all__ = [
    "AttemptsContract",
    "ClaimContract",
    "DueContract",
    "RecordContract",
    "RecordManyContract",
]


class AttemptsContract:
    """begin_attempt(): an attempt is recorded before it is made, once."""

    def test_begin_attempt_records_the_attempt_first(self, storage: Backend) -> None:
        """Claiming a due message counts the attempt and pushes the next one forward."""
        storage.add(email(), now=0.0)
        claimed = storage.begin_attempt("m1@example.test", now=10.0, retry_at=310.0)
        assert claimed is not None
        assert all(r.attempts == 1 for r in claimed.recipients)
        assert all(r.last_attempt_at == 10.0 for r in claimed.recipients)
        assert claimed.next_attempt_at == 310.0
        assert storage.status("m1@example.test") == claimed

    def test_a_message_not_yet_due_is_not_claimed(self, storage: Backend) -> None:
        """begin_attempt() before the due time returns None and changes nothing."""
        storage.add(email(), now=0.0)
        storage.begin_attempt("m1@example.test", now=0.0, retry_at=300.0)
        before = storage.status("m1@example.test")
        assert (
            storage.begin_attempt("m1@example.test", now=299.0, retry_at=600.0) is None
        )
        assert storage.status("m1@example.test") == before

    def test_unknown_or_complete_messages_are_not_claimed(
        self, storage: Backend
    ) -> None:
        """Nothing to claim for an unknown id or a message with no pending recipient."""
        assert storage.begin_attempt("nope@example.test", now=0.0, retry_at=1.0) is None
        storage.add(email(recipients=("a@example.test",)), now=0.0)
        claimed = storage.begin_attempt("m1@example.test", now=0.0, retry_at=1.0)
        assert claimed is not None
        done = dataclasses.replace(
            claimed.recipients[0], result=DeliveryResult.DELIVERED, next_attempt_at=None
        )
        storage.record("m1@example.test", [done])
        assert storage.begin_attempt("m1@example.test", now=5.0, retry_at=6.0) is None

    def test_only_one_of_many_racing_claims_wins(self, storage: Backend) -> None:
        """Concurrent begin_attempt() calls on one due message claim it exactly once."""
        storage.add(email(), now=0.0)
        results: list[object] = []
        barrier = threading.Barrier(8)

        def claim() -> None:
            barrier.wait()
            results.append(
                storage.begin_attempt("m1@example.test", now=1.0, retry_at=100.0)
            )

        threads = [threading.Thread(target=claim) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sum(r is not None for r in results) == 1


class ClaimContract:
    """claim(): begin_attempt() and email() for a batch of messages."""

    def test_a_claim_is_begin_attempt_and_email(self, storage: Backend) -> None:
        """claim() leaves a message as begin_attempt() does, and returns the status
        as found, as claimed, and the message itself."""
        # Given two twin messages, one recipient delivered and one deferred
        for n in (1, 2):
            added = storage.add(email(n), now=0.0)
            storage.record(
                mid(n),
                [
                    outcome(added, "a@example.test", DeliveryResult.DELIVERED, None),
                    outcome(added, "b@example.test", DeliveryResult.DEFERRED, 50.0),
                ],
            )
        before = storage.status(mid(2))
        # When one is claimed with begin_attempt() and the other with claim()
        begun = storage.begin_attempt(mid(1), now=60.0, retry_at=360.0)
        [claim] = storage.claim([mid(2)], now=60.0, retry_at=lambda _: 360.0)
        # Then both end up alike
        assert begun is not None
        assert claim == Claim(before, renamed(begun, 2), email(2))
        assert storage.status(mid(2)) == claim.status
        assert storage.email(mid(2)) == claim.email

    def test_what_begin_attempt_skips_is_left_out_in_order(
        self, storage: Backend
    ) -> None:
        """Unknown, held, completed, not yet due and repeated ids are left out and
        left alone; the claimed messages come in the order asked for."""
        for n in range(1, 7):
            storage.add(email(n, ("a@example.test",)), now=0.0)
        storage.hold(QueueFilter(ids=(mid(2),)))
        finish(storage, mid(3), "a@example.test", DeliveryResult.FAILED)
        finish(storage, mid(4), "a@example.test", DeliveryResult.DEFERRED, 99.0)
        untouched = storage.find(QueueFilter(ids=(mid(2), mid(3), mid(4))))

        asked = [mid(6), "nope@example.test", mid(2), mid(1), mid(3), mid(4), mid(6)]
        claims = storage.claim(asked, now=10.0, retry_at=lambda _: 10.0)

        assert [c.status.message_id for c in claims] == [mid(6), mid(1)]
        assert [c.status.attempts for c in claims] == [1, 1]
        assert storage.find(QueueFilter(ids=(mid(2), mid(3), mid(4)))) == untouched
        assert storage.claim([], now=10.0, retry_at=lambda _: 10.0) == []

    def test_retry_at_gets_each_status_as_found(self, storage: Backend) -> None:
        """retry_at() is called once per claimed message, with its status before the
        claim, and its answer is that message's retry time."""
        for n in range(1, 4):
            storage.add(email(n), now=float(n))
        storage.hold(QueueFilter(ids=(mid(2),)))
        found = storage.find(QueueFilter(ids=(mid(1), mid(3))))
        seen: list[MessageStatus] = []

        def retry_at(status: MessageStatus) -> float:
            seen.append(status)
            return 1000.0 + status.created_at

        claims = storage.claim([mid(3), mid(2), mid(1)], now=5.0, retry_at=retry_at)

        assert seen == [found[1], found[0]]
        assert [c.before for c in claims] == seen
        assert [c.status.next_attempt_at for c in claims] == [1003.0, 1001.0]
        assert storage.due(until=1e12, limit=10) == [
            (1001.0, mid(1)),
            (1003.0, mid(3)),
        ]

    def test_an_error_in_retry_at_propagates(self, storage: Backend) -> None:
        """An exception from retry_at() propagates out of claim()."""
        storage.add(email(), now=0.0)

        def retry_at(status: MessageStatus) -> float:
            raise ZeroDivisionError

        with pytest.raises(ZeroDivisionError):
            storage.claim([mid(1)], now=1.0, retry_at=retry_at)

    def test_racing_claims_take_each_message_once(self, storage: Backend) -> None:
        """Concurrent claim() calls on overlapping batches claim every message
        exactly once."""
        storage.add_many([email(n) for n in range(20)], now=0.0)
        claims: list[Claim] = []
        barrier = threading.Barrier(4)

        def claim(k: int) -> None:
            batch = [mid(n) for n in range(20)][k::2] + [mid(n) for n in range(20)]
            barrier.wait()
            claims.extend(storage.claim(batch, now=1.0, retry_at=lambda _: 100.0))

        threads = [threading.Thread(target=claim, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(c.status.message_id for c in claims) == sorted(
            mid(n) for n in range(20)
        )


class RecordManyContract:
    """record_many(): record() for a batch of messages."""

    def test_record_many_is_record_in_turn(self, storage: Backend) -> None:
        """record_many() leaves each message as record() calls in the same order do,
        a repeated id included, and returns the status after each."""
        for n in range(1, 5):
            storage.add(email(n), now=0.0)
        added = storage.status(mid(1))
        first = [outcome(added, "a@example.test", DeliveryResult.DELIVERED, None)]
        second = [
            outcome(added, "a@example.test", DeliveryResult.DEFERRED, 70.0),
            outcome(added, "b@example.test", DeliveryResult.FAILED, None),
            dataclasses.replace(added.recipients[0], address="x@example.test"),
        ]
        expected = [
            storage.record(mid(1), first),
            storage.record(mid(2), second),
            storage.record(mid(1), second),
        ]

        recorded = storage.record_many(
            [(mid(3), first), (mid(4), second), (mid(3), second)]
        )

        assert recorded == [
            renamed(expected[0], 3),
            renamed(expected[1], 4),
            renamed(expected[2], 3),
        ]
        assert storage.status(mid(3)) == recorded[2]
        assert storage.status(mid(4)) == recorded[1]
        assert storage.due(until=1e12, limit=10) == [(70.0, mid(2)), (70.0, mid(4))]
        assert ids(storage.find(QueueFilter(completed=True))) == [1, 3]

    def test_an_unknown_id_gives_none_and_the_rest_is_recorded(
        self, storage: Backend
    ) -> None:
        """A message dropped during its attempt yields None; the others are still
        recorded."""
        for n in range(1, 4):
            storage.add(email(n, ("a@example.test",)), now=0.0)
        storage.drop(QueueFilter(ids=(mid(2),)))
        done = [
            outcome(
                storage.status(mid(1)), "a@example.test", DeliveryResult.FAILED, None
            )
        ]

        recorded = storage.record_many([(mid(n), done) for n in range(1, 4)])

        assert recorded[1] is None
        assert [storage.status(mid(n)) for n in (1, 3)] == [recorded[0], recorded[2]]
        assert all(s is not None and s.completed for s in (recorded[0], recorded[2]))
        assert storage.record_many([]) == []


class RecordContract:
    """record(): outcomes replace statuses, never a delivered one."""

    def test_record_updates_only_the_named_recipients(self, storage: Backend) -> None:
        """record() replaces the statuses it is given and leaves the others alone."""
        status = storage.add(email(), now=0.0)
        a = dataclasses.replace(
            status.recipients[0],
            result=DeliveryResult.FAILED,
            status_code="5.1.1",
            next_attempt_at=None,
        )
        after = storage.record("m1@example.test", [a])
        assert after.recipient("a@example.test").result is DeliveryResult.FAILED
        assert after.recipient("b@example.test") == status.recipients[1]
        assert storage.status("m1@example.test") == after

    def test_a_delivered_recipient_is_never_overwritten(self, storage: Backend) -> None:
        """Once DELIVERED, a recipient stays DELIVERED whatever is recorded later."""
        status = storage.add(email(), now=0.0)
        delivered = dataclasses.replace(
            status.recipients[0], result=DeliveryResult.DELIVERED, next_attempt_at=None
        )
        storage.record("m1@example.test", [delivered])
        deferred = dataclasses.replace(
            status.recipients[0], result=DeliveryResult.DEFERRED
        )
        after = storage.record("m1@example.test", [deferred])
        assert after.recipient("a@example.test").result is DeliveryResult.DELIVERED

    def test_unknown_addresses_are_ignored(self, storage: Backend) -> None:
        """An update for an address that is not a recipient changes nothing."""
        status = storage.add(email(), now=0.0)
        stranger = dataclasses.replace(status.recipients[0], address="x@example.test")
        assert storage.record("m1@example.test", [stranger]) == status

    def test_record_on_unknown_id_raises(self, storage: Backend) -> None:
        """record() for an id never stored raises MessageNotFound."""
        status = storage.add(email(), now=0.0)
        with pytest.raises(MessageNotFound):
            storage.record("nope@example.test", list(status.recipients))


class DueContract:
    """due(): what is due, earliest first."""

    def test_due_lists_earliest_first_within_the_limit(self, storage: Backend) -> None:
        """due() returns (time, id) pairs up to `until`, earliest first, at most
        `limit`."""
        for n, at in [(1, 30.0), (2, 10.0), (3, 20.0), (4, 99.0)]:
            storage.add(email(n), now=at)
        assert storage.due(until=50.0, limit=10) == [
            (10.0, "m2@example.test"),
            (20.0, "m3@example.test"),
            (30.0, "m1@example.test"),
        ]
        assert storage.due(until=50.0, limit=1) == [(10.0, "m2@example.test")]

    def test_completed_messages_are_never_due(self, storage: Backend) -> None:
        """A message whose recipients are all final drops out of due()."""
        status = storage.add(email(recipients=("a@example.test",)), now=0.0)
        storage.record(
            "m1@example.test",
            [
                dataclasses.replace(
                    status.recipients[0],
                    result=DeliveryResult.FAILED,
                    next_attempt_at=None,
                )
            ],
        )
        assert storage.due(until=1e12, limit=10) == []

    def test_a_claimed_message_is_due_again_at_its_retry_time(
        self, storage: Backend
    ) -> None:
        """After begin_attempt(), the message is due at retry_at (crash recovery)."""
        storage.add(email(), now=0.0)
        storage.begin_attempt("m1@example.test", now=0.0, retry_at=300.0)
        assert storage.due(until=299.0, limit=10) == []
        assert storage.due(until=300.0, limit=10) == [(300.0, "m1@example.test")]
