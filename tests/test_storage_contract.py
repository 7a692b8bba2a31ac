"""The storage contract: every backend must pass these tests unchanged.

To check a backend of your own, add a factory for it to ``BACKENDS``.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterator

import pytest

from mailstrom_py import (
    DeliveryResult,
    DuplicateMessageError,
    MemoryStorage,
    MessageNotFound,
    PreparedEmail,
    Storage,
)

BACKENDS: dict[str, Callable[[], Storage]] = {"memory": MemoryStorage}


@pytest.fixture(params=sorted(BACKENDS))
def storage(request: pytest.FixtureRequest) -> Iterator[Storage]:
    backend = BACKENDS[request.param]()
    yield backend
    backend.close()


def email(
    n: int = 1, recipients: tuple[str, ...] = ("a@example.test", "b@example.test")
) -> PreparedEmail:
    return PreparedEmail(
        message_id=f"m{n}@example.test",
        mail_from="sender@example.test",
        recipients=recipients,
        data=f"Message-ID: <m{n}@example.test>\r\n\r\nbody {n}\r\n".encode(),
        smtputf8=False,
        eight_bit=False,
    )


class TestAdd:
    def test_new_message_has_every_recipient_queued_and_due(
        self, storage: Storage
    ) -> None:
        """add() stores each recipient QUEUED, due at the time of adding."""
        status = storage.add(email(), now=100.0)
        assert status.created_at == 100.0
        assert [r.address for r in status.recipients] == [
            "a@example.test",
            "b@example.test",
        ]
        assert all(r.result is DeliveryResult.QUEUED for r in status.recipients)
        assert all(
            r.attempts == 0 and r.next_attempt_at == 100.0 for r in status.recipients
        )
        assert storage.status("m1@example.test") == status

    def test_message_bytes_come_back_unchanged(self, storage: Storage) -> None:
        """email() returns the prepared message exactly as it was added."""
        original = email()
        storage.add(original, now=0.0)
        assert storage.email(original.message_id) == original

    def test_duplicate_id_is_refused_and_changes_nothing(
        self, storage: Storage
    ) -> None:
        """A second message with the same id raises and leaves the first intact."""
        first = storage.add(email(), now=1.0)
        with pytest.raises(DuplicateMessageError):
            storage.add(
                dataclasses.replace(email(), recipients=("z@example.test",)), now=2.0
            )
        assert storage.status("m1@example.test") == first

    def test_unknown_id_raises_message_not_found(self, storage: Storage) -> None:
        """Looking up an id never stored raises MessageNotFound, a LookupError."""
        with pytest.raises(MessageNotFound):
            storage.status("nope@example.test")
        with pytest.raises(LookupError):
            storage.email("nope@example.test")


class TestAttempts:
    def test_begin_attempt_records_the_attempt_first(self, storage: Storage) -> None:
        """Claiming a due message counts the attempt and pushes the next one forward."""
        storage.add(email(), now=0.0)
        claimed = storage.begin_attempt("m1@example.test", now=10.0, retry_at=310.0)
        assert claimed is not None
        assert all(r.attempts == 1 for r in claimed.recipients)
        assert all(r.last_attempt_at == 10.0 for r in claimed.recipients)
        assert claimed.next_attempt_at == 310.0
        assert storage.status("m1@example.test") == claimed

    def test_a_message_not_yet_due_is_not_claimed(self, storage: Storage) -> None:
        """begin_attempt() before the due time returns None and changes nothing."""
        storage.add(email(), now=0.0)
        storage.begin_attempt("m1@example.test", now=0.0, retry_at=300.0)
        before = storage.status("m1@example.test")
        assert (
            storage.begin_attempt("m1@example.test", now=299.0, retry_at=600.0) is None
        )
        assert storage.status("m1@example.test") == before

    def test_unknown_or_complete_messages_are_not_claimed(
        self, storage: Storage
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

    def test_only_one_of_many_racing_claims_wins(self, storage: Storage) -> None:
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


class TestRecord:
    def test_record_updates_only_the_named_recipients(self, storage: Storage) -> None:
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

    def test_a_delivered_recipient_is_never_overwritten(self, storage: Storage) -> None:
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

    def test_unknown_addresses_are_ignored(self, storage: Storage) -> None:
        """An update for an address that is not a recipient changes nothing."""
        status = storage.add(email(), now=0.0)
        stranger = dataclasses.replace(status.recipients[0], address="x@example.test")
        assert storage.record("m1@example.test", [stranger]) == status

    def test_record_on_unknown_id_raises(self, storage: Storage) -> None:
        """record() for an id never stored raises MessageNotFound."""
        status = storage.add(email(), now=0.0)
        with pytest.raises(MessageNotFound):
            storage.record("nope@example.test", list(status.recipients))


class TestDue:
    def test_due_lists_earliest_first_within_the_limit(self, storage: Storage) -> None:
        """due() returns (time, id) pairs up to `until`, earliest first, at most `limit`."""
        for n, at in [(1, 30.0), (2, 10.0), (3, 20.0), (4, 99.0)]:
            storage.add(email(n), now=at)
        assert storage.due(until=50.0, limit=10) == [
            (10.0, "m2@example.test"),
            (20.0, "m3@example.test"),
            (30.0, "m1@example.test"),
        ]
        assert storage.due(until=50.0, limit=1) == [(10.0, "m2@example.test")]

    def test_completed_messages_are_never_due(self, storage: Storage) -> None:
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
        self, storage: Storage
    ) -> None:
        """After begin_attempt(), the message is due at retry_at (crash recovery)."""
        storage.add(email(), now=0.0)
        storage.begin_attempt("m1@example.test", now=0.0, retry_at=300.0)
        assert storage.due(until=299.0, limit=10) == []
        assert storage.due(until=300.0, limit=10) == [(300.0, "m1@example.test")]


class TestConcurrency:
    def test_concurrent_adds_all_land(self, storage: Storage) -> None:
        """Many threads adding at once lose nothing and mix nothing up."""

        def add_range(start: int) -> None:
            for n in range(start, start + 50):
                storage.add(email(n), now=float(n))

        threads = [threading.Thread(target=add_range, args=(k * 50,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(storage.due(until=1e12, limit=1000)) == 400
        assert storage.email("m399@example.test").data.endswith(b"body 399\r\n")
