"""The connections to one SQLite file, and the transactions run on them.

:class:`Database` opens the file (creating it with mode 0600, switching it to WAL,
migrating its schema), serialises writes on one connection behind a lock, and
lends read-only connections from a pool. Every ``sqlite3`` or file-system error
leaves as a :class:`~mailstrom_py.errors.StorageError` chained to its cause.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator

from ...errors import StorageError
from ..base import wrap_error
from .schema import migrate

__all__ = ["Database", "Latch"]

log = logging.getLogger(__name__)

# Idle reader connections kept for reuse; more may be open while busy.
_IDLE_READERS = 8

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
    """Writes sharing one transaction, and what became of its commit."""

    def __init__(self, level: str) -> None:
        self.level = level
        self.members = 0
        self.waited_for = False  # a caller (not background work) is a member
        self.committed = Latch()
        self.error: sqlite3.Error | None = None


class Database:
    """One SQLite file in WAL mode: a writer connection and a pool of readers.

    Args:
        path: the database file.
        synchronous: ``"FULL"`` or ``"NORMAL"``, for every connection.
        busy_timeout: seconds to wait for another process's lock.
        create: create the file (mode 0600) when it is missing.

    Raises:
        StorageError: the file cannot be created, opened, migrated or written.
    """

    def __init__(
        self, path: str, synchronous: str, busy_timeout: float, *, create: bool
    ) -> None:
        self.path = path
        self._synchronous = synchronous
        self._level = synchronous  # the writer's level now, under _write_lock
        self._busy_timeout = busy_timeout
        self._write_lock = threading.Lock()
        self._queue = threading.Condition(threading.Lock())
        self._queued = 0  # threads waiting for _write_lock, under _queue
        self._urgent = 0  # of them, those not in the background
        self._group: _Group | None = None  # the open transaction, under _write_lock
        self._pool_lock = threading.Lock()
        self._idle: list[sqlite3.Connection] = []
        self._closed = False
        self._writer: sqlite3.Connection | None = self._open(create)

    @contextlib.contextmanager
    def writing(
        self, action: str, *, synchronous: str | None = None, background: bool = False
    ) -> Iterator[sqlite3.Connection]:
        """Run the body as a write, and return once that write is committed.

        Writes of this instance wait for each other on a lock, never on SQLite,
        so only another process can make them wait (up to the busy timeout).
        Writes that queue up behind one another share a transaction and its
        commit (group commit: one disk sync for the group, at the strictest
        level among them); a body that joins another's transaction runs in a
        savepoint of its own, so an exception from any body undoes that body's
        writes alone and propagates.
        ``synchronous`` sets the level of the commit for this write. A
        ``background`` write (the worker's bookkeeping) lets the others (a
        caller's ``send_email()``, waiting for it) go first.

        Raises:
            StorageError: SQLite failed while doing ``action``, or the commit of
                the group failed; nothing of this write was kept.
        """
        level = synchronous or self._synchronous
        conn, group, joined = self._begin_turn(action, level, background)
        try:
            yield conn
        except BaseException as exc:
            self._end_turn(conn, group, joined=joined, failed=True)
            if isinstance(exc, sqlite3.Error):
                raise wrap_error(exc, action) from exc
            raise
        self._end_turn(conn, group, joined=joined, failed=False)
        group.committed.wait()
        if group.error is not None:
            raise wrap_error(group.error, action) from group.error

    @contextlib.contextmanager
    def reading(self, action: str) -> Iterator[sqlite3.Connection]:
        """Run the body in a read transaction on a pooled read-only connection.

        Every statement of the body sees the same snapshot; in WAL mode it never
        waits for a writer.

        Raises:
            StorageError: SQLite failed while doing ``action``.
        """
        conn = self._borrow(action)
        try:
            conn.execute("BEGIN")
            yield conn
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            _rollback(conn)
            raise wrap_error(exc, action) from exc
        except BaseException:
            _rollback(conn)
            raise
        finally:
            self._give_back(conn)

    def close(self) -> None:
        """Close every connection; later transactions raise. Idempotent."""
        with self._write_lock:
            writer, self._writer = self._writer, None
            if writer is not None and self._group is not None:
                self._commit(writer, self._group)
        with self._pool_lock:
            self._closed = True
            idle, self._idle = self._idle, []
        # The writer goes last: closing the last connection checkpoints the WAL.
        for conn in [*idle, *([writer] if writer is not None else [])]:
            try:
                conn.close()
            except sqlite3.Error as exc:
                log.warning("closing %s failed: %s", self.path, exc)

    # -- opening --------------------------------------------------------------------

    def _open(self, create: bool) -> sqlite3.Connection:
        self._create_file(create)
        try:
            conn = self._connect()
        except sqlite3.Error as exc:
            raise wrap_error(exc, f"open {self.path}") from exc
        try:
            [(mode,)] = conn.execute("PRAGMA journal_mode = WAL").fetchall()
            if str(mode).lower() != "wal":
                raise StorageError(
                    f"{self.path}: cannot use write-ahead logging (the journal"
                    f" mode stays {mode!r}); is the file read-only?"
                )
            # Opening always writes, so that a read-only file or directory or a
            # full disk shows here rather than at the first send_email().
            conn.execute("BEGIN IMMEDIATE")
            migrate(conn, self.path)
            conn.execute("UPDATE meta SET value = value + 1 WHERE key = 'generation'")
            conn.execute("COMMIT")
        except BaseException as exc:
            _rollback(conn)
            conn.close()
            if isinstance(exc, sqlite3.Error):
                raise wrap_error(exc, f"open {self.path}") from exc
            raise
        return conn

    def _create_file(self, create: bool) -> None:
        if os.path.exists(self.path):
            return
        if not create:
            raise StorageError(f"there is no database at {self.path}")
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return  # another process created it first
        except OSError as exc:
            raise wrap_error(exc, f"create {self.path}") from exc
        os.close(fd)
        try:
            os.chmod(self.path, 0o600)  # whatever the umask
        except OSError as exc:
            raise wrap_error(exc, f"create {self.path}") from exc

    def _connect(self, *, read_only: bool = False) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path,
            timeout=self._busy_timeout,
            isolation_level=None,
            check_same_thread=False,  # used under _write_lock, or by one borrower
        )
        try:
            conn.execute(f"PRAGMA synchronous = {self._synchronous}")
            if read_only:
                conn.execute("PRAGMA query_only = ON")
        except BaseException:
            conn.close()
            raise
        return conn

    # -- writing --------------------------------------------------------------------

    def _begin_turn(
        self, action: str, level: str, background: bool
    ) -> tuple[sqlite3.Connection, _Group, bool]:
        """Take the writer, and begin a transaction or join the open one in a
        savepoint of its own (then the flag returned is true). On failure the
        writer is free again."""
        if background:
            self._take_writer_politely()
        else:
            self._acquire_writer(urgent=True)
        try:
            conn = self._writer
            if conn is None:
                raise StorageError(f"cannot {action}: the storage is closed")
            group = self._group
            if group is not None and _STRICTNESS[level] > _STRICTNESS[group.level]:
                # SQLite fixes a transaction's sync level when it begins.
                self._commit(conn, group)
                group = None
            if group is None:
                if level != self._level:
                    # The level stays set until a write needs another, so a
                    # run of background writes sets it once.
                    conn.execute(f"PRAGMA synchronous = {level}")
                    self._level = level
                group = _Group(level)
                conn.execute("BEGIN IMMEDIATE")
                self._group = group
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
            self._write_lock.release()
            raise wrap_error(exc, action) from exc
        except BaseException:
            self._write_lock.release()
            raise
        return conn, group, joined

    def _take_writer_politely(self) -> None:
        """Acquire the writer for background work, letting callers' writes
        waiting for it go first, for a while: a steady stream of them must not
        stop deliveries from being recorded."""
        if not self._urgent and self._write_lock.acquire(blocking=False):
            return
        deadline = time.monotonic() + _POLITE_FOR
        while True:
            with self._queue:
                while self._urgent and (left := deadline - time.monotonic()) > 0:
                    self._queue.wait(left)
            callers_wait = self._acquire_writer(urgent=False)
            if not callers_wait or time.monotonic() >= deadline:
                return
            self._write_lock.release()

    def _acquire_writer(self, *, urgent: bool) -> bool:
        """Acquire the writer, counted among the queued (and the urgent) while
        waiting for it; return whether callers' writes are waiting for it now."""
        if self._write_lock.acquire(blocking=False):
            return self._urgent > 0  # it never waited, so it was never counted
        with self._queue:
            self._queued += 1
            self._urgent += urgent
        try:
            self._write_lock.acquire()
        finally:
            with self._queue:
                self._queued -= 1
                self._urgent -= urgent
                if urgent and not self._urgent:
                    self._queue.notify_all()
                callers_wait = self._urgent > 0
        return callers_wait

    def _end_turn(
        self, conn: sqlite3.Connection, group: _Group, *, joined: bool, failed: bool
    ) -> None:
        """Close this write's savepoint, if it joined, then leave the transaction
        open for a writer queued behind, or commit it; the writer is free again
        after."""
        try:
            if failed and not joined:
                # The first write of a transaction is alone in it: undo it all.
                self._fail(conn, group, None)
                return
            try:
                if joined:
                    if failed:
                        conn.execute("ROLLBACK TO write")
                    conn.execute("RELEASE write")
            except sqlite3.Error as exc:
                # Some errors roll the whole transaction back, savepoints and all.
                self._fail(conn, group, exc)
                return
            # A caller's write waits for background work only to share its
            # disk sync with other callers, not to carry the bookkeeping.
            queued = self._urgent if group.waited_for else self._queued
            if queued and group.members < _MAX_GROUP:
                return
            self._commit(conn, group)
        finally:
            self._write_lock.release()

    def _commit(self, conn: sqlite3.Connection, group: _Group) -> None:
        """Commit ``group``'s transaction and wake its writers; never raises."""
        self._group = None
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            _rollback(conn)
            self._overwrite_failed_commit(conn)
            group.error = exc
        finally:
            group.committed.set()

    def _fail(
        self, conn: sqlite3.Connection, group: _Group, exc: sqlite3.Error | None
    ) -> None:
        """Roll ``group``'s transaction back and wake its writers with ``exc``
        (None: it held only the write that failed, and nobody waits)."""
        self._group = None
        _rollback(conn)
        group.error = exc
        group.committed.set()

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
            _rollback(conn)
            log.error("a write to %s failed, and so did the repair: %s", self.path, exc)

    # -- the reader pool ------------------------------------------------------------

    def _borrow(self, action: str) -> sqlite3.Connection:
        with self._pool_lock:
            if self._closed:
                raise StorageError(f"cannot {action}: the storage is closed")
            if self._idle:
                return self._idle.pop()
        try:
            return self._connect(read_only=True)
        except sqlite3.Error as exc:
            raise wrap_error(exc, action) from exc

    def _give_back(self, conn: sqlite3.Connection) -> None:
        with self._pool_lock:
            if not self._closed and len(self._idle) < _IDLE_READERS:
                self._idle.append(conn)
                return
        conn.close()


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # the failure being reported matters more
