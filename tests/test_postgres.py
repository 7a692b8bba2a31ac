"""PostgresStorage beyond the storage contract: whose clock it keeps, where bodies
live, wake-ups with LISTEN/NOTIFY, its settings, on a real PostgreSQL server.
The contract itself is run in test_storage_contract.py, the faults in
test_postgres_faults.py."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

psycopg = pytest.importorskip("psycopg")

from support.cli import run  # noqa: E402
from support.postgres import PgServer  # noqa: E402

from mailstrom_py import (  # noqa: E402
    ConfigError,
    DeliveryResult,
    DuplicateMessageError,
    PostgresStorage,
    QueueFilter,
    RetryPolicy,
    StorageError,
)
from mailstrom_py.cli.common import open_storage  # noqa: E402
from mailstrom_py.config.settings import StorageSettings  # noqa: E402
from mailstrom_py.storage.postgres.claims import extend as extend_claims  # noqa: E402
from mailstrom_py.testing.emails import prepared_email  # noqa: E402
from mailstrom_py.testing.transport import RecordingTransport  # noqa: E402
from mailstrom_py.worker import Worker  # noqa: E402


@pytest.fixture
def storage(postgres_dsn: str) -> Iterator[PostgresStorage]:
    """PostgresStorage on the database's clock, as deployed."""
    backend = PostgresStorage(postgres_dsn, connect_timeout=2, statement_timeout=2)
    yield backend
    backend.close()


def query(dsn: str, sql: str, *params: object) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET search_path = mailstrom")
        return conn.execute(sql, params).fetchall()


# -- clocks ---------------------------------------------------------------------------


def test_the_database_clock_decides_when_mail_was_added_and_is_due(
    storage: PostgresStorage, postgres_dsn: str
) -> None:
    """With the default clock, add() and kick() ignore the caller's `now`: the
    message is stamped with the server's now(), whatever the caller says."""
    [(server_now,)] = query(postgres_dsn, "SELECT extract(epoch FROM now())::float8")
    status = storage.add(prepared_email(1), now=12345.0)
    assert abs(status.created_at - server_now) < 5
    assert status.next_attempt_at == status.created_at
    assert storage.status(status.message_id) == status
    storage.kick(QueueFilter(), now=1e12)
    assert storage.status(status.message_id).next_attempt_at == status.created_at


def test_a_scheduled_time_is_absolute_on_the_database_clock(
    storage: PostgresStorage, postgres_dsn: str
) -> None:
    """send_at and schedule()'s time are stored as given, not moved onto the
    database's clock; created_at is still the server's, and the message is not
    claimed before its time, even by a worker whose clock is far behind."""
    [(server_now,)] = query(postgres_dsn, "SELECT extract(epoch FROM now())::float8")
    send_at = server_now + 3600.0
    status = storage.add(prepared_email(1), now=12345.0, send_at=send_at)
    assert abs(status.created_at - server_now) < 5
    assert status.next_attempt_at == send_at
    assert storage.status(status.message_id) == status
    assert storage.claim_due(send_at - 60, 10, 60.0) == []
    assert storage.claim_due(0.0, 10, 60.0) == []
    later = server_now + 7200.0
    assert storage.schedule(QueueFilter(), later, now=0.0) == [status.message_id]
    assert storage.status(status.message_id).next_attempt_at == later
    [(due,)] = query(postgres_dsn, "SELECT due_at FROM messages")
    assert due == later
    [failed] = storage.fail(QueueFilter(), now=0.0)
    assert failed.completed
    [(completed_at,)] = query(postgres_dsn, "SELECT completed_at FROM messages")
    assert abs(completed_at - time.time()) < 5


def test_the_callers_clock_is_kept_when_asked_for(postgres_dsn: str) -> None:
    """clock="caller" stores the times the caller gives, as other backends do."""
    with contextlib.closing(PostgresStorage(postgres_dsn, clock="caller")) as storage:
        status = storage.add(prepared_email(1), now=100.0)
        assert status.created_at == 100.0
        storage.kick(QueueFilter(), now=50.0)
        assert storage.status(status.message_id).next_attempt_at == 50.0
        assert storage.clock == "caller"


def test_a_skewed_claimant_records_times_on_the_database_clock(
    storage: PostgresStorage,
) -> None:
    """A worker ten minutes behind claims (the database decides what is due and
    when the lease ends) and records a retry five minutes after its own now:
    the retry is stored five minutes after the database's now, not already
    past, and next_due() tells that worker the time on its own clock."""
    storage.add(prepared_email(1), now=0.0)
    skewed_now = time.time() - 600
    [claim] = storage.claim_due(skewed_now, 10, 60.0)
    began = claim.status.recipients[0].last_attempt_at
    assert began is not None and abs(began - time.time()) < 5
    assert claim.status.next_attempt_at == began + 60.0
    retry = [
        dataclasses.replace(
            r,
            result=DeliveryResult.DEFERRED,
            last_attempt_at=skewed_now,
            next_attempt_at=skewed_now + 300,
        )
        for r in claim.status.recipients
    ]
    after = storage.record(claim, retry)
    assert after is not None
    assert after.next_attempt_at is not None
    assert abs(after.next_attempt_at - (time.time() + 300)) < 5
    assert abs(after.recipients[0].last_attempt_at - began) < 5  # type: ignore[operator]
    assert storage.claim_due(skewed_now, 10, 60.0) == []  # not due yet
    next_due = storage.next_due()
    assert next_due is not None and abs(next_due - (skewed_now + 300)) < 5


def test_a_worker_ahead_claims_nothing_that_is_not_due_by_the_database(
    storage: PostgresStorage,
) -> None:
    """Mail due in a minute by the server's clock is not claimed by a worker whose
    clock is ten minutes ahead; its lease is counted on the server's clock."""
    storage.add(prepared_email(1), now=0.0)
    [claim] = storage.claim_due(time.time(), 1, 60.0)
    storage.record(
        claim,
        [
            dataclasses.replace(
                r, result=DeliveryResult.DEFERRED, next_attempt_at=time.time() + 60
            )
            for r in claim.status.recipients
        ],
    )
    assert storage.claim_due(time.time() + 600, 10, 60.0) == []
    next_due = storage.next_due()
    assert next_due is not None and next_due > time.time() + 600


# -- retention and reports ------------------------------------------------------------


def complete(storage: PostgresStorage, now: float, result: DeliveryResult) -> None:
    """Claim all that is due at ``now`` and record ``result`` for every
    recipient."""
    while claims := storage.claim_due(now, 100, 60.0):
        storage.record_many(
            [
                (
                    claim,
                    [
                        dataclasses.replace(r, result=result, next_attempt_at=None)
                        for r in claim.status.recipients
                    ],
                )
                for claim in claims
            ]
        )


def test_an_outcome_recorded_as_an_extension_of_its_claim_commits_is_kept(
    storage: PostgresStorage, postgres_dsn: str
) -> None:
    """A record that waits for the message's lock while an extension of the
    same claim (which moves its recipients' next attempt) commits still writes
    every recipient's outcome: the message is completed with its recipients
    delivered, never completed with them still queued."""
    storage.add(prepared_email(1, "a@example.test", "b@example.test"), 10.0)
    [claim] = storage.claim_due(10.0, 1, 60.0)
    delivered = [
        dataclasses.replace(r, result=DeliveryResult.DELIVERED, next_attempt_at=None)
        for r in claim.status.recipients
    ]
    with psycopg.connect(postgres_dsn) as extension:
        extension.execute("SET search_path = mailstrom")
        assert extend_claims(extension, [claim], None, 60.0) == [True]
        recorded: list[object] = []
        recorder = threading.Thread(
            target=lambda: recorded.extend(storage.record_many([(claim, delivered)]))
        )
        recorder.start()
        deadline = time.monotonic() + 10
        while not query(
            postgres_dsn,
            "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " AND datname = current_database()",
        ):
            assert time.monotonic() < deadline, "the record never waited"
            time.sleep(0.02)
        extension.commit()
        recorder.join(10)
    [status] = recorded
    assert status is not None
    stored = storage.status(claim.message_id)
    assert [r.result for r in stored.recipients] == [DeliveryResult.DELIVERED] * 2
    assert stored.completed


def test_purge_removes_mail_completed_before_the_age_in_batches(
    postgres_dsn: str,
) -> None:
    """purge_completed() removes the messages completed longer ago than the age,
    a batch per transaction, and leaves pending and recent ones."""
    storage = PostgresStorage(postgres_dsn, clock="caller")
    try:
        storage.add_many([prepared_email(n) for n in range(5)], now=0.0)
        complete(storage, 10.0, DeliveryResult.DELIVERED)  # all five, at 10
        storage.add_many([prepared_email(n) for n in range(5, 8)], now=50.0)
        complete(storage, 60.0, DeliveryResult.FAILED)  # three, at 60
        storage.add(prepared_email(9), now=70.0)  # pending
        assert storage.purge_completed(100.0, now=105.0, batch=2) == 0
        assert storage.purge_completed(100.0, now=115.0, batch=2) == 5
        assert storage.count(QueueFilter()) == 4
        assert storage.purge_completed(10.0, now=115.0) == 3
        assert [s.message_id for s in storage.find(QueueFilter())] == [
            "m9@example.test"
        ]
        with pytest.raises(ValueError, match="older_than"):
            storage.purge_completed()
    finally:
        storage.close()


def test_retention_is_kept_by_the_workers_claims(
    storage: PostgresStorage, postgres_dsn: str
) -> None:
    """With retention set, a worker's claim removes mail completed longer ago
    than that (by the database's clock), with no other process to run."""
    storage.add_many([prepared_email(1), prepared_email(2)], now=0.0)
    complete(storage, time.time(), DeliveryResult.DELIVERED)
    storage.add(prepared_email(3), now=0.0)
    keeper = PostgresStorage(postgres_dsn, retention=0.5)
    try:
        keeper.claim_due(time.time(), 0, 60.0)
        assert storage.count(QueueFilter()) == 3  # completed too recently
        time.sleep(0.6)
        keeper.claim_due(time.time(), 0, 60.0)
        assert storage.count(QueueFilter()) == 3  # once a minute at most
    finally:
        keeper.close()
    keeper = PostgresStorage(postgres_dsn, retention=0.5)
    try:
        keeper.claim_due(time.time(), 0, 60.0)
        assert [s.message_id for s in storage.find(QueueFilter())] == [
            "m3@example.test"
        ]
    finally:
        keeper.close()


def test_recent_reports_each_completed_message_once_across_processes(
    postgres_dsn: str,
) -> None:
    """Three storages (three pools of sessions, as three processes would have)
    calling recent() at once report each of 200 completed messages exactly
    once between them."""
    setup = PostgresStorage(postgres_dsn)
    setup.add_many([prepared_email(n) for n in range(200)], now=0.0)
    complete(setup, time.time(), DeliveryResult.DELIVERED)
    setup.close()
    readers = [PostgresStorage(postgres_dsn, max_connections=2) for _ in range(3)]
    reported: list[str] = []
    barrier = threading.Barrier(6)

    def report(reader: PostgresStorage) -> None:
        barrier.wait()
        while found := reader.recent(limit=7):
            reported.extend(s.message_id for s in found)

    threads = [
        threading.Thread(target=report, args=(reader,)) for reader in readers * 2
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for reader in readers:
        reader.close()
    assert sorted(reported) == sorted(f"m{n}@example.test" for n in range(200))


# -- bodies ---------------------------------------------------------------------------


def test_a_body_is_stored_once_apart_from_the_state_of_its_message(
    storage: PostgresStorage, postgres_dsn: str
) -> None:
    """Bodies live in a table of their own, even small ones PostgreSQL would
    keep in a row: the rows claims and records rewrite stay small (fifty
    messages fit in two pages), and each body is there once."""
    emails = [
        dataclasses.replace(
            prepared_email(n, "a@example.test", "b@example.test"), data=os.urandom(1500)
        )
        for n in range(50)
    ]
    storage.add_many(emails, now=0.0)
    [(heap, bodies)] = query(
        postgres_dsn,
        "SELECT pg_relation_size('messages'),"
        " (SELECT count(*) FROM bodies WHERE length(data) = 1500)",
    )
    assert heap <= 2 * 8192
    assert bodies == 50
    assert storage.email(emails[7].message_id) == emails[7]


def test_statuses_and_the_queue_are_read_without_the_bodies(
    storage: PostgresStorage, postgres_dsn: str
) -> None:
    """A role that may not read the bodies reads statuses, lists, counts and
    reports the queue: none of those reads a body. email() alone needs them."""
    storage.add_many([prepared_email(1), prepared_email(2)], now=0.0)
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS no_bodies")
        conn.execute("CREATE ROLE no_bodies LOGIN")
        conn.execute("GRANT USAGE ON SCHEMA mailstrom TO no_bodies")
        conn.execute(
            "GRANT SELECT, UPDATE ON mailstrom.messages, mailstrom.recipients,"
            " mailstrom.schema_version TO no_bodies"
        )
    dsn = psycopg.conninfo.make_conninfo(postgres_dsn, user="no_bodies")
    try:
        with contextlib.closing(PostgresStorage(dsn)) as reader:
            assert reader.status("m1@example.test").message_id == "m1@example.test"
            assert len(reader.find(QueueFilter(domain="example.test"))) == 2
            assert reader.count(QueueFilter()) == 2
            assert len(reader.recent()) == 2
            with pytest.raises(StorageError, match="permission denied"):
                reader.email("m1@example.test")
    finally:
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            conn.execute("DROP OWNED BY no_bodies")
            conn.execute("DROP ROLE no_bodies")


def test_a_duplicate_in_a_batch_names_the_id_and_stores_nothing(
    storage: PostgresStorage,
) -> None:
    """add_many() with one id stored already raises DuplicateMessageError for that
    id, and none of the batch is stored."""
    storage.add(prepared_email(2), now=0.0)
    with pytest.raises(DuplicateMessageError) as caught:
        storage.add_many([prepared_email(n) for n in (1, 2, 3)], now=0.0)
    assert caught.value.message_id == "m2@example.test"
    assert storage.count(QueueFilter()) == 1


# -- wake-ups -------------------------------------------------------------------------


class Waiter:
    """A thread blocked in wait_for_work(), and when it woke."""

    def __init__(self, storage: PostgresStorage, timeout: float = 10.0) -> None:
        assert storage.wait_for_work(0)  # connects and listens
        self.result: bool | None = None
        self.woke_at = 0.0
        self.thread = threading.Thread(target=self._wait, args=(storage, timeout))
        self.thread.start()
        time.sleep(0.1)  # blocked in the wait by now

    def _wait(self, storage: PostgresStorage, timeout: float) -> None:
        self.result = storage.wait_for_work(timeout)
        self.woke_at = time.monotonic()

    def join(self) -> bool | None:
        self.thread.join(15)
        return self.result


def test_an_added_message_wakes_a_waiting_worker_within_milliseconds(
    storage: PostgresStorage, postgres_dsn: str
) -> None:
    """add() in one process notifies just after it commits; a worker waiting
    elsewhere on its own connection wakes well within 100 ms."""
    with contextlib.closing(PostgresStorage(postgres_dsn)) as worker_side:
        waiter = Waiter(worker_side)
        added_at = time.monotonic()
        storage.add(prepared_email(1), now=0.0)
        assert waiter.join() is True
        assert waiter.woke_at - added_at < 0.1


def test_a_worker_on_postgres_is_woken_by_mail_another_process_stores(
    postgres_dsn: str,
) -> None:
    """A worker that would look in storage only every 30 s delivers mail an
    Outbox elsewhere stores within a second: the NOTIFY wakes it."""
    producer = PostgresStorage(postgres_dsn)
    transport = RecordingTransport()
    worker = Worker(
        PostgresStorage(postgres_dsn), transport, RetryPolicy(), refill_interval=30
    )
    worker.start()
    try:
        time.sleep(0.5)  # its first look, at start, found nothing
        stored_at = time.monotonic()
        producer.add(prepared_email(1), now=time.time())
        deadline = stored_at + 5
        while not transport.sent:
            assert time.monotonic() < deadline, "the worker was not woken"
            time.sleep(0.01)
        assert time.monotonic() - stored_at < 1.0
    finally:
        worker.stop()
        producer.close()


def test_kick_and_release_wake_waiters_and_hold_does_not(
    storage: PostgresStorage,
) -> None:
    """Making mail due (kick, release) wakes a waiter; holding mail does not."""
    storage.add(prepared_email(1), now=0.0)
    assert storage.wait_for_work(0)  # connects
    assert storage.wait_for_work(0.2) is False
    storage.hold(QueueFilter())
    assert storage.wait_for_work(0.2) is False
    storage.release(QueueFilter())
    assert storage.wait_for_work(1) is True
    storage.kick(QueueFilter(), now=0.0)
    assert storage.wait_for_work(1) is True
    assert storage.wait_for_work(0.2) is False  # each notification consumed once


def test_a_failed_add_wakes_nobody(storage: PostgresStorage) -> None:
    """Only a committed add notifies: a duplicate that stores nothing sends
    nothing."""
    storage.add(prepared_email(1), now=0.0)
    assert storage.wait_for_work(0)
    storage.wait_for_work(0.1)  # the add's own notification, if still queued
    with pytest.raises(DuplicateMessageError):
        storage.add(prepared_email(1), now=0.0)
    assert storage.wait_for_work(0.3) is False


def test_closing_the_storage_at_once_after_adding_still_notifies(
    postgres_dsn: str,
) -> None:
    """close() sends the notification of the adds it still owes before it
    closes the connections."""
    with contextlib.closing(PostgresStorage(postgres_dsn)) as worker_side:
        assert worker_side.wait_for_work(0)  # connects and listens
        adder = PostgresStorage(postgres_dsn)
        adder.add(prepared_email(1), now=0.0)
        adder.close()
        assert worker_side.wait_for_work(2) is True


def test_adds_from_many_threads_share_notifications(postgres_dsn: str) -> None:
    """Adds committed while a notification is being sent are told by the next
    one: a burst of adds from several threads sends fewer notifications than
    it adds, but some."""
    threads, each = 4, 25
    with (
        contextlib.closing(PostgresStorage(postgres_dsn)) as storage,
        psycopg.connect(postgres_dsn, autocommit=True) as listener,
    ):
        listener.execute("LISTEN mailstrom_due")
        start = threading.Barrier(threads)

        def add(first: int) -> None:
            start.wait()
            for n in range(first, first + each):
                storage.add(prepared_email(n), now=0.0)

        adders = [
            threading.Thread(target=add, args=(k * each,)) for k in range(threads)
        ]
        for adder in adders:
            adder.start()
        for adder in adders:
            adder.join()
        told = list(listener.notifies(timeout=1))
    assert 1 <= len(told) < threads * each


def test_closing_the_storage_ends_a_wait_at_once(postgres_dsn: str) -> None:
    """A thread waiting for work returns False as soon as the storage is closed."""
    storage = PostgresStorage(postgres_dsn)
    waiter = Waiter(storage, timeout=30)
    closed_at = time.monotonic()
    storage.close()
    assert waiter.join() is False
    assert waiter.woke_at - closed_at < 2


def test_waiting_survives_a_restart_of_the_server(
    postgres_server: PgServer, storage: PostgresStorage
) -> None:
    """While the server is down a wait does not raise but waits out its time;
    once it is back the listener reconnects (True: look at storage) and
    notifications arrive again."""
    assert storage.wait_for_work(0)
    postgres_server.stop("fast")
    try:
        assert storage.wait_for_work(1) is True  # the connection was lost
        began = time.monotonic()
        assert storage.wait_for_work(0.5) is False  # cannot reconnect: waits
        assert time.monotonic() - began >= 0.4
    finally:
        postgres_server.start()
    assert storage.wait_for_work(5) is True  # listening again
    storage.add(prepared_email(1), now=0.0)
    assert storage.wait_for_work(5) is True


# -- settings -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "key"),
    [
        ({"clock": "worker"}, "clock"),
        ({"schema": "Mail-Queue"}, "schema"),
        ({"max_connections": 0}, "max_connections"),
        ({"min_connections": 5, "max_connections": 2}, "min_connections"),
        ({"connect_timeout": 0}, "connect_timeout"),
        ({"statement_timeout": float("inf")}, "statement_timeout"),
        ({"migration_timeout": 0}, "migration_timeout"),
        ({"retention": -1}, "retention"),
    ],
)
def test_bad_settings_raise_config_error_before_connecting(
    arguments: dict[str, Any], key: str
) -> None:
    """An argument out of range raises ConfigError naming it; nothing connects."""
    with pytest.raises(ConfigError) as caught:
        PostgresStorage("host=127.0.0.1 port=1 dbname=none", **arguments)
    assert key in str(caught.value)


def test_an_unreachable_server_raises_storage_error(postgres_server: PgServer) -> None:
    """A server that refuses the connection makes the constructor raise
    StorageError with the reason."""
    dsn = psycopg.conninfo.make_conninfo(postgres_server.dsn(), port=1)
    with pytest.raises(StorageError, match="connect"):
        PostgresStorage(dsn, connect_timeout=2)


def test_two_schemas_in_one_database_are_two_queues(postgres_dsn: str) -> None:
    """Each schema has its tables and its own channel of wake-ups."""
    with (
        contextlib.closing(PostgresStorage(postgres_dsn, schema="one")) as one,
        contextlib.closing(PostgresStorage(postgres_dsn, schema="two")) as two,
    ):
        assert two.wait_for_work(0)
        one.add(prepared_email(1), now=0.0)
        assert two.count(QueueFilter()) == 0
        assert two.wait_for_work(0.3) is False


def test_the_command_line_opens_postgres_from_its_settings(
    postgres_server: PgServer, postgres_database: str
) -> None:
    """[storage] postgres = "dsn" (with a password given apart) opens a
    PostgresStorage with the pool and timeouts the file sets."""
    settings = StorageSettings(
        postgres=postgres_server.dsn(postgres_database),
        password="unused: the test server trusts loopback",
        max_connections=3,
        statement_timeout=4.0,
        migration_timeout=60.0,
    )
    storage = open_storage(settings)
    try:
        assert isinstance(storage, PostgresStorage)
        storage.add(prepared_email(1), now=0.0)
        assert storage.count(QueueFilter()) == 1
    finally:
        storage.close()


def test_the_purge_command_removes_old_completed_mail(
    postgres_dsn: str, tmp_path: Path
) -> None:
    """``queue purge --older-than`` on the PostgreSQL queue of a configuration
    file removes the messages completed longer ago than asked, by the
    database's clock, and keeps the rest."""
    storage = PostgresStorage(postgres_dsn, clock="caller")
    now = time.time()
    for n, at in ((1, now - 3 * 3600), (2, now)):
        storage.add(prepared_email(n), at)
        [claim] = storage.claim_due(at, 10, 60.0)
        storage.record(
            claim,
            [
                dataclasses.replace(
                    r, result=DeliveryResult.DELIVERED, next_attempt_at=None
                )
                for r in claim.status.recipients
            ],
        )
    storage.add(prepared_email(3), now - 3 * 3600)
    storage.close()
    config = tmp_path / "mailstrom.toml"
    config.write_text(
        'helo_name = "app.example.test"\n[delivery]\nkind = "relay"\n'
        f'host = "127.0.0.1"\n[storage]\npostgres = "{postgres_dsn}"\n',
        encoding="utf-8",
    )
    done = run("queue", "purge", "--older-than", "1h", "--config", str(config))
    assert (done.returncode, done.stderr.decode().strip()) == (0, "purged 1 message")
    storage = PostgresStorage(postgres_dsn)
    left = sorted(s.message_id for s in storage.find(QueueFilter()))
    storage.close()
    assert left == ["m2@example.test", "m3@example.test"]
