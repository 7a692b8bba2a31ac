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
from collections.abc import Iterator

from ..errors import StorageError
from ._sqlite_schema import migrate
from .base import wrap_error

__all__ = ["Database"]

log = logging.getLogger(__name__)

# Idle reader connections kept for reuse; more may be open while busy.
_IDLE_READERS = 8


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
        self._busy_timeout = busy_timeout
        self._write_lock = threading.Lock()
        self._pool_lock = threading.Lock()
        self._idle: list[sqlite3.Connection] = []
        self._closed = False
        self._writer: sqlite3.Connection | None = self._open(create)

    @contextlib.contextmanager
    def writing(
        self, action: str, *, synchronous: str | None = None
    ) -> Iterator[sqlite3.Connection]:
        """Run the body in a write transaction (``BEGIN IMMEDIATE``), then commit.

        Writes of this instance wait for each other on a lock, never on SQLite,
        so only another process can make them wait (up to the busy timeout).
        An exception from the body rolls back and propagates. ``synchronous``
        overrides the connection's level for this one commit.

        Raises:
            StorageError: SQLite failed while doing ``action``; nothing was written.
        """
        with self._write_lock:
            conn = self._writer
            if conn is None:
                raise StorageError(f"cannot {action}: the storage is closed")
            committing = False
            level = synchronous if synchronous != self._synchronous else None
            try:
                if level is not None:
                    conn.execute(f"PRAGMA synchronous = {level}")
                conn.execute("BEGIN IMMEDIATE")
                yield conn
                committing = True
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                _rollback(conn)
                if committing:
                    self._overwrite_failed_commit(conn)
                raise wrap_error(exc, action) from exc
            except BaseException:
                _rollback(conn)
                raise
            finally:
                if level is not None:
                    _restore_level(conn, self._synchronous)

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


def _restore_level(conn: sqlite3.Connection, level: str) -> None:
    try:
        conn.execute(f"PRAGMA synchronous = {level}")
    except sqlite3.Error:
        pass  # a broken connection fails the next write, which reports it
