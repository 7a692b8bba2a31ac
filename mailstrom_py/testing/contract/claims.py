"""The contract of attempts: claiming due messages, and recording their outcomes
under the claims."""

from __future__ import annotations

import dataclasses
import threading

import pytest

from ...status import DeliveryResult, Remote, SmtpReply, SmtpStep
from ...storage import Claim, QueueFilter
from .common import (
    LEASE,
    Backend,
    claim_one,
    email,
    finish,
    ids,
    mid,
    outcome,
    renamed,
)

__all__ = ["ClaimDueContract", "NextDueContract", "RecordContract"]


class ClaimDueContract:
    """claim_due(): the messages due first, each under a claim of its own."""

    def test_a_claim_counts_the_attempt_and_holds_the_message_for_the_lease(
        self, storage: Backend
    ) -> None:
        """A claimed message counts an attempt begun now, comes with its status as
        found and its content, and is due again only when the lease ends."""
        added = storage.add(email(), now=0.0)
        [claim] = storage.claim_due(now=10.0, limit=5, lease=LEASE)
        assert (claim.message_id, claim.before, claim.email) == (mid(1), added, email())
        assert [(r.attempts, r.last_attempt_at) for r in claim.status.recipients] == [
            (1, 10.0),
            (1, 10.0),
        ]
        assert claim.status.next_attempt_at == 10.0 + LEASE
        assert storage.status(mid(1)) == claim.status
        assert isinstance(claim.token, str)
        assert claim.token
        assert storage.claim_due(now=10.0 + LEASE - 1, limit=5, lease=LEASE) == []

    def test_at_most_limit_are_claimed_earliest_due_first(
        self, storage: Backend
    ) -> None:
        """Up to `limit` messages, earliest due first, ties in the order added."""
        for n, at in [(1, 30.0), (2, 10.0), (3, 20.0), (4, 10.0), (5, 99.0)]:
            storage.add(email(n), now=at)
        first = storage.claim_due(now=50.0, limit=3, lease=LEASE)
        assert [c.message_id for c in first] == [mid(2), mid(4), mid(3)]
        assert storage.claim_due(now=50.0, limit=0, lease=LEASE) == []
        rest = storage.claim_due(now=50.0, limit=3, lease=LEASE)
        assert [c.message_id for c in rest] == [mid(1)]

    def test_held_complete_and_future_messages_are_not_claimed(
        self, storage: Backend
    ) -> None:
        """Held, completed and not yet due messages are left alone."""
        for n in range(1, 5):
            storage.add(email(n, ("a@example.test",)), now=float(n))
        storage.hold(QueueFilter(ids=(mid(1),)))
        finish(storage, mid(2), "a@example.test", DeliveryResult.FAILED)
        finish(storage, mid(3), "a@example.test", DeliveryResult.DEFERRED, 500.0)
        untouched = storage.find(QueueFilter(ids=(mid(1), mid(2), mid(3))))
        claims = storage.claim_due(now=499.0, limit=10, lease=LEASE)
        assert [c.message_id for c in claims] == [mid(4)]
        assert storage.find(QueueFilter(ids=(mid(1), mid(2), mid(3)))) == untouched

    def test_when_the_lease_ends_the_message_is_claimed_again(
        self, storage: Backend
    ) -> None:
        """A claim never recorded (its claimant died) lets the message be claimed
        again when its lease ends, under a new token, counting a new attempt."""
        storage.add(email(), now=0.0)
        first = claim_one(storage, mid(1), now=0.0)
        again = claim_one(storage, mid(1), now=LEASE)
        assert again.token != first.token
        assert again.before == first.status
        assert again.status.attempts == 2

    def test_racing_claims_take_each_message_once(self, storage: Backend) -> None:
        """Concurrent claim_due() calls never claim one message twice."""
        storage.add_many([email(n) for n in range(40)], now=0.0)
        claims: list[Claim] = []
        barrier = threading.Barrier(4)

        def claim() -> None:
            barrier.wait()
            while found := storage.claim_due(now=1.0, limit=3, lease=LEASE):
                claims.extend(found)

        threads = [threading.Thread(target=claim) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(c.message_id for c in claims) == sorted(mid(n) for n in range(40))

    @pytest.mark.parametrize(
        ("limit", "lease"), [(-1, LEASE), (1, 0.0), (1, -5.0), (1, float("inf"))]
    )
    def test_a_bad_limit_or_lease_raises_value_error(
        self, storage: Backend, limit: int, lease: float
    ) -> None:
        """A negative limit, or a lease that is not a finite time ahead, raises
        ValueError and claims nothing."""
        storage.add(email(), now=0.0)
        with pytest.raises(ValueError, match=r"^(limit|lease) must be"):
            storage.claim_due(now=1.0, limit=limit, lease=lease)
        assert storage.status(mid(1)).attempts == 0


class NextDueContract:
    """next_due(): when to look for due work again."""

    def test_the_earliest_due_time_of_what_may_be_claimed(
        self, storage: Backend
    ) -> None:
        """The earliest next attempt among messages not held with pending
        recipients; a claimed one counts when its lease ends."""
        assert storage.next_due() is None
        storage.add(email(1), now=30.0)
        storage.add(email(2), now=10.0)
        storage.add(email(3), now=5.0)
        storage.hold(QueueFilter(ids=(mid(3),)))
        assert storage.next_due() == 10.0
        claim = claim_one(storage, mid(2), now=20.0)
        assert storage.next_due() == 30.0
        finish(storage, mid(1), "a@example.test", DeliveryResult.DELIVERED)
        assert storage.next_due() == 20.0 + LEASE  # m2's lease ends
        storage.record(
            claim,
            [
                outcome(claim.status, r.address, DeliveryResult.FAILED, None)
                for r in claim.status.recipients
            ],
        )
        assert storage.next_due() == 30.0 + LEASE  # m1's b, claimed and unrecorded
        storage.release(QueueFilter(ids=(mid(3),)))
        assert storage.next_due() == 5.0


class RecordContract:
    """record() and record_many(): an outcome under a live claim, once."""

    def test_record_replaces_the_named_recipients_and_ends_the_claim(
        self, storage: Backend
    ) -> None:
        """The recipients named are replaced, the others left as claimed, and the
        message is due when its pending recipients say, not when the lease ends."""
        storage.add(email(), now=0.0)
        claim = claim_one(storage, mid(1), now=0.0)
        failed = outcome(claim.status, "a@example.test", DeliveryResult.FAILED, None)
        deferred = outcome(claim.status, "b@example.test", DeliveryResult.DEFERRED, 9)
        after = storage.record(claim, [failed])
        assert after is not None
        assert after.recipients == (failed, claim.status.recipients[1])
        after = storage.record(claim_one(storage, mid(1), now=LEASE), [deferred])
        assert after is not None
        assert after.next_attempt_at == 9.0
        assert storage.status(mid(1)) == after
        assert storage.next_due() == 9.0

    def test_a_claim_is_recorded_once(self, storage: Backend) -> None:
        """Recording ends the claim: a second record under it is refused."""
        storage.add(email(), now=0.0)
        claim = claim_one(storage, mid(1), now=0.0)
        done = [outcome(claim.status, "a@example.test", DeliveryResult.DELIVERED, None)]
        first = storage.record(claim, done)
        assert storage.record(claim, []) is None
        assert storage.status(mid(1)) == first

    def test_a_claim_replaced_after_its_lease_is_refused(
        self, storage: Backend
    ) -> None:
        """An outcome under a claim whose message was claimed again after the
        lease ended is refused, and the new claim's outcome is recorded."""
        storage.add(email(), now=0.0)
        old = claim_one(storage, mid(1), now=0.0)
        new = claim_one(storage, mid(1), now=LEASE)
        late = [outcome(old.status, "a@example.test", DeliveryResult.DELIVERED, None)]
        assert storage.record(old, late) is None
        assert storage.status(mid(1)) == new.status
        assert storage.record(new, []) == new.status

    def test_a_late_outcome_under_an_expired_claim_is_recorded(
        self, storage: Backend
    ) -> None:
        """A claim whose lease ended but which nobody replaced still records."""
        storage.add(email(), now=0.0)
        claim = claim_one(storage, mid(1), now=0.0)
        done = [outcome(claim.status, "a@example.test", DeliveryResult.DELIVERED, None)]
        recorded = storage.record(claim, done)
        assert recorded is not None
        assert recorded.recipient("a@example.test").result is DeliveryResult.DELIVERED

    def test_a_message_dropped_during_its_claim_is_not_recorded(
        self, storage: Backend
    ) -> None:
        """The outcome of an attempt on a message dropped meanwhile is refused, and
        the id stays unknown."""
        storage.add(email(), now=0.0)
        claim = claim_one(storage, mid(1), now=0.0)
        storage.drop(QueueFilter(ids=(mid(1),)))
        assert storage.record(claim, list(claim.status.recipients)) is None
        assert storage.count(QueueFilter()) == 0
        storage.add(email(), now=5.0)  # the id, free again, is another message
        assert storage.record(claim, list(claim.status.recipients)) is None
        assert storage.status(mid(1)).attempts == 0

    def test_a_held_message_records_its_attempt_and_stays_held(
        self, storage: Backend
    ) -> None:
        """A hold during an attempt lets the outcome be recorded; the message
        then waits for its release."""
        storage.add(email(), now=0.0)
        claim = claim_one(storage, mid(1), now=0.0)
        storage.hold(QueueFilter(ids=(mid(1),)))
        deferred = outcome(claim.status, "a@example.test", DeliveryResult.DEFERRED, 5)
        after = storage.record(claim, [deferred])
        assert after is not None
        assert after.held
        assert storage.claim_due(now=1e9, limit=5, lease=LEASE) == []

    def test_a_delivered_recipient_is_never_overwritten(self, storage: Backend) -> None:
        """Once DELIVERED, a recipient stays DELIVERED whatever is recorded later."""
        storage.add(email(), now=0.0)
        first = claim_one(storage, mid(1), now=0.0)
        storage.record(
            first,
            [
                outcome(first.status, "a@example.test", DeliveryResult.DELIVERED, None),
                outcome(first.status, "b@example.test", DeliveryResult.DEFERRED, 5.0),
            ],
        )
        second = claim_one(storage, mid(1), now=5.0)
        deferred = dataclasses.replace(
            first.status.recipient("a@example.test"), result=DeliveryResult.DEFERRED
        )
        after = storage.record(second, [deferred])
        assert after is not None
        assert after.recipient("a@example.test").result is DeliveryResult.DELIVERED

    def test_replies_keep_their_steps_and_the_rcpt_reply(
        self, storage: Backend
    ) -> None:
        """A recorded reply keeps the step it answered, and a recipient keeps
        the reply to its RCPT beside the reply that decided it."""
        storage.add(email(), now=0.0)
        claim = claim_one(storage, mid(1), now=0.0)
        delivered = dataclasses.replace(
            claim.status.recipients[0],
            result=DeliveryResult.DELIVERED,
            next_attempt_at=None,
            last_reply=SmtpReply(250, "2.0.0", "queued as 1", SmtpStep.END_OF_DATA),
            rcpt_reply=SmtpReply(250, "2.1.5", "ok", SmtpStep.RCPT),
        )
        deferred = dataclasses.replace(
            claim.status.recipients[1],
            result=DeliveryResult.DEFERRED,
            next_attempt_at=9.0,
            last_reply=SmtpReply(451, "4.3.0", "try later", SmtpStep.MAIL),
        )
        after = storage.record(claim, [delivered, deferred])
        assert after is not None
        assert after.recipients == (delivered, deferred)
        assert storage.status(mid(1)) == after

    def test_the_server_and_its_tls_policy_are_kept(self, storage: Backend) -> None:
        """A recorded recipient keeps the server of its last session whole:
        its TLS, and the policy TLS was held to with the result under it."""
        storage.add(email(), now=0.0)
        claim = claim_one(storage, mid(1), now=0.0)
        verified = Remote(
            "mx1.d.test",
            "192.0.2.1",
            25,
            tls_version="TLSv1.3",
            tls_verified=True,
            tls_policy="sts",
            tls_policy_domain="d.test",
            tls_result="success",
        )
        failed = Remote(
            "mx2.d.test",
            "192.0.2.2",
            25,
            tls_policy="tlsa",
            tls_policy_domain="d.test",
            tls_result="validation-failure",
            tls_failure="DANE: the server's public key does not match",
        )
        delivered = dataclasses.replace(
            claim.status.recipients[0],
            result=DeliveryResult.DELIVERED,
            next_attempt_at=None,
            remote=verified,
        )
        deferred = dataclasses.replace(
            claim.status.recipients[1],
            result=DeliveryResult.DEFERRED,
            next_attempt_at=9.0,
            remote=failed,
        )
        after = storage.record(claim, [delivered, deferred])
        assert after is not None
        assert after.recipients == (delivered, deferred)
        assert storage.status(mid(1)) == after

    def test_unknown_addresses_are_ignored(self, storage: Backend) -> None:
        """An update for an address that is not a recipient changes nothing of
        the recipients."""
        storage.add(email(), now=0.0)
        claim = claim_one(storage, mid(1), now=0.0)
        stranger = dataclasses.replace(claim.status.recipients[0], address="x@x.test")
        assert storage.record(claim, [stranger]) == claim.status

    def test_record_many_is_record_in_turn(self, storage: Backend) -> None:
        """record_many() leaves each message as record() calls in the same order
        do, and refuses what record() would refuse: a claim repeated, a message
        dropped."""
        storage.add_many([email(n) for n in range(1, 5)], now=0.0)
        c1, c2, c3, c4 = storage.claim_due(now=0.0, limit=4, lease=LEASE)
        deliver = [
            outcome(c1.status, address, DeliveryResult.DELIVERED, None)
            for address in ("a@example.test", "b@example.test")
        ]
        defer = [
            outcome(c1.status, "a@example.test", DeliveryResult.DEFERRED, 70.0),
            outcome(c1.status, "b@example.test", DeliveryResult.FAILED, None),
        ]
        expected = storage.record(c1, deliver)
        storage.record(c2, defer)
        storage.drop(QueueFilter(ids=(mid(4),)))

        recorded = storage.record_many([(c3, deliver), (c3, defer), (c4, defer)])

        assert expected is not None
        assert recorded == [renamed(expected, 3), None, None]
        assert storage.status(mid(3)) == recorded[0]
        assert ids(storage.find(QueueFilter(completed=False))) == [2]
        assert storage.next_due() == 70.0
        assert storage.record_many([]) == []
