"""The storage contract: every backend must pass these tests unchanged.

To check a backend of your own, add a factory for it to ``BACKENDS``: it gets an
empty directory of its own to keep files in. The ``defaults`` backend implements
only the abstract methods, so the suite checks the base class's own
implementations (``add_many``, ``claim``, ``record_many``) as well.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from mailstrom_py import (
    Claim,
    DeliveryResult,
    DuplicateMessageError,
    MemoryStorage,
    MessageNotFound,
    MessageStatus,
    PreparedEmail,
    QueueFilter,
    RecipientStatus,
    SqliteStorage,
    Storage,
)
from mailstrom_py.testing import prepared_email


class AbstractOnly(Storage):
    """A backend with only the abstract methods, each delegated to a MemoryStorage."""

    def __init__(self) -> None:
        self.inner = MemoryStorage()

    def add(self, email: PreparedEmail, now: float) -> MessageStatus:
        return self.inner.add(email, now)

    def status(self, message_id: str) -> MessageStatus:
        return self.inner.status(message_id)

    def email(self, message_id: str) -> PreparedEmail:
        return self.inner.email(message_id)

    def begin_attempt(
        self, message_id: str, now: float, retry_at: float
    ) -> MessageStatus | None:
        return self.inner.begin_attempt(message_id, now, retry_at)

    def record(
        self, message_id: str, updates: Sequence[RecipientStatus]
    ) -> MessageStatus:
        return self.inner.record(message_id, updates)

    def due(self, until: float, limit: int) -> list[tuple[float, str]]:
        return self.inner.due(until, limit)

    def find(self, where: QueueFilter, limit: int | None = None) -> list[MessageStatus]:
        return self.inner.find(where, limit)

    def count(self, where: QueueFilter) -> int:
        return self.inner.count(where)

    def kick(self, where: QueueFilter, now: float) -> list[str]:
        return self.inner.kick(where, now)

    def hold(self, where: QueueFilter) -> list[str]:
        return self.inner.hold(where)

    def release(self, where: QueueFilter) -> list[str]:
        return self.inner.release(where)

    def drop(self, where: QueueFilter) -> list[str]:
        return self.inner.drop(where)

    def recent(self, limit: int | None = None) -> list[MessageStatus]:
        return self.inner.recent(limit)


BACKENDS: dict[str, Callable[[Path], Storage]] = {
    "defaults": lambda _: AbstractOnly(),
    "memory": lambda _: MemoryStorage(),
    "sqlite": lambda tmp: SqliteStorage(tmp / "outbox.db"),
    "sqlite-all-full": lambda tmp: SqliteStorage(
        tmp / "outbox.db", attempt_synchronous="FULL"
    ),
}


@pytest.fixture(params=sorted(BACKENDS))
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    backend = BACKENDS[request.param](tmp_path)
    yield backend
    backend.close()


def email(
    n: int = 1, recipients: tuple[str, ...] = ("a@example.test", "b@example.test")
) -> PreparedEmail:
    return prepared_email(n, *recipients)


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

    @pytest.mark.parametrize(
        "options",
        [
            {},
            {"smtputf8": True, "eight_bit": True},
            {"require_tls": True},
            {"tls_optional": True},
            {"mail_from": ""},
        ],
    )
    def test_the_message_comes_back_unchanged(
        self, storage: Storage, options: dict[str, object]
    ) -> None:
        """email() returns the prepared message exactly as added, every field of it."""
        original = dataclasses.replace(
            email(recipients=("b@example.test", "a@example.test")), **options
        )
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


class TestAddMany:
    def test_a_batch_is_stored_in_order(self, storage: Storage) -> None:
        """add_many() stores every message, returning statuses in input order."""
        statuses = storage.add_many([email(3), email(1), email(2)], now=5.0)
        assert [s.message_id for s in statuses] == [
            "m3@example.test",
            "m1@example.test",
            "m2@example.test",
        ]
        assert storage.count(QueueFilter()) == 3
        assert storage.email("m2@example.test") == email(2)

    def test_a_stored_id_in_the_batch_stores_nothing(self, storage: Storage) -> None:
        """One id already stored makes the whole batch fail, and none is added."""
        storage.add(email(2), now=0.0)
        with pytest.raises(DuplicateMessageError):
            storage.add_many([email(1), email(2), email(3)], now=1.0)
        assert storage.count(QueueFilter()) == 1
        with pytest.raises(MessageNotFound):
            storage.status("m1@example.test")

    def test_an_id_repeated_in_the_batch_stores_nothing(self, storage: Storage) -> None:
        """Two messages with one id in a batch fail it before anything is stored."""
        with pytest.raises(DuplicateMessageError):
            storage.add_many([email(1), email(2), email(1)], now=1.0)
        assert storage.count(QueueFilter()) == 0


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


def mid(n: int) -> str:
    return f"m{n}@example.test"


def renamed(status: MessageStatus, n: int) -> MessageStatus:
    """`status` as if it belonged to message `n`: for comparing twin messages."""
    return dataclasses.replace(status, message_id=mid(n))


def outcome(
    status: MessageStatus, address: str, result: DeliveryResult, at: float | None
) -> RecipientStatus:
    return dataclasses.replace(
        status.recipient(address), result=result, next_attempt_at=at
    )


class TestClaim:
    def test_a_claim_is_begin_attempt_and_email(self, storage: Storage) -> None:
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
        self, storage: Storage
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

    def test_retry_at_gets_each_status_as_found(self, storage: Storage) -> None:
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

    def test_an_error_in_retry_at_propagates(self, storage: Storage) -> None:
        """An exception from retry_at() propagates out of claim()."""
        storage.add(email(), now=0.0)

        def retry_at(status: MessageStatus) -> float:
            raise ZeroDivisionError

        with pytest.raises(ZeroDivisionError):
            storage.claim([mid(1)], now=1.0, retry_at=retry_at)

    def test_racing_claims_take_each_message_once(self, storage: Storage) -> None:
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


class TestRecordMany:
    def test_record_many_is_record_in_turn(self, storage: Storage) -> None:
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
        self, storage: Storage
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


def finish(
    storage: Storage,
    message_id: str,
    address: str,
    result: DeliveryResult,
    next_attempt_at: float | None = None,
) -> None:
    """Record `result` for one recipient, as the worker would after an attempt."""
    current = storage.status(message_id).recipient(address)
    storage.record(
        message_id,
        [
            dataclasses.replace(
                current,
                result=result,
                attempts=current.attempts + 1,
                next_attempt_at=next_attempt_at,
            )
        ],
    )


@pytest.fixture
def queue(storage: Storage) -> Storage:
    """Five messages in every state the filters tell apart.

    m1 (t=10): a@example.test delivered, b@other.test deferred until 500.
    m2 (t=20): C@Example.TEST queued.
    m3 (t=30): d@other.test failed (completed).
    m4 (t=40): e@example.test queued, held.
    m5 (t=50): f@xn--bcher-kva.test queued.
    """
    storage.add(email(1, ("a@example.test", "b@other.test")), now=10.0)
    finish(storage, "m1@example.test", "a@example.test", DeliveryResult.DELIVERED)
    finish(storage, "m1@example.test", "b@other.test", DeliveryResult.DEFERRED, 500.0)
    storage.add(email(2, ("C@Example.TEST",)), now=20.0)
    storage.add(email(3, ("d@other.test",)), now=30.0)
    finish(storage, "m3@example.test", "d@other.test", DeliveryResult.FAILED)
    storage.add(email(4, ("e@example.test",)), now=40.0)
    storage.hold(QueueFilter(ids=("m4@example.test",)))
    storage.add(email(5, ("f@xn--bcher-kva.test",)), now=50.0)
    return storage


def ids(statuses: list[MessageStatus]) -> list[int]:
    return [int(s.message_id[1:].partition("@")[0]) for s in statuses]


class TestFind:
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
        self, queue: Storage, where: QueueFilter, expected: list[int]
    ) -> None:
        """find() and count() select the messages meeting every criterion set."""
        assert ids(queue.find(where)) == expected
        assert queue.count(where) == len(expected)

    def test_found_statuses_are_the_current_ones(self, queue: Storage) -> None:
        """find() returns the same statuses status() does."""
        for found in queue.find(QueueFilter()):
            assert found == queue.status(found.message_id)

    def test_limit_keeps_the_oldest(self, queue: Storage) -> None:
        """find(limit=n) returns the n oldest of the selected messages."""
        assert ids(queue.find(QueueFilter(completed=False), limit=2)) == [1, 2]
        assert queue.find(QueueFilter(), limit=0) == []

    def test_ties_in_creation_time_keep_the_order_added(self, storage: Storage) -> None:
        """Messages created at the same moment are listed in the order they were added."""
        for n in (3, 1, 2):
            storage.add(email(n), now=7.0)
        assert ids(storage.find(QueueFilter())) == [3, 1, 2]

    def test_an_empty_storage_has_nothing_to_find(self, storage: Storage) -> None:
        """A filter that matches nothing is not an error."""
        assert storage.find(QueueFilter(domain="example.test")) == []
        assert storage.count(QueueFilter()) == 0


class TestKick:
    def test_kick_makes_deferred_mail_due_now(self, queue: Storage) -> None:
        """Kicked pending recipients are due at `now`; attempts stay as they were."""
        before = queue.status("m1@example.test")
        assert queue.kick(QueueFilter(ids=("m1@example.test",)), now=100.0) == [
            "m1@example.test"
        ]
        after = queue.status("m1@example.test")
        assert after.next_attempt_at == 100.0
        assert after.recipient("b@other.test").attempts == 1
        assert after.recipient("a@example.test") == before.recipient("a@example.test")
        assert (100.0, "m1@example.test") in queue.due(until=100.0, limit=10)

    def test_kick_never_delays_and_skips_completed_mail(self, queue: Storage) -> None:
        """A message due before `now` keeps its time; completed ones are not kicked."""
        kicked = queue.kick(QueueFilter(domain="other.test"), now=600.0)
        assert kicked == ["m1@example.test"]
        assert queue.kick(QueueFilter(ids=("m2@example.test",)), now=600.0) == [
            "m2@example.test"
        ]
        assert queue.status("m2@example.test").next_attempt_at == 20.0
        assert queue.status("m3@example.test").completed

    def test_a_kicked_held_message_waits_for_its_release(self, queue: Storage) -> None:
        """Kicking a held message makes it due but not attempted until released."""
        assert queue.kick(QueueFilter(held=True), now=45.0) == ["m4@example.test"]
        assert "m4@example.test" not in [i for _, i in queue.due(1e12, 10)]
        queue.release(QueueFilter(held=True))
        assert (40.0, "m4@example.test") in queue.due(until=45.0, limit=10)

    def test_kicking_nothing_is_not_an_error(self, queue: Storage) -> None:
        """A kick that selects nothing returns an empty list."""
        assert queue.kick(QueueFilter(domain="nowhere.test"), now=1.0) == []


class TestHoldAndRelease:
    def test_a_held_message_is_never_attempted(self, queue: Storage) -> None:
        """Held: not due, not claimable, and its status says so."""
        assert queue.hold(QueueFilter(ids=("m2@example.test",))) == ["m2@example.test"]
        assert queue.status("m2@example.test").held
        assert "m2@example.test" not in [i for _, i in queue.due(1e12, 10)]
        assert queue.begin_attempt("m2@example.test", now=1e9, retry_at=2e9) is None

    def test_release_brings_it_back_at_its_own_time(self, queue: Storage) -> None:
        """A released message is due again when it was due before the hold."""
        assert queue.release(QueueFilter(ids=("m4@example.test",))) == [
            "m4@example.test"
        ]
        assert not queue.status("m4@example.test").held
        assert (40.0, "m4@example.test") in queue.due(until=40.0, limit=10)
        assert queue.begin_attempt("m4@example.test", now=40.0, retry_at=99.0)

    def test_hold_and_release_change_only_what_they_must(self, queue: Storage) -> None:
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


class TestDrop:
    def test_dropped_messages_are_gone(self, queue: Storage) -> None:
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
            with pytest.raises(MessageNotFound):
                queue.record(gone, [])
            assert queue.begin_attempt(gone, now=1e9, retry_at=2e9) is None
        assert ids(queue.find(QueueFilter())) == [2, 4, 5]
        assert queue.status("m2@example.test") == others["m2@example.test"]
        assert [i for _, i in queue.due(1e12, 10)] == [
            "m2@example.test",
            "m5@example.test",
        ]

    def test_a_dropped_id_can_be_added_again(self, queue: Storage) -> None:
        """Dropping frees the id."""
        queue.drop(QueueFilter(ids=("m2@example.test",)))
        assert queue.add(email(2), now=60.0).created_at == 60.0

    def test_dropping_nothing_is_not_an_error(self, queue: Storage) -> None:
        """A drop that selects nothing removes nothing."""
        assert queue.drop(QueueFilter(recipient="nobody@example.test")) == []
        assert queue.count(QueueFilter()) == 5


class TestRecent:
    def test_completed_mail_is_reported_once_and_pending_mail_always(
        self, queue: Storage
    ) -> None:
        """recent(): completed messages not yet reported, then every incomplete one."""
        assert ids(queue.recent()) == [3, 1, 2, 4, 5]
        assert ids(queue.recent()) == [1, 2, 4, 5]
        finish(queue, "m2@example.test", "C@Example.TEST", DeliveryResult.DELIVERED)
        assert ids(queue.recent()) == [2, 1, 4, 5]
        assert ids(queue.recent()) == [1, 4, 5]

    def test_reported_statuses_are_current(self, queue: Storage) -> None:
        """The statuses recent() returns equal those status() returns."""
        for status in queue.recent():
            assert status == queue.status(status.message_id)

    def test_a_limit_leaves_the_rest_for_later_calls(self, storage: Storage) -> None:
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

    def test_dropped_mail_is_not_reported(self, queue: Storage) -> None:
        """A message dropped before it was reported never appears."""
        queue.drop(QueueFilter(completed=True))
        assert ids(queue.recent()) == [1, 2, 4, 5]
