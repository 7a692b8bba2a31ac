"""SQLite storage: mail that survives a crash, a deploy or a power cut."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from typing import Literal

from ..errors import ConfigError, DuplicateMessageError, MessageNotFound, StorageError
from ..message import PreparedEmail
from ..status import DeliveryResult, MessageStatus, RecipientStatus
from ._sqlite_schema import (
    RECIPIENT_COLUMNS,
    STATUS_COLUMNS,
    migrate,
    recipient_domain,
    recipient_values,
    statuses,
    where_clause,
)
from .base import QueueFilter, Storage, initial_status, merge_recipients, wrap_error

__all__ = ["SqliteStorage", "Synchronous"]

log = logging.getLogger(__name__)

Synchronous = Literal["FULL", "NORMAL"]

_PENDING = f"('{DeliveryResult.QUEUED.value}', '{DeliveryResult.DEFERRED.value}')"
_INSERT_RECIPIENT = (
    "INSERT INTO recipients (message, position, address, domain, "
    + ", ".join(RECIPIENT_COLUMNS)
    + ") VALUES (?, ?, ?, ?, "
    + ", ".join("?" * len(RECIPIENT_COLUMNS))
    + ")"
)
_UPDATE_RECIPIENT = (
    "UPDATE recipients SET "
    + ", ".join(f"{column} = ?" for column in RECIPIENT_COLUMNS)
    + " WHERE message = ? AND position = ?"
)
_STATUSES_OF = (
    f"SELECT {STATUS_COLUMNS} FROM ({{select}}) m"
    " LEFT JOIN recipients r ON r.message = m.id"
    " ORDER BY m.created_at, m.id, r.position"
)
# Idle reader connections kept for reuse; more may be open while busy.
_IDLE_READERS = 8


class SqliteStorage(Storage):
    """Keeps messages and their statuses in an SQLite file, durably.

    Guarantees:

    * ``add()`` (and so ``send_email()``) returns only after the message and its
      recipients are committed. With ``synchronous="FULL"`` (the default) the
      commit is on disk: it survives a crash of the process, of the operating
      system, or a power cut. With ``"NORMAL"`` it survives a crash of the
      process, but the last commits before an operating-system crash or power
      cut may be lost; adding is many times faster.
    * Every write is one transaction: after a crash a message is there whole,
      with all its recipients, or not at all. The worker's claim of an attempt
      is committed before it dials, so a crash during an attempt leads to a
      retry at the claimed retry time, never to a lost message or a hot loop.
    * A new file is created with mode 0600 (its ``-wal`` and ``-shm`` files get
      the same mode); an existing file keeps its mode.

    Threads: one writer connection behind a lock serialises this instance's
    writes (so its threads never meet "database is locked"), and reads use a
    small pool of read-only connections that, in WAL mode, never wait for a
    write. Every method is atomic and safe to call from any thread.

    Processes: several processes may open the same file (a command line that
    adds or kicks mail while a worker runs elsewhere). A write waits up to
    ``busy_timeout`` seconds for another process's write to finish. WAL mode
    needs the file on a local file system, not a network share.

    Errors: every failure of SQLite or of the file system raises
    :class:`~mailstrom_py.errors.StorageError` chained to its cause, and the
    write it interrupted leaves nothing behind.

    Args:
        path: the database file.
        synchronous: ``"FULL"`` or ``"NORMAL"``, as above.
        busy_timeout: seconds a write waits for another process's write before
            raising ``StorageError``; finite and above zero.
        create: create the file when it is missing; with ``False`` a missing
            file raises ``StorageError`` (for tools that should not create one
            on a typo).

    Raises:
        ConfigError: ``synchronous`` or ``busy_timeout`` is invalid, or ``path``
            names no file (``":memory:"``, ``""``).
        StorageError: the file cannot be created, opened or written (a missing
            directory, a read-only file or directory, a full disk); the file is
            not a mailstrom_py database; or it was written by a newer version
            of mailstrom_py.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: Synchronous = "FULL",
        busy_timeout: float = 5.0,
        create: bool = True,
    ) -> None:
        if synchronous not in ("FULL", "NORMAL"):
            raise ConfigError(
                f"must be 'FULL' or 'NORMAL', not {synchronous!r}", "synchronous"
            )
        if (
            not isinstance(busy_timeout, int | float)
            or not math.isfinite(busy_timeout)
            or busy_timeout <= 0
        ):
            raise ConfigError(
                f"must be a finite number of seconds > 0, not {busy_timeout!r}",
                "busy_timeout",
            )
        self._path = os.fspath(path)
        if self._path in ("", ":memory:") or self._path.startswith("file:"):
            raise ConfigError("must be the path of a file", "path")
        self._synchronous = synchronous
        self._busy_timeout = float(busy_timeout)
        self._write_lock = threading.Lock()
        self._pool_lock = threading.Lock()
        self._idle: list[sqlite3.Connection] = []
        self._closed = False
        self._writer: sqlite3.Connection | None = self._open(create)

    @property
    def path(self) -> str:
        """The database file."""
        return self._path

    def __repr__(self) -> str:
        return f"SqliteStorage({self._path!r}, synchronous={self._synchronous!r})"

    # -- Storage ------------------------------------------------------------------

    def add(self, email: PreparedEmail, now: float) -> MessageStatus:
        status = initial_status(email, now)
        with self._writing("add a message") as conn:
            if conn.execute(
                "SELECT 1 FROM messages WHERE message_id = ?", (email.message_id,)
            ).fetchall():
                raise DuplicateMessageError(email.message_id)
            cursor = conn.execute(
                "INSERT INTO messages (message_id, mail_from, smtputf8, eight_bit,"
                " created_at, pending, due_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    email.message_id,
                    email.mail_from,
                    int(email.smtputf8),
                    int(email.eight_bit),
                    now,
                    len(status.pending),
                    status.next_attempt_at,
                ),
            )
            rowid = cursor.lastrowid
            conn.execute(
                "INSERT INTO bodies (message, data) VALUES (?, ?)", (rowid, email.data)
            )
            conn.executemany(
                _INSERT_RECIPIENT,
                [
                    (
                        rowid,
                        n,
                        r.address,
                        recipient_domain(r.address),
                        *recipient_values(r),
                    )
                    for n, r in enumerate(status.recipients)
                ],
            )
        return status

    def status(self, message_id: str) -> MessageStatus:
        with self._reading("read a status") as conn:
            found = self._load(conn, "m.message_id = ?", message_id)
        if found is None:
            raise MessageNotFound(message_id)
        return found

    def email(self, message_id: str) -> PreparedEmail:
        with self._reading("read a message") as conn:
            rows = conn.execute(
                "SELECT m.id, m.mail_from, m.smtputf8, m.eight_bit, b.data"
                " FROM messages m JOIN bodies b ON b.message = m.id"
                " WHERE m.message_id = ?",
                (message_id,),
            ).fetchall()
            if not rows:
                raise MessageNotFound(message_id)
            rowid, mail_from, smtputf8, eight_bit, data = rows[0]
            recipients = conn.execute(
                "SELECT address FROM recipients WHERE message = ? ORDER BY position",
                (rowid,),
            ).fetchall()
        return PreparedEmail(
            message_id=message_id,
            mail_from=mail_from,
            recipients=tuple(address for (address,) in recipients),
            data=bytes(data),
            smtputf8=bool(smtputf8),
            eight_bit=bool(eight_bit),
        )

    def begin_attempt(
        self, message_id: str, now: float, retry_at: float
    ) -> MessageStatus | None:
        with self._writing("claim a message") as conn:
            found = conn.execute(
                "SELECT id, held, pending, due_at FROM messages WHERE message_id = ?",
                (message_id,),
            ).fetchall()
            if not found:
                return None
            rowid, held, pending, due_at = found[0]
            if held or not pending or (due_at is not None and due_at > now):
                return None
            conn.execute(
                "UPDATE recipients SET attempts = attempts + 1, last_attempt_at = ?,"
                f" next_attempt_at = ? WHERE message = ? AND result IN {_PENDING}",
                (now, retry_at, rowid),
            )
            conn.execute(
                "UPDATE messages SET due_at = ? WHERE id = ?", (retry_at, rowid)
            )
            return self._load(conn, "m.id = ?", rowid)

    def record(
        self, message_id: str, updates: Sequence[RecipientStatus]
    ) -> MessageStatus:
        with self._writing("record an attempt") as conn:
            rowid = self._rowid(conn, message_id)
            current = self._load(conn, "m.id = ?", rowid)
            assert current is not None  # the row was found in this transaction
            merged = merge_recipients(current, updates)
            conn.executemany(
                _UPDATE_RECIPIENT,
                [
                    (*recipient_values(new), rowid, n)
                    for n, (new, old) in enumerate(
                        zip(merged.recipients, current.recipients, strict=True)
                    )
                    if new != old
                ],
            )
            conn.execute(
                "UPDATE messages SET pending = ?, due_at = ? WHERE id = ?",
                (len(merged.pending), merged.next_attempt_at, rowid),
            )
        return merged

    def due(self, until: float, limit: int) -> list[tuple[float, str]]:
        # Served by the partial index messages_due: it never reads recipients,
        # held or completed messages, and changes nothing.
        with self._reading("list due messages") as conn:
            rows = conn.execute(
                "SELECT due_at, message_id FROM messages"
                " WHERE held = 0 AND due_at <= ? ORDER BY due_at LIMIT ?",
                (until, limit),
            ).fetchall()
        return [(float(due), str(message_id)) for due, message_id in rows]

    # -- queue operations ---------------------------------------------------------

    def find(self, where: QueueFilter, limit: int | None = None) -> list[MessageStatus]:
        clause, params = where_clause(where)
        select = (
            f"SELECT * FROM messages m WHERE {clause}"
            " ORDER BY m.created_at, m.id LIMIT ?"
        )
        with self._reading("list messages") as conn:
            rows = conn.execute(
                _STATUSES_OF.format(select=select),
                (*params, -1 if limit is None else limit),
            ).fetchall()
        return statuses(rows)

    def count(self, where: QueueFilter) -> int:
        clause, params = where_clause(where)
        with self._reading("count messages") as conn:
            [(count,)] = conn.execute(
                f"SELECT count(*) FROM messages m WHERE {clause}", params
            ).fetchall()
        return int(count)

    def kick(self, where: QueueFilter, now: float) -> list[str]:
        with self._writing("kick messages") as conn:
            selected = self._select(conn, where, "m.pending > 0")
            conn.executemany(
                "UPDATE recipients SET next_attempt_at = ? WHERE message = ?"
                f" AND result IN {_PENDING}"
                " AND (next_attempt_at IS NULL OR next_attempt_at > ?)",
                [(now, rowid, now) for rowid, _ in selected],
            )
            conn.executemany(
                "UPDATE messages SET due_at = min(coalesce(due_at, ?), ?) WHERE id = ?",
                [(now, now, rowid) for rowid, _ in selected],
            )
        return [message_id for _, message_id in selected]

    def hold(self, where: QueueFilter) -> list[str]:
        return self._set_held(where, "m.pending > 0 AND m.held = 0", held=True)

    def release(self, where: QueueFilter) -> list[str]:
        return self._set_held(where, "m.held = 1", held=False)

    def drop(self, where: QueueFilter) -> list[str]:
        with self._writing("drop messages") as conn:
            selected = self._select(conn, where)
            rowids = [(rowid,) for rowid, _ in selected]
            conn.executemany("DELETE FROM recipients WHERE message = ?", rowids)
            conn.executemany("DELETE FROM bodies WHERE message = ?", rowids)
            conn.executemany("DELETE FROM messages WHERE id = ?", rowids)
        return [message_id for _, message_id in selected]

    def recent(self, limit: int | None = None) -> list[MessageStatus]:
        fresh = (
            "SELECT {columns} FROM messages m WHERE m.pending = 0 AND m.reported = 0"
            " ORDER BY m.created_at, m.id LIMIT ?"
        )
        pending = (
            "SELECT * FROM messages m WHERE m.pending > 0"
            " ORDER BY m.created_at, m.id LIMIT ?"
        )
        with self._writing("report recent outcomes") as conn:
            cap = -1 if limit is None else limit
            reported = statuses(
                conn.execute(
                    _STATUSES_OF.format(select=fresh.format(columns="*")), (cap,)
                ).fetchall()
            )
            conn.execute(
                "UPDATE messages SET reported = 1"
                f" WHERE id IN ({fresh.format(columns='m.id')})",
                (cap,),
            )
            room = -1 if limit is None else max(limit - len(reported), 0)
            incomplete = statuses(
                conn.execute(_STATUSES_OF.format(select=pending), (room,)).fetchall()
            )
        return reported + incomplete

    def close(self) -> None:
        """Close every connection; later calls raise ``StorageError``. Idempotent."""
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
                log.warning("closing %s failed: %s", self._path, exc)

    # -- helpers ------------------------------------------------------------------

    def _set_held(self, where: QueueFilter, state: str, *, held: bool) -> list[str]:
        with self._writing("hold messages" if held else "release messages") as conn:
            selected = self._select(conn, where, state)
            conn.executemany(
                "UPDATE messages SET held = ? WHERE id = ?",
                [(int(held), rowid) for rowid, _ in selected],
            )
        return [message_id for _, message_id in selected]

    @staticmethod
    def _select(
        conn: sqlite3.Connection, where: QueueFilter, also: str = "1"
    ) -> list[tuple[int, str]]:
        clause, params = where_clause(where)
        rows = conn.execute(
            f"SELECT m.id, m.message_id FROM messages m WHERE ({clause}) AND {also}"
            " ORDER BY m.created_at, m.id",
            params,
        ).fetchall()
        return [(int(rowid), str(message_id)) for rowid, message_id in rows]

    @staticmethod
    def _rowid(conn: sqlite3.Connection, message_id: str) -> int:
        rows = conn.execute(
            "SELECT id FROM messages WHERE message_id = ?", (message_id,)
        ).fetchall()
        if not rows:
            raise MessageNotFound(message_id)
        return int(rows[0][0])

    @staticmethod
    def _load(
        conn: sqlite3.Connection, condition: str, value: object
    ) -> MessageStatus | None:
        rows = conn.execute(
            _STATUSES_OF.format(select=f"SELECT * FROM messages m WHERE {condition}"),
            (value,),
        ).fetchall()
        found = statuses(rows)
        return found[0] if found else None

    # -- connections and transactions ---------------------------------------------

    def _open(self, create: bool) -> sqlite3.Connection:
        self._create_file(create)
        try:
            conn = self._connect()
        except sqlite3.Error as exc:
            raise wrap_error(exc, f"open {self._path}") from exc
        try:
            [(mode,)] = conn.execute("PRAGMA journal_mode = WAL").fetchall()
            if str(mode).lower() != "wal":
                raise StorageError(
                    f"{self._path}: cannot use write-ahead logging (journal mode"
                    f" stays {mode!r}); is the file read-only?"
                )
            # Opening writes once, so a read-only file or directory or a full
            # disk is found here rather than at the first send_email().
            conn.execute("BEGIN IMMEDIATE")
            migrate(conn, self._path)
            conn.execute("UPDATE meta SET value = value + 1 WHERE key = 'generation'")
            conn.execute("COMMIT")
        except BaseException as exc:
            _rollback(conn)
            conn.close()
            if isinstance(exc, sqlite3.Error):
                raise wrap_error(exc, f"open {self._path}") from exc
            raise
        return conn

    def _create_file(self, create: bool) -> None:
        if os.path.exists(self._path):
            return
        if not create:
            raise StorageError(f"there is no database at {self._path}")
        try:
            fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return
        except OSError as exc:
            raise wrap_error(exc, f"create {self._path}") from exc
        os.close(fd)
        try:
            os.chmod(self._path, 0o600)  # whatever the umask
        except OSError as exc:
            raise wrap_error(exc, f"create {self._path}") from exc

    def _connect(self, *, read_only: bool = False) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self._path,
            timeout=self._busy_timeout,
            isolation_level=None,
            check_same_thread=False,  # guarded by _write_lock or the pool
        )
        try:
            conn.execute(f"PRAGMA synchronous = {self._synchronous}")
            if read_only:
                conn.execute("PRAGMA query_only = ON")
        except BaseException:
            conn.close()
            raise
        return conn

    @contextlib.contextmanager
    def _writing(self, action: str) -> Iterator[sqlite3.Connection]:
        with self._write_lock:
            conn = self._writer
            if conn is None:
                raise StorageError(f"cannot {action}: the storage is closed")
            committing = False
            try:
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

    def _overwrite_failed_commit(self, conn: sqlite3.Connection) -> None:
        # A COMMIT that failed after writing its frames to the WAL file (an
        # fsync error, say) leaves them there, valid, past the end SQLite
        # knows of; a crash now would let recovery bring the transaction back,
        # and a message whose add() raised would be delivered after all. The
        # next transaction is written over those frames, which invalidates
        # them, so write a harmless one at once.
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("UPDATE meta SET value = value + 1 WHERE key = 'generation'")
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            _rollback(conn)
            log.error(
                "after a failed commit to %s, so did a repair: %s", self._path, exc
            )

    @contextlib.contextmanager
    def _reading(self, action: str) -> Iterator[sqlite3.Connection]:
        conn = self._borrow(action)
        try:
            conn.execute("BEGIN")  # one snapshot for every statement of the read
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
