"""The recipient state machine of mailstrom_py.storage.rules, on its own."""

from __future__ import annotations

import dataclasses

from mailstrom_py import DeliveryResult, MessageStatus, RecipientStatus, SmtpReply
from mailstrom_py.delivery.base import Outcome
from mailstrom_py.storage.rules import (
    apply_outcomes,
    attempt_begun,
    initial_status,
    is_claimable,
    merge_recipients,
)
from mailstrom_py.testing import prepared_email

BUSY = SmtpReply(450, "4.2.0", "mailbox busy")


def claimed(*addresses: str) -> MessageStatus:
    """A message to ``addresses``, added at 0 and claimed at 10 until 70."""
    return attempt_begun(initial_status(prepared_email(1, *addresses), 0.0), 10.0, 70.0)


class TestClaims:
    def test_a_new_message_is_claimable_at_once_and_not_before(self) -> None:
        """Added at t, a message is due at t."""
        status = initial_status(prepared_email(1, "a@example.test"), 5.0)
        assert is_claimable(status, 5.0)
        assert not is_claimable(status, 4.9)

    def test_a_claim_counts_the_attempt_and_holds_until_its_lease_ends(self) -> None:
        """Claimed, the pending recipients count an attempt begun now and are due
        again only when the lease ends; held or complete, a message is never due."""
        status = claimed("a@example.test", "b@example.test")
        assert [r.attempts for r in status.recipients] == [1, 1]
        assert status.recipients[0].last_attempt_at == 10.0
        assert not is_claimable(status, 69.0)
        assert is_claimable(status, 70.0)
        assert not is_claimable(dataclasses.replace(status, held=True), 70.0)
        done = [
            dataclasses.replace(r, result=DeliveryResult.FAILED, next_attempt_at=None)
            for r in status.recipients
        ]
        assert not is_claimable(merge_recipients(status, done), 1e12)


class TestOutcomes:
    def test_a_deferral_is_due_at_the_retry_time(self) -> None:
        """A 4xx outcome defers the recipient until retry_at, keeping its reply."""
        [r] = apply_outcomes(
            claimed("a@example.test").pending,
            [Outcome("a@example.test", DeliveryResult.DEFERRED, "4.2.0", "busy", BUSY)],
            10.0,
            400.0,
        )
        assert (r.result, r.status_code, r.next_attempt_at) == (
            DeliveryResult.DEFERRED,
            "4.2.0",
            400.0,
        )
        assert (r.attempts, r.last_attempt_at, r.last_reply) == (1, 10.0, BUSY)

    def test_a_deferral_after_the_policy_gives_up_fails_with_5_4_7(self) -> None:
        """With no retry time left, a deferred recipient fails with 5.4.7 and the
        last reply kept; a delivered one is unaffected."""
        delivered, failed = apply_outcomes(
            claimed("a@example.test", "b@example.test").pending,
            [
                Outcome("a@example.test", DeliveryResult.DELIVERED, "2.0.0", "ok"),
                Outcome("b@example.test", DeliveryResult.DEFERRED, "4.2.0", "x", BUSY),
            ],
            10.0,
            None,
        )
        assert delivered.result is DeliveryResult.DELIVERED
        assert delivered.next_attempt_at is None
        assert (failed.result, failed.status_code) == (DeliveryResult.FAILED, "5.4.7")
        assert failed.detail == "gave up after 1 attempts; last: x"
        assert failed.last_reply == BUSY and failed.next_attempt_at is None

    def test_a_recipient_without_an_outcome_is_deferred(self) -> None:
        """A transport that leaves a recipient out defers it with 4.3.0."""
        [r] = apply_outcomes(claimed("a@example.test").pending, [], 10.0, 400.0)
        assert (r.result, r.status_code) == (DeliveryResult.DEFERRED, "4.3.0")
        assert r.detail == "no outcome was reported"

    def test_possibly_delivered_once_set_stays_set(self) -> None:
        """A recipient marked possibly delivered keeps the mark after a clean
        deferral."""
        [pending] = claimed("a@example.test").pending
        marked = dataclasses.replace(pending, possibly_delivered=True)
        [r] = apply_outcomes(
            [marked],
            [Outcome("a@example.test", DeliveryResult.DEFERRED, "4.4.2", "lost")],
            10.0,
            400.0,
        )
        assert r.possibly_delivered


class TestMerge:
    def test_a_delivered_recipient_is_never_overwritten(self) -> None:
        """Merging a deferral onto a delivered recipient keeps it delivered;
        strangers are ignored."""
        status = claimed("a@example.test")
        delivered = dataclasses.replace(
            status.recipients[0], result=DeliveryResult.DELIVERED
        )
        done = merge_recipients(status, [delivered])
        again = merge_recipients(
            done,
            [
                dataclasses.replace(delivered, result=DeliveryResult.DEFERRED),
                RecipientStatus("x@example.test"),
            ],
        )
        assert again == done


class TestHeldBack:
    def test_a_held_recipient_is_deferred_without_its_attempt_counted(self) -> None:
        """A recipient held back (its destination suspended) is deferred until
        the hold ends with its attempts and last attempt as before the claim,
        even when the retry policy has given up; the others are as reported."""
        before = initial_status(prepared_email(1, "a@x.test", "b@x.test"), 0.0)
        status = attempt_begun(before, 10.0, 70.0)
        held = Outcome(
            "a@x.test", DeliveryResult.DEFERRED, "4.7.0", "suspended", held_until=500.0
        )
        sent = Outcome("b@x.test", DeliveryResult.DELIVERED, "2.0.0", "ok")
        a, b = apply_outcomes(
            status.pending, [held, sent], 10.0, None, before=before.recipients
        )
        assert (a.result, a.attempts, a.last_attempt_at, a.next_attempt_at) == (
            DeliveryResult.DEFERRED,
            0,
            None,
            500.0,
        )
        assert (a.status_code, a.detail) == ("4.7.0", "suspended")
        assert (b.result, b.attempts) == (DeliveryResult.DELIVERED, 1)
