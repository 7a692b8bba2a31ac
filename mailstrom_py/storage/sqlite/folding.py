"""Background writes that arrive close together, folded into one.

While one background write of a :class:`Fold` waits for the writer (callers'
writes go first), others from other threads join it rather than queueing for
the writer themselves: the first runs them all, each in a savepoint of its
own, in one transaction, and every thread returns once that transaction is
committed. One writer acquisition then carries several outcomes.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from typing import TypeVar, cast

from ..base import wrap_error
from .db import Database
from .turns import Latch

__all__ = ["Fold"]

T = TypeVar("T")

Work = Callable[[sqlite3.Connection], object]


class _Entry:
    """One thread's write in a batch, and what became of it."""

    def __init__(self, work: Work) -> None:
        self.work = work
        self.result: object = None
        self.error: BaseException | None = None


class _Batch:
    """Writes waiting for the writer together, and whether they are done."""

    def __init__(self) -> None:
        self.entries: list[_Entry] = []
        self.done = Latch()


class Fold:
    """Runs background writes of one kind, folding those that arrive while
    one waits for the writer into its transaction.

    Each write is committed (at ``synchronous``) before :meth:`run` returns, as
    if it were written alone; a write that fails undoes its own changes only,
    unless the commit itself fails, which fails every write of the batch.

    Args:
        db: the database written to.
        action: what the writes do, for error messages.
        synchronous: the level of their commits.
    """

    def __init__(self, db: Database, action: str, synchronous: str) -> None:
        self._db = db
        self._action = action
        self._synchronous = synchronous
        self._lock = threading.Lock()
        self._waiting: _Batch | None = None  # the batch open to joiners

    def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` on the writer connection in a background write, and
        return its result once committed.

        Raises:
            StorageError: SQLite failed running ``work``, or the commit failed;
                nothing of ``work`` was kept.
            Exception: whatever ``work`` raised; nothing of it was kept.
        """
        entry = _Entry(work)
        with self._lock:
            batch = self._waiting
            leads = batch is None
            if batch is None:
                batch = self._waiting = _Batch()
            batch.entries.append(entry)
        if leads:
            self._lead(batch)
        else:
            batch.done.wait()
        if entry.error is not None:
            raise entry.error
        return cast(T, entry.result)

    def _lead(self, batch: _Batch) -> None:
        """Take the writer for ``batch``, close it to joiners, and run it."""
        try:
            with self._db.writing(
                self._action, synchronous=self._synchronous, background=True
            ) as conn:
                entries = self._close(batch)
                if len(entries) == 1:
                    entries[0].result = entries[0].work(conn)
                else:
                    for entry in entries:
                        self._run_one(conn, entry)
        except BaseException as exc:  # noqa: BLE001 (handed to every thread)
            for entry in self._close(batch):
                if entry.error is None:
                    entry.error = exc
        finally:
            batch.done.set()

    def _close(self, batch: _Batch) -> list[_Entry]:
        """Let no more writes join ``batch``; return its writes."""
        with self._lock:
            if self._waiting is batch:
                self._waiting = None
            return list(batch.entries)

    def _run_one(self, conn: sqlite3.Connection, entry: _Entry) -> None:
        """Run one write of several in a savepoint, undoing it alone on error."""
        conn.execute("SAVEPOINT folded")
        try:
            entry.result = entry.work(conn)
        except Exception as exc:  # noqa: BLE001 (handed to its own thread)
            conn.execute("ROLLBACK TO folded")
            entry.error = (
                wrap_error(exc, self._action) if isinstance(exc, sqlite3.Error) else exc
            )
            if isinstance(exc, sqlite3.Error):
                entry.error.__cause__ = exc
        conn.execute("RELEASE folded")
