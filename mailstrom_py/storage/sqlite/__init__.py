"""SQLite storage: mail that survives a crash, a deploy or a power cut."""

from __future__ import annotations

import math
import os
import sqlite3
from collections.abc import Callable, Sequence
from typing import Literal

from ...errors import ConfigError, DuplicateMessageError, MessageNotFound
from ...message import PreparedEmail
from ...status import MessageStatus, RecipientStatus
from ..admin import QueueAdmin
from ..base import Claim, Storage, check_distinct
from ..query import QueueFilter
from ..rules import initial_status
from ..sql import filter_condition
from . import attempts
from .db import Database
from .schema import (
    DUE_QUERY,
    EMAIL_COLUMNS,
    PENDING,
    RECIPIENT_COLUMNS,
    STATUSES_OF,
    prepared_email,
    recipient_domain,
    recipient_values,
    statuses,
)

__all__ = ["SqliteStorage", "Synchronous"]

Synchronous = Literal["FULL", "NORMAL"]

_INSERT_MESSAGE = (
    "INSERT INTO messages (message_id, mail_from, smtputf8, eight_bit,"
    " require_tls, tls_optional, created_at, pending, due_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
# How SQLite reports a second message with a stored id.
_DUPLICATE_ID = "UNIQUE constraint failed: messages.message_id"
_INSERT_RECIPIENT = (
    "INSERT INTO recipients (message, position, address, domain, "
    + ", ".join(RECIPIENT_COLUMNS)
    + ") VALUES (?, ?, ?, ?, "
    + ", ".join("?" * len(RECIPIENT_COLUMNS))
    + ")"
)


class SqliteStorage(Storage, QueueAdmin):
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
    * The worker's bookkeeping (claiming an attempt, recording its outcome) is
      committed with ``attempt_synchronous``, ``"NORMAL"`` by default: it
      survives a crash of the process, and the next commit at ``synchronous``
      makes it durable; a power cut may undo the last few, which can repeat an
      attempt (at most a duplicate, never a lost message). ``"FULL"`` syncs
      each of them to disk, at two disk syncs per delivered message.
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
        attempt_synchronous: the level of the worker's bookkeeping commits (the
            claim before an attempt, the outcome after it), as below.
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

    durable = True

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: Synchronous = "FULL",
        attempt_synchronous: Synchronous = "NORMAL",
        busy_timeout: float = 5.0,
        create: bool = True,
    ) -> None:
        for name, level in (
            ("synchronous", synchronous),
            ("attempt_synchronous", attempt_synchronous),
        ):
            if level not in ("FULL", "NORMAL"):
                raise ConfigError(f"must be 'FULL' or 'NORMAL', not {level!r}", name)
        if (
            not isinstance(busy_timeout, int | float)
            or not math.isfinite(busy_timeout)
            or busy_timeout <= 0
        ):
            raise ConfigError(
                f"must be a finite number of seconds > 0, not {busy_timeout!r}",
                "busy_timeout",
            )
        path = os.fspath(path)
        if path in ("", ":memory:") or path.startswith("file:"):
            raise ConfigError("must be the path of a file", "path")
        self._synchronous = synchronous
        self._attempt_synchronous = attempt_synchronous
        self._db = Database(path, synchronous, float(busy_timeout), create=create)

    @property
    def path(self) -> str:
        """The database file."""
        return self._db.path

    def __repr__(self) -> str:
        return f"SqliteStorage({self.path!r}, synchronous={self._synchronous!r})"

    # -- Storage ------------------------------------------------------------------

    def add(self, email: PreparedEmail, now: float) -> MessageStatus:
        return self.add_many([email], now)[0]

    def add_many(
        self, emails: Sequence[PreparedEmail], now: float
    ) -> list[MessageStatus]:
        check_distinct(emails)
        statuses = [initial_status(email, now) for email in emails]
        with self._db.writing("add messages") as conn:
            for email, status in zip(emails, statuses, strict=True):
                self._insert(conn, email, status)
        return statuses

    def _insert(
        self, conn: sqlite3.Connection, email: PreparedEmail, status: MessageStatus
    ) -> None:
        try:
            cursor = conn.execute(
                _INSERT_MESSAGE,
                (
                    email.message_id,
                    email.mail_from,
                    int(email.smtputf8),
                    int(email.eight_bit),
                    int(email.require_tls),
                    int(email.tls_optional),
                    status.created_at,
                    len(email.recipients),  # every recipient is pending
                    status.created_at if email.recipients else None,
                ),
            )
        except sqlite3.IntegrityError as exc:
            # The UNIQUE index on message_id is the duplicate check; any other
            # constraint failing is a fault, reported as StorageError.
            if _DUPLICATE_ID in str(exc):
                raise DuplicateMessageError(email.message_id) from exc
            raise
        rowid = cursor.lastrowid
        conn.execute(
            "INSERT INTO bodies (message, data) VALUES (?, ?)", (rowid, email.data)
        )
        conn.executemany(
            _INSERT_RECIPIENT,
            [
                (rowid, n, r.address, recipient_domain(r.address), *recipient_values(r))
                for n, r in enumerate(status.recipients)
            ],
        )

    def status(self, message_id: str) -> MessageStatus:
        with self._db.reading("read a status") as conn:
            found = self._load(conn, "m.message_id = ?", message_id)
        if found is None:
            raise MessageNotFound(message_id)
        return found

    def email(self, message_id: str) -> PreparedEmail:
        with self._db.reading("read a message") as conn:
            rows = conn.execute(
                f"SELECT m.id, {EMAIL_COLUMNS} FROM messages m"
                " JOIN bodies b ON b.message = m.id WHERE m.message_id = ?",
                (message_id,),
            ).fetchall()
            if not rows:
                raise MessageNotFound(message_id)
            recipients = conn.execute(
                "SELECT address FROM recipients WHERE message = ? ORDER BY position",
                (rows[0][0],),
            ).fetchall()
        return prepared_email(
            message_id, (address for (address,) in recipients), rows[0][1:]
        )

    def begin_attempt(
        self, message_id: str, now: float, retry_at: float
    ) -> MessageStatus | None:
        with self._db.writing(
            "claim a message", synchronous=self._attempt_synchronous, background=True
        ) as conn:
            claimed = attempts.begin_attempts(
                conn, [message_id], now, lambda _: retry_at
            )
        return claimed[0][2] if claimed else None

    def claim(
        self,
        message_ids: Sequence[str],
        now: float,
        retry_at: Callable[[MessageStatus], float],
    ) -> list[Claim]:
        with self._db.writing(
            "claim messages", synchronous=self._attempt_synchronous, background=True
        ) as conn:
            return attempts.claim(conn, message_ids, now, retry_at)

    def record(
        self, message_id: str, updates: Sequence[RecipientStatus]
    ) -> MessageStatus:
        [status] = self.record_many([(message_id, updates)])
        if status is None:
            raise MessageNotFound(message_id)
        return status

    def record_many(
        self, records: Sequence[tuple[str, Sequence[RecipientStatus]]]
    ) -> list[MessageStatus | None]:
        with self._db.writing(
            "record attempts", synchronous=self._attempt_synchronous, background=True
        ) as conn:
            return attempts.record(conn, records)

    def due(self, until: float, limit: int) -> list[tuple[float, str]]:
        with self._db.reading("list due messages") as conn:
            rows = conn.execute(DUE_QUERY, (until, limit)).fetchall()
        return [(float(due), str(message_id)) for due, message_id in rows]

    # -- QueueAdmin ---------------------------------------------------------------

    def find(self, where: QueueFilter, limit: int | None = None) -> list[MessageStatus]:
        clause, params = filter_condition(where)
        select = (
            f"SELECT * FROM messages m WHERE {clause}"
            " ORDER BY m.created_at, m.id LIMIT ?"
        )
        with self._db.reading("list messages") as conn:
            rows = conn.execute(
                STATUSES_OF.format(select=select),
                (*params, -1 if limit is None else limit),
            ).fetchall()
        return statuses(rows)

    def count(self, where: QueueFilter) -> int:
        clause, params = filter_condition(where)
        with self._db.reading("count messages") as conn:
            [(count,)] = conn.execute(
                f"SELECT count(*) FROM messages m WHERE {clause}", params
            ).fetchall()
        return int(count)

    def kick(self, where: QueueFilter, now: float) -> list[str]:
        with self._db.writing("kick messages") as conn:
            selected = self._select(conn, where, "m.pending > 0")
            conn.executemany(
                "UPDATE recipients SET next_attempt_at = ? WHERE message = ?"
                f" AND result IN {PENDING}"
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
        with self._db.writing("drop messages") as conn:
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
        with self._db.writing("report recent outcomes") as conn:
            cap = -1 if limit is None else limit
            reported = statuses(
                conn.execute(
                    STATUSES_OF.format(select=fresh.format(columns="*")), (cap,)
                ).fetchall()
            )
            conn.execute(
                "UPDATE messages SET reported = 1"
                f" WHERE id IN ({fresh.format(columns='m.id')})",
                (cap,),
            )
            room = -1 if limit is None else max(limit - len(reported), 0)
            incomplete = statuses(
                conn.execute(STATUSES_OF.format(select=pending), (room,)).fetchall()
            )
        return reported + incomplete

    def close(self) -> None:
        """Close every connection; later calls raise ``StorageError``. Idempotent."""
        self._db.close()

    # -- helpers ------------------------------------------------------------------

    def _set_held(self, where: QueueFilter, state: str, *, held: bool) -> list[str]:
        with self._db.writing("hold messages" if held else "release messages") as conn:
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
        clause, params = filter_condition(where)
        rows = conn.execute(
            f"SELECT m.id, m.message_id FROM messages m WHERE ({clause}) AND {also}"
            " ORDER BY m.created_at, m.id",
            params,
        ).fetchall()
        return [(int(rowid), str(message_id)) for rowid, message_id in rows]

    @staticmethod
    def _load(
        conn: sqlite3.Connection, condition: str, value: object
    ) -> MessageStatus | None:
        rows = conn.execute(
            STATUSES_OF.format(select=f"SELECT * FROM messages m WHERE {condition}"),
            (value,),
        ).fetchall()
        found = statuses(rows)
        return found[0] if found else None
