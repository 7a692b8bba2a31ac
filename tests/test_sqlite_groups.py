"""Group commit: SQLite writes that queue up behind each other share one commit."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from support.walfile import commits_in_wal

from mailstrom_py import DuplicateMessageError, QueueFilter, SqliteStorage, StorageError
from mailstrom_py.storage.sqlite.db import Database
from mailstrom_py.testing import prepared_email


@pytest.fixture
def database(tmp_path: Path) -> Database:
    return Database(str(tmp_path / "outbox.db"), "FULL", 5.0, create=True)


def rows(database: Database) -> list[str]:
    with database.reading("read") as conn:
        found = conn.execute("SELECT key FROM meta WHERE key LIKE 'test-%'")
        return sorted(key for (key,) in found)


def insert(key: str, then: Callable[[], None] = lambda: None) -> Callable[..., None]:
    def body(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO meta (key, value) VALUES (?, 0)", (key,))
        then()

    return body


def write(database: Database, body: Callable[[sqlite3.Connection], None]) -> None:
    with database.writing("test write") as conn:
        body(conn)


def queued_behind(database: Database, count: int) -> None:
    """Wait until ``count`` writers wait for the one writing now."""
    deadline = time.monotonic() + 10
    while database.queued < count:  # the only view of the writer's queue
        assert time.monotonic() < deadline, "the writers never queued up"
        time.sleep(0.001)


class TestGroupCommit:
    def test_writers_queued_behind_one_share_its_commit(
        self, database: Database
    ) -> None:
        """Three writes, two of them queued while the first runs: one commit."""
        inside, go = threading.Event(), threading.Event()
        first = threading.Thread(
            target=write,
            args=(database, insert("test-1", lambda: (inside.set(), go.wait(10)))),
        )
        first.start()
        inside.wait(10)
        start = commits_in_wal(Path(database.path))
        others = [
            threading.Thread(target=write, args=(database, insert(f"test-{n}")))
            for n in (2, 3)
        ]
        for t in others:
            t.start()
        queued_behind(database, 2)
        go.set()
        for t in (first, *others):
            t.join(10)
        assert rows(database) == ["test-1", "test-2", "test-3"]
        assert commits_in_wal(Path(database.path)) == start + 1
        database.close()

    def test_a_failing_write_undoes_only_itself(self, database: Database) -> None:
        """A body that raises loses its own writes and raises; the writes it
        shared a transaction with are committed."""
        inside, go = threading.Event(), threading.Event()
        errors: list[BaseException] = []

        def failing(conn: sqlite3.Connection) -> None:
            insert("test-bad")(conn)
            raise ValueError("refused")

        def catch(body: Callable[[sqlite3.Connection], None]) -> None:
            try:
                write(database, body)
            except ValueError as exc:
                errors.append(exc)

        first = threading.Thread(
            target=catch,
            args=(insert("test-1", lambda: (inside.set(), go.wait(10))),),
        )
        first.start()
        inside.wait(10)
        others = [
            threading.Thread(target=catch, args=(failing,)),
            threading.Thread(target=catch, args=(insert("test-2"),)),
        ]
        for t in others:
            t.start()
        queued_behind(database, 2)
        go.set()
        for t in (first, *others):
            t.join(10)
        assert [str(e) for e in errors] == ["refused"]
        assert rows(database) == ["test-1", "test-2"]
        database.close()

    def test_a_write_returns_only_once_committed(self, database: Database) -> None:
        """A write that left the transaction open for the next writer returns
        when that writer has committed, not before."""
        inside, go = threading.Event(), threading.Event()
        returned: list[str] = []
        seen_by_first: list[list[str]] = []

        def first_write() -> None:
            write(database, insert("test-1", lambda: (inside.set(), go.wait(10))))
            seen_by_first.append(rows(database))  # a reader sees committed data only
            returned.append("first")

        first = threading.Thread(target=first_write)
        first.start()
        inside.wait(10)
        second = threading.Thread(target=write, args=(database, insert("test-2")))
        second.start()
        queued_behind(database, 1)
        go.set()
        first.join(10)
        second.join(10)
        assert returned == ["first"]
        assert seen_by_first == [["test-1", "test-2"]]
        database.close()


class TestConcurrentSenders:
    def test_many_threads_adding_at_once_commit_in_groups(self, tmp_path: Path) -> None:
        """H11 at FULL: 8 threads x 40 adds, every one stored once, in fewer
        commits than adds; a duplicate id among them is refused alone."""
        db = tmp_path / "outbox.db"
        storage = SqliteStorage(db)
        # A reader's snapshot keeps the log from being checkpointed and
        # restarted, so that every commit stays countable in it.
        pin = sqlite3.connect(db)
        pin.execute("BEGIN")
        pin.execute("SELECT count(*) FROM messages").fetchall()
        start = commits_in_wal(db)
        duplicates: list[str] = []

        def add(k: int) -> None:
            for n in range(40):
                storage.add(prepared_email(k * 1000 + n), now=0.0)
            try:
                storage.add(prepared_email(0), now=0.0)  # thread 0's first id
            except DuplicateMessageError as exc:
                duplicates.append(str(exc))

        threads = [threading.Thread(target=add, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert storage.count(QueueFilter()) == 320
        assert len(duplicates) == 8
        commits = commits_in_wal(db) - start
        pin.close()
        assert commits < 320
        storage.close()


def background(database: Database, body: Callable[[sqlite3.Connection], None]) -> None:
    with database.writing(
        "test bookkeeping", synchronous="NORMAL", background=True
    ) as c:
        body(c)


class TestCallersFirst:
    def test_a_caller_waiting_goes_before_background_work(
        self, database: Database
    ) -> None:
        """Bookkeeping queued behind other bookkeeping lets a caller's write that
        came later go first."""
        order: list[str] = []
        inside, go = threading.Event(), threading.Event()

        def noting(
            name: str, then: Callable[[], None] = lambda: None
        ) -> Callable[..., None]:
            return insert(f"test-{name}", lambda: (order.append(name), then()))

        first = threading.Thread(
            target=background,
            args=(database, noting("bg1", lambda: (inside.set(), go.wait(10)))),
        )
        first.start()
        inside.wait(10)
        later = threading.Thread(target=background, args=(database, noting("bg2")))
        later.start()
        queued_behind(database, 1)
        caller = threading.Thread(target=write, args=(database, noting("caller")))
        caller.start()
        queued_behind(database, 2)
        go.set()
        for t in (first, later, caller):
            t.join(10)
        assert order == ["bg1", "caller", "bg2"]
        assert rows(database) == ["test-bg1", "test-bg2", "test-caller"]
        database.close()

    def test_a_caller_does_not_wait_for_background_work_queued_behind_it(
        self, database: Database
    ) -> None:
        """A caller's write commits at once rather than carry the bookkeeping
        queued behind it into its commit."""
        inside, go, caller_done = (
            threading.Event(),
            threading.Event(),
            threading.Event(),
        )

        def caller_write() -> None:
            write(database, insert("test-caller", lambda: (inside.set(), go.wait(10))))
            caller_done.set()

        caller = threading.Thread(target=caller_write)
        caller.start()
        inside.wait(10)
        bookkeeping = threading.Thread(
            target=background,
            args=(database, insert("test-bg", lambda: caller_done.wait(10))),
        )
        bookkeeping.start()
        queued_behind(database, 1)
        go.set()
        assert caller_done.wait(5), "the caller waited for the bookkeeping"
        bookkeeping.join(10)
        assert rows(database) == ["test-bg", "test-caller"]
        database.close()

    def test_bookkeeping_commits_itself_before_a_stricter_caller(
        self, database: Database
    ) -> None:
        """Bookkeeping at NORMAL that a caller's FULL write queues behind
        commits on its own thread: the caller, who cannot share a transaction
        begun at NORMAL, does not carry that commit on its path; both writes
        are committed, each in a commit of its own."""
        committed_by: list[str] = []
        conn = database._writer._conn
        assert conn is not None
        conn.set_trace_callback(
            lambda sql: (
                committed_by.append(threading.current_thread().name)
                if sql == "COMMIT"
                else None
            )
        )
        inside, go = threading.Event(), threading.Event()
        bookkeeping = threading.Thread(
            target=background,
            args=(database, insert("test-bg", lambda: (inside.set(), go.wait(10)))),
            name="bookkeeping",
        )
        bookkeeping.start()
        inside.wait(10)
        caller = threading.Thread(
            target=write, args=(database, insert("test-caller")), name="caller"
        )
        caller.start()
        queued_behind(database, 1)
        go.set()
        for t in (bookkeeping, caller):
            t.join(10)
        conn.set_trace_callback(None)
        assert committed_by == ["bookkeeping", "caller"]
        assert rows(database) == ["test-bg", "test-caller"]
        database.close()


class TestFailedGroupCommit:
    def test_every_writer_of_a_failed_commit_raises_and_nothing_is_kept(
        self, database: Database
    ) -> None:
        """When the shared COMMIT fails, each write that shared it raises
        StorageError and none of them is kept, whichever write caused it."""
        # A deferred foreign key is checked at COMMIT: a way to make one fail.
        database._writer._conn.execute("PRAGMA foreign_keys = ON")  # type: ignore[union-attr]
        write(database, lambda c: c.execute("CREATE TABLE parent (id PRIMARY KEY)"))
        write(
            database,
            lambda c: c.execute(
                "CREATE TABLE child (parent REFERENCES parent (id)"
                " DEFERRABLE INITIALLY DEFERRED)"
            ),
        )
        inside, go = threading.Event(), threading.Event()
        errors: list[str] = []

        def catch(body: Callable[[sqlite3.Connection], None]) -> None:
            try:
                write(database, body)
            except StorageError as exc:
                errors.append(str(exc))

        def orphan(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO child (parent) VALUES (42)")
            inside.set()
            go.wait(10)

        first = threading.Thread(target=catch, args=(orphan,))
        first.start()
        inside.wait(10)
        second = threading.Thread(target=catch, args=(insert("test-innocent"),))
        second.start()
        queued_behind(database, 1)
        go.set()
        first.join(10)
        second.join(10)
        assert len(errors) == 2
        assert all("FOREIGN KEY" in e for e in errors), errors
        assert rows(database) == []
        write(database, insert("test-after"))  # the writer is usable again
        assert rows(database) == ["test-after"]
        database.close()
