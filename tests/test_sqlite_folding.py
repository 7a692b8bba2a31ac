"""Folded background writes: those that arrive while one waits for the writer
ride in its transaction, each still committed before it returns and each
failing alone."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from support.walfile import commits_in_wal

from mailstrom_py import StorageError
from mailstrom_py.storage.sqlite.db import Database
from mailstrom_py.storage.sqlite.folding import Fold


@pytest.fixture
def database(tmp_path: Path) -> Database:
    return Database(str(tmp_path / "outbox.db"), "FULL", 5.0, create=True)


def keys(database: Database) -> list[str]:
    with database.reading("read") as conn:
        found = conn.execute("SELECT key FROM meta WHERE key LIKE 'test-%'")
        return sorted(key for (key,) in found)


def insert(key: str, fail: Exception | None = None) -> Callable[..., str]:
    def work(conn: sqlite3.Connection) -> str:
        conn.execute("INSERT INTO meta (key, value) VALUES (?, 0)", (key,))
        if fail is not None:
            raise fail
        return key

    return work


def wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "never happened"
        time.sleep(0.001)


def folded(
    database: Database, works: list[Callable[..., str]]
) -> tuple[list[object], int]:
    """Run ``works`` through one Fold while a caller's write holds the writer,
    so that all arrive while the first waits; return what each thread got
    (its result or its exception) and the commits made after the caller's."""
    fold = Fold(database, "test fold", "NORMAL")
    got: list[object] = [None] * len(works)

    def run(index: int) -> None:
        try:
            got[index] = fold.run(works[index])
        except Exception as exc:
            got[index] = exc

    inside, go = threading.Event(), threading.Event()

    def caller() -> None:
        with database.writing("caller") as conn:
            conn.execute("INSERT INTO meta (key, value) VALUES ('test-caller', 0)")
            inside.set()
            go.wait(10)

    holder = threading.Thread(target=caller)
    holder.start()
    inside.wait(10)
    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(works))]
    threads[0].start()
    wait_for(lambda: database.queued == 1)  # the first waits for the writer
    for t in threads[1:]:
        t.start()
    batch = fold._waiting  # the only view of who joined
    wait_for(lambda: batch is not None and len(batch.entries) == len(works))
    start = commits_in_wal(Path(database.path))
    go.set()
    for t in (holder, *threads):
        t.join(10)
    return got, commits_in_wal(Path(database.path)) - start - 1


class TestFold:
    def test_writes_arriving_while_one_waits_share_its_transaction(
        self, database: Database
    ) -> None:
        """Three writes, two arriving while the first waits for the writer:
        one commit carries all three, and each thread gets its own result."""
        got, commits = folded(database, [insert(f"test-{n}") for n in (1, 2, 3)])
        assert got == ["test-1", "test-2", "test-3"]
        assert commits == 1
        assert keys(database) == ["test-1", "test-2", "test-3", "test-caller"]
        database.close()

    def test_a_failing_write_undoes_only_itself(self, database: Database) -> None:
        """A folded write that raises loses its own changes and its thread gets
        the exception; the others are committed."""
        boom = ValueError("boom")
        got, _ = folded(
            database, [insert("test-1"), insert("test-2", boom), insert("test-3")]
        )
        assert got == ["test-1", boom, "test-3"]
        assert keys(database) == ["test-1", "test-3", "test-caller"]
        database.close()

    def test_an_sqlite_error_is_a_storage_error_of_that_write_alone(
        self, database: Database
    ) -> None:
        """An SQLite failure in a folded write raises StorageError, chained to
        it, in that write's thread only."""
        got, _ = folded(database, [insert("test-1"), insert("test-1"), insert("t")])
        assert got[0] == "test-1" and got[2] == "t"
        assert isinstance(got[1], StorageError)
        assert isinstance(got[1].__cause__, sqlite3.IntegrityError)
        assert keys(database) == ["test-1", "test-caller"]
        database.close()

    def test_a_lone_write_is_committed_before_it_returns(
        self, database: Database
    ) -> None:
        """Without company a write runs alone and is committed on return."""
        fold = Fold(database, "test fold", "NORMAL")
        assert fold.run(insert("test-1")) == "test-1"
        assert keys(database) == ["test-1"]
        with pytest.raises(StorageError):
            fold.run(insert("test-1"))
        assert keys(database) == ["test-1"]
        database.close()
