"""PostgresStorage when PostgreSQL misbehaves: restarted, a backend terminated in
the middle of a claim or a record, a backend that stops answering; and workers
in other processes killed mid-batch, or many at once. Everything runs against a
real server and, where said, real worker processes."""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest

psycopg = pytest.importorskip("psycopg")

from support.postgres import PgServer  # noqa: E402

from mailstrom_py import (  # noqa: E402
    Config,
    DeliveryResult,
    Outbox,
    PostgresStorage,
    QueueFilter,
    RelayConfig,
    StorageError,
)
from mailstrom_py.storage import Claim  # noqa: E402
from mailstrom_py.testing.emails import prepared_email  # noqa: E402

T = TypeVar("T")

CONFIG = Config(
    helo_name="app.example.test",
    delivery=RelayConfig(host="127.0.0.1", port=9, tls="none"),
)


@pytest.fixture
def storage(postgres_dsn: str) -> Iterator[PostgresStorage]:
    """One connection, so that its backend is the one a test disturbs."""
    backend = PostgresStorage(
        postgres_dsn, max_connections=1, connect_timeout=2, statement_timeout=1
    )
    yield backend
    backend.close()


def backend_of(server: PgServer, database: str, storage: PostgresStorage) -> int:
    """The PID of the one backend of ``storage``'s pool."""
    storage.count(QueueFilter())  # the connection is open and idle
    [pid] = [p for p in server.backend_pids(database) if p not in listeners(server)]
    return pid


def listeners(server: PgServer) -> set[int]:
    with server.admin() as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE query LIKE 'LISTEN%%'"
        ).fetchall()
    return {pid for (pid,) in rows}


@contextlib.contextmanager
def table_locked(dsn: str) -> Iterator[None]:
    """Hold an exclusive lock on the messages table, so that any statement on
    it waits (with its backend alive) until the block ends."""
    with psycopg.connect(dsn) as conn:
        conn.execute("LOCK TABLE mailstrom.messages IN ACCESS EXCLUSIVE MODE")
        yield
        conn.rollback()


def in_thread(call: Callable[[], T]) -> tuple[threading.Thread, list[Any]]:
    """Run ``call`` in a thread; the list gets its result or its exception."""
    result: list[Any] = []

    def run() -> None:
        try:
            result.append(call())
        except BaseException as exc:
            result.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, result


def waiting_backend(server: PgServer, dsn: str) -> int:
    """The PID of the backend waiting for the table lock."""
    deadline = time.monotonic() + 5
    with server.admin() as conn:
        while True:
            row = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            ).fetchone()
            if row is not None:
                return int(row[0])
            assert time.monotonic() < deadline, "no statement waits for the lock"
            time.sleep(0.02)


# -- the server goes away -------------------------------------------------------------


def test_sending_fails_while_postgresql_is_down_and_resumes_after(
    postgres_server: PgServer, postgres_dsn: str
) -> None:
    """While the server is down send_email() raises StorageError within the
    connect timeout; once it is back, sending works again without reopening
    anything, and every message acknowledged before, during or after is there."""
    outbox = Outbox(
        CONFIG, PostgresStorage(postgres_dsn, connect_timeout=1, statement_timeout=2)
    )
    message = b"From: a@example.test\r\nTo: b@example.test\r\n\r\nhi\r\n"
    acknowledged = [outbox.send_email(message) for _ in range(3)]
    postgres_server.stop("immediate")  # a crash: no shutdown checkpoint
    try:
        began = time.monotonic()
        with pytest.raises(StorageError):
            outbox.send_email(message)
        assert time.monotonic() - began < 4
    finally:
        postgres_server.start()
    deadline = time.monotonic() + 20
    while len(acknowledged) < 6:
        try:
            acknowledged.append(outbox.send_email(message))
        except StorageError:
            assert time.monotonic() < deadline, "sending did not resume"
            time.sleep(0.1)
    stored = {s.message_id for s in outbox.list_messages()}
    outbox.close()
    assert set(acknowledged) <= stored


def test_a_restart_mid_run_loses_no_acknowledged_message(
    postgres_server: PgServer, postgres_dsn: str
) -> None:
    """Producers keep sending and a worker keeps claiming and recording while
    the server crashes and restarts: calls fail meanwhile, but every message
    whose send_email() returned is stored, and each is delivered."""
    producer = PostgresStorage(postgres_dsn, connect_timeout=1, statement_timeout=2)
    worker = PostgresStorage(postgres_dsn, connect_timeout=1, statement_timeout=2)
    acknowledged: list[str] = []
    failures: list[str] = []
    stop = threading.Event()

    def produce() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            try:
                producer.add(prepared_email(n), now=time.time())
                acknowledged.append(f"m{n}@example.test")
            except StorageError:
                failures.append("add")
                time.sleep(0.05)

    def work() -> None:
        while not stop.is_set() or worker.next_due() is not None:
            try:
                claims = worker.claim_due(time.time(), 8, 2.0)
                worker.record_many([(c, delivered(c)) for c in claims])
            except StorageError:
                failures.append("claim or record")
                time.sleep(0.05)
                continue
            if not claims:
                time.sleep(0.02)
                if stop.is_set() and worker.next_due() is not None:
                    time.sleep(0.5)  # a lost record's lease must end first

    threads = [threading.Thread(target=produce), threading.Thread(target=work)]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 30
        while len(acknowledged) <= 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        # Down for a second: every call meanwhile fails, however quick the
        # machine or the pool's retry on a new connection.
        postgres_server.stop("immediate")
        time.sleep(1.0)
        postgres_server.start()
        before = len(acknowledged)
        while len(acknowledged) <= before + 20 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        postgres_server.start()
        for t in threads:
            t.join(60)
    stored = {s.message_id: s for s in worker.find(QueueFilter())}
    producer.close()
    worker.close()
    assert failures, "the restart went unnoticed: the test proves nothing"
    assert len(acknowledged) > 40  # before the crash and after the restart
    assert set(acknowledged) <= set(stored)
    assert all(stored[m].succeeded for m in acknowledged)


def delivered(claim: Claim) -> list[Any]:
    return [
        dataclasses.replace(r, result=DeliveryResult.DELIVERED, next_attempt_at=None)
        for r in claim.status.recipients
    ]


# -- a backend ends ------------------------------------------------------------------


def test_a_backend_terminated_during_a_claim_costs_nothing(
    postgres_server: PgServer,
    postgres_database: str,
    postgres_dsn: str,
    storage: PostgresStorage,
) -> None:
    """pg_terminate_backend on the session running a claim: the claim is made
    again on a new connection and returns every due message, each once."""
    storage.add_many([prepared_email(n) for n in range(5)], now=0.0)
    backend_of(postgres_server, postgres_database, storage)
    with table_locked(postgres_dsn):
        thread, result = in_thread(lambda: storage.claim_due(time.time(), 10, 60.0))
        pid = waiting_backend(postgres_server, postgres_dsn)
        assert postgres_server.terminate_backend(pid)
        time.sleep(0.2)
    thread.join(10)
    [claims] = result
    assert sorted(c.message_id for c in claims) == [
        f"m{n}@example.test" for n in range(5)
    ]
    assert postgres_server.backend_pids(postgres_database) != [pid]
    assert storage.claim_due(time.time(), 10, 60.0) == []


def test_a_backend_terminated_during_a_record_records_once(
    postgres_server: PgServer,
    postgres_database: str,
    postgres_dsn: str,
    storage: PostgresStorage,
) -> None:
    """pg_terminate_backend on the session recording an outcome, before its
    commit: the transaction left nothing, runs again on a new connection, and
    the outcome is recorded once; the claim is then ended."""
    storage.add(prepared_email(1), now=0.0)
    [claim] = storage.claim_due(time.time(), 10, 60.0)
    with table_locked(postgres_dsn):
        thread, result = in_thread(lambda: storage.record(claim, delivered(claim)))
        pid = waiting_backend(postgres_server, postgres_dsn)
        assert postgres_server.terminate_backend(pid)
        time.sleep(0.2)
    thread.join(10)
    [status] = result
    assert status is not None and status.succeeded
    assert storage.status(claim.message_id) == status
    assert storage.record(claim, delivered(claim)) is None  # the claim ended


def test_a_frozen_backend_becomes_a_storage_error_not_a_hung_call(
    postgres_server: PgServer,
    postgres_database: str,
    storage: PostgresStorage,
) -> None:
    """A backend stopped with SIGSTOP answers nothing, and its own statement
    timeout cannot fire: status(), claim_due() and record() each raise
    StorageError a second after the statement timeout, and the storage goes on
    on a new connection. The frozen claim may still be made when the backend
    resumes (it had the statement): its message comes back when its lease
    ends; the frozen record's transaction never commits."""
    storage.add(prepared_email(1), now=0.0)
    calls: list[tuple[str, Callable[[], object]]] = [
        ("status", lambda: storage.status("m1@example.test")),
        ("claim", lambda: storage.claim_due(time.time(), 10, 1.0)),
    ]
    for name, call in calls:
        pid = backend_of(postgres_server, postgres_database, storage)
        with postgres_server.paused(pid):
            began = time.monotonic()
            with pytest.raises(StorageError):
                call()
            took = time.monotonic() - began
        assert 1.9 <= took < 4, f"{name} took {took:.1f} s"
    time.sleep(1.1)  # the lease of the claim made on resuming, if it was
    [claim] = storage.claim_due(time.time(), 10, 60.0)
    pid = backend_of(postgres_server, postgres_database, storage)
    with postgres_server.paused(pid), pytest.raises(StorageError):
        storage.record(claim, delivered(claim))
    time.sleep(0.2)
    status = storage.status("m1@example.test")
    assert status == claim.status  # not recorded: claimed, as before
    assert storage.record(claim, delivered(claim)) is not None  # the claim lives
