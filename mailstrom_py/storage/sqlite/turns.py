"""Turns on the writer connection of one SQLite file, and group commit.

:class:`Writer` lets one write at a time use the writer connection, behind a
lock. Writes that queue up behind one another share a transaction and its
commit (one disk sync for the group, at the strictest level among them); one
that joins another's transaction runs in a savepoint of its own, so that an
exception undoes its own writes alone. Background writes (the worker's
bookkeeping) let callers' writes waiting for the writer go first, for a while.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from types import TracebackType

from ...errors import StorageError
from ..base import wrap_error

__all__ = ["Latch", "WriteTurn", "Writer", "rollback"]

log = logging.getLogger(__name__)

# The most writes one transaction carries before it commits, so that a steady
# stream of writers still sees its writes committed promptly.
_MAX_GROUP = 16

_STRICTNESS = {"NORMAL": 0, "FULL": 1}

# The longest a background write lets callers' writes go before it, in seconds.
_POLITE_FOR = 0.05


class Latch:
    """A one-shot signal: :meth:`wait` returns once :meth:`set` was called.

    A bare lock, held until set, so that the many short-lived signals of the
    write path cost less than a :class:`threading.Event` each."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()

    def set(self) -> None:
        """Release every waiter, present and future; call it once."""
        self._lock.release()

    def wait(self) -> None:
        """Return once :meth:`set` was called."""
        with self._lock:
            pass


class _Group:
    """Writes sharing one transaction, and what became of its commit.

    ``committed`` exists only once a member left the transaction open for
    others (and so has to wait for their commit); a write that commits its
    own transaction never needs it."""

    __slots__ = ("committed", "error", "level", "members", "waited_for")

    def __init__(self, level: str) -> None:
        self.level = level
        self.members = 0
        self.waited_for = False  # a caller (not background work) is a member
        self.committed: Latch | None = None
        self.error: sqlite3.Error | None = None

    def done(self, error: sqlite3.Error | None) -> None:
        """Record the outcome of the commit and wake the members waiting."""
        self.error = error
        if self.committed is not None:
            self.committed.set()


class Writer:
    """The writer connection of one file, used by one write at a time.

    Args:
        conn: the writer connection, open in autocommit mode, at ``synchronous``.
        synchronous: the level of a write that does not ask for another.
        path: the file, for messages.
    """

    def __init__(self, conn: sqlite3.Connection, synchronous: str, path: str) -> None:
        self._conn: sqlite3.Connection | None = conn
        self._synchronous = synchronous
        self._level = synchronous  # the connection's level now, under _lock
        self._path = path
        self._lock = threading.Lock()
        self._queue = threading.Condition(threading.Lock())
        self._queued = 0  # threads waiting for _lock, under _queue
        self._urgent = 0  # of them, those not in the background
        self._group: _Group | None = None  # the open transaction, under _lock

    @property
    def queued(self) -> int:
        """How many writes wait for the writer now."""
        return self._queued

    def turn(self, action: str, synchronous: str | None, background: bool) -> WriteTurn:
        """One write, as a context manager: see :class:`WriteTurn`."""
        return WriteTurn(self, action, synchronous or self._synchronous, background)

    def close(self) -> sqlite3.Connection | None:
        """Commit the open transaction, if any, and take the connection out of
        use; return it (None: closed already). Later writes raise."""
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None and self._group is not None:
                self._commit(conn, self._group)
        return conn

    def begin(
        self, action: str, level: str, background: bool
    ) -> tuple[sqlite3.Connection, _Group, bool]:
        """Take the writer, and begin a transaction or join the open one in a
        savepoint of its own (then the flag returned is true). On failure the
        writer is free again."""
        if background:
            self._take_politely()
        else:
            self._acquire(urgent=True)
        try:
            conn = self._conn
            if conn is None:
                raise StorageError(f"cannot {action}: the storage is closed")
            group = self._group
            if group is not None and _STRICTNESS[level] > _STRICTNESS[group.level]:
                # SQLite fixes a transaction's sync level when it begins.
                self._commit(conn, group)
                group = None
            if group is None:
                group = self._open_group(conn, level)
            joined = group.members > 0
            group.members += 1
            group.waited_for |= not background
            if joined:
                try:
                    conn.execute("SAVEPOINT write")
                except sqlite3.Error as exc:
                    self._fail(conn, group, exc)
                    raise
        except sqlite3.Error as exc:
            self._lock.release()
            raise wrap_error(exc, action) from exc
        except BaseException:
            self._lock.release()
            raise
        return conn, group, joined

    def _open_group(self, conn: sqlite3.Connection, level: str) -> _Group:
        if level != self._level:
            # The level stays set until a write needs another, so a run of
            # background writes sets it once.
            conn.execute(f"PRAGMA synchronous = {level}")
            self._level = level
        conn.execute("BEGIN IMMEDIATE")
        group = self._group = _Group(level)
        return group

    def _take_politely(self) -> None:
        """Acquire the writer for background work, letting callers' writes
        waiting for it go first, for a while: a steady stream of them must not
        stop deliveries from being recorded."""
        if not self._urgent and self._lock.acquire(blocking=False):
            return
        deadline = time.monotonic() + _POLITE_FOR
        while True:
            with self._queue:
                while self._urgent and (left := deadline - time.monotonic()) > 0:
                    self._queue.wait(left)
            callers_wait = self._acquire(urgent=False)
            if not callers_wait or time.monotonic() >= deadline:
                return
            self._lock.release()

    def _acquire(self, *, urgent: bool) -> bool:
        """Acquire the writer, counted among the queued (and the urgent) while
        waiting for it; return whether callers' writes are waiting for it now."""
        if self._lock.acquire(blocking=False):
            return self._urgent > 0  # it never waited, so it was never counted
        with self._queue:
            self._queued += 1
            self._urgent += urgent
        try:
            self._lock.acquire()
        finally:
            with self._queue:
                self._queued -= 1
                self._urgent -= urgent
                if urgent and not self._urgent:
                    self._queue.notify_all()
                callers_wait = self._urgent > 0
        return callers_wait

    def end(
        self, conn: sqlite3.Connection, group: _Group, *, joined: bool, failed: bool
    ) -> Latch | None:
        """Close this write's savepoint, if it joined, then leave the transaction
        open for a writer queued behind, or commit it; the writer is free again
        after. Returns what to wait on for the commit (None: it is done)."""
        try:
            if failed and not joined:
                # The first write of a transaction is alone in it: undo it all.
                self._fail(conn, group, None)
                return None
            try:
                if joined:
                    if failed:
                        conn.execute("ROLLBACK TO write")
                    conn.execute("RELEASE write")
            except sqlite3.Error as exc:
                # Some errors roll the whole transaction back, savepoints and all.
                self._fail(conn, group, exc)
                return None
            if self._leave_open(group):
                if group.committed is None:
                    group.committed = Latch()
                return group.committed
            self._commit(conn, group)
            return None
        finally:
            self._lock.release()

    def _leave_open(self, group: _Group) -> bool:
        """Whether ``group``'s transaction should stay open for the writes
        waiting for the writer now, to share its commit."""
        if group.members >= _MAX_GROUP:
            return False
        if group.waited_for:
            # A caller's write waits for background work only to share its
            # disk sync with other callers, not to carry the bookkeeping.
            return self._urgent > 0
        if self._urgent:
            # A caller's write at a stricter level would only commit it first;
            # committed now, that commit is off the caller's path.
            return _STRICTNESS[self._synchronous] <= _STRICTNESS[group.level]
        return self._queued > 0

    def _commit(self, conn: sqlite3.Connection, group: _Group) -> None:
        """Commit ``group``'s transaction and wake its writers; never raises."""
        self._group = None
        error = None
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            rollback(conn)
            self._overwrite_failed_commit(conn)
            error = exc
        finally:
            group.done(error)

    def _fail(
        self, conn: sqlite3.Connection, group: _Group, exc: sqlite3.Error | None
    ) -> None:
        """Roll ``group``'s transaction back and wake its writers with ``exc``
        (None: it held only the write that failed, and nobody waits)."""
        self._group = None
        rollback(conn)
        group.done(exc)

    def _overwrite_failed_commit(self, conn: sqlite3.Connection) -> None:
        # A COMMIT that failed after writing its frames to the WAL file (an
        # fsync error, say) leaves them there, valid, past the end SQLite knows
        # of: a crash now would let recovery bring the transaction back, and a
        # message whose add() raised would be delivered after all. The next
        # transaction is written over those frames, which invalidates them, so
        # write a harmless one at once. Even if its own fsync fails, it is what
        # recovery would find.
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("UPDATE meta SET value = value + 1 WHERE key = 'generation'")
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            rollback(conn)
            log.error(
                "a write to %s failed, and so did the repair: %s", self._path, exc
            )


class WriteTurn:
    """One write on the writer connection: ``with`` gives the connection, in
    a transaction of its own or in a savepoint of a transaction it joined;
    leaving the block returns once that transaction is committed.

    Raises (on leaving the block):
        StorageError: SQLite failed in the body (nothing of it was kept), or the
            commit of the group failed (nothing of any of its writes was kept).
        Exception: whatever the body raised; nothing of the body was kept.
    """

    __slots__ = (
        "_action",
        "_background",
        "_conn",
        "_group",
        "_joined",
        "_level",
        "_writer",
    )

    def __init__(
        self, writer: Writer, action: str, level: str, background: bool
    ) -> None:
        self._writer = writer
        self._action = action
        self._level = level
        self._background = background

    def __enter__(self) -> sqlite3.Connection:
        self._conn, self._group, self._joined = self._writer.begin(
            self._action, self._level, self._background
        )
        return self._conn

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        group = self._group
        latch = self._writer.end(
            self._conn, group, joined=self._joined, failed=exc is not None
        )
        if isinstance(exc, sqlite3.Error):
            raise wrap_error(exc, self._action) from exc
        if exc is not None:
            return  # propagates unchanged
        if latch is not None:
            latch.wait()
        if group.error is not None:
            raise wrap_error(group.error, self._action) from group.error


def rollback(conn: sqlite3.Connection) -> None:
    """Roll back the open transaction of ``conn``, if any; never raises."""
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # the failure being reported matters more
