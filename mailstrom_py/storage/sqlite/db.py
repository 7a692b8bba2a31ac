"""The connections to one SQLite file, and the transactions run on them.

:class:`Database` opens the file (creating it with mode 0600, switching it to WAL,
migrating its schema), hands its writer connection to a
:class:`~mailstrom_py.storage.sqlite.turns.Writer`, which serialises writes on
it and commits them in groups, and lends read-only connections from a pool.
Every ``sqlite3`` or file-system error leaves as a
:class:`~mailstrom_py.errors.StorageError` chained to its cause.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator

from ...errors import StorageError
from ..base import wrap_error
from .schema import migrate
from .turns import Writer, WriteTurn, rollback

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
        self._pool_lock = threading.Lock()
        self._idle: list[sqlite3.Connection] = []
        self._closed = False
        self._writer = Writer(self._open(create), synchronous, path)

    @property
    def queued(self) -> int:
        """How many writes wait for the writer now."""
        return self._writer.queued

    def writing(
        self, action: str, *, synchronous: str | None = None, background: bool = False
    ) -> WriteTurn:
        """Run the body of a ``with`` as a write on the writer connection, and
        return once that write is committed.

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
        return self._writer.turn(action, synchronous, background)

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
            rollback(conn)
            raise wrap_error(exc, action) from exc
        except BaseException:
            rollback(conn)
            raise
        finally:
            self._give_back(conn)

    def close(self) -> None:
        """Close every connection; later transactions raise. Idempotent."""
        writer = self._writer.close()
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
            rollback(conn)
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
            check_same_thread=False,  # used by one writer at a time, or one borrower
        )
        try:
            conn.execute(f"PRAGMA synchronous = {self._synchronous}")
            if read_only:
                conn.execute("PRAGMA query_only = ON")
        except BaseException:
            conn.close()
            raise
        return conn

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
