"""SQLite storage: mail that survives a crash, a deploy or a power cut."""

from __future__ import annotations

import math
import os
import sqlite3
import time
from collections.abc import Sequence
from typing import Literal

from ...errors import ConfigError, MessageNotFound
from ...message import PreparedEmail
from ...status import MessageStatus, RecipientStatus
from .. import controls_sql, policies_sql, tls_tally_sql
from ..admin import QueueAdmin
from ..base import Claim, Storage, check_age, check_claim, check_distinct
from ..controls import Controls, Suppression, Suspension
from ..journal import EventJournal, JournalEntry, check_journal
from ..policies import PolicyCache, check_policy_entry
from ..query import QueueFilter
from ..rules import initial_status
from ..tls_tally import (
    TlsReportTally,
    TlsSessionCount,
    check_day,
    check_session_counts,
)
from . import claims, messages, queue
from .claims import extend as extend_claims
from .db import Database
from .folding import Fold

__all__ = ["SqliteStorage", "Synchronous"]

Synchronous = Literal["FULL", "NORMAL"]


class SqliteStorage(
    Storage, QueueAdmin, EventJournal, Controls, PolicyCache, TlsReportTally
):
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
      retry when the claim's lease ends, never to a lost message or a hot loop.
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
    write. Every method is atomic and safe to call from any thread. Outcomes
    recorded while another waits for the writer join its transaction, each in
    a savepoint and each committed before its call returns.

    Processes: several processes may open the same file: processes that add
    mail, a command line that kicks or drops it, and any number of workers,
    whose claims exclude each other (a claim is one write transaction). A
    write waits up to ``busy_timeout`` seconds for another process's write to
    finish. WAL mode needs the file on a local file system, not a network
    share.

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
        self._records = Fold(self._db, "record attempts", attempt_synchronous)

    @property
    def path(self) -> str:
        """The database file."""
        return self._db.path

    def __repr__(self) -> str:
        return f"SqliteStorage({self.path!r}, synchronous={self._synchronous!r})"

    # -- Storage ------------------------------------------------------------------

    def add_many(
        self,
        emails: Sequence[PreparedEmail],
        now: float,
        *,
        send_at: float | None = None,
    ) -> list[MessageStatus]:
        return self.add_journaled(emails, now, (), send_at=send_at)

    def add_journaled(
        self,
        emails: Sequence[PreparedEmail],
        now: float,
        events: Sequence[str],
        *,
        send_at: float | None = None,
    ) -> list[MessageStatus]:
        check_distinct(emails)
        due = now if send_at is None else send_at
        with self._db.writing("add messages") as conn:
            messages.insert(conn, emails, now, due)
            if events:
                messages.write_events(conn, events)
        return [initial_status(email, now, send_at) for email in emails]

    def status(self, message_id: str) -> MessageStatus:
        with self._db.reading("read a status") as conn:
            found = queue.status_of(conn, message_id)
        if found is None:
            raise MessageNotFound(message_id)
        return found

    def email(self, message_id: str) -> PreparedEmail:
        with self._db.reading("read a message") as conn:
            return messages.email(conn, message_id)

    def claim_due(self, now: float, limit: int, lease: float) -> list[Claim]:
        check_claim(limit, lease)
        with self._db.writing(
            "claim messages", synchronous=self._attempt_synchronous, background=True
        ) as conn:
            claimed = claims.claim_due(conn, now, limit, lease)
        return claimed.claims()

    def next_due(self) -> float | None:
        with self._db.reading("find the next due time") as conn:
            return claims.next_due(conn)

    def record_many(
        self, records: Sequence[tuple[Claim, Sequence[RecipientStatus]]]
    ) -> list[MessageStatus | None]:
        return self._records.run(lambda conn: claims.record(conn, records))

    def record_journaled(
        self,
        records: Sequence[tuple[Claim, Sequence[RecipientStatus]]],
        events: Sequence[Sequence[str]],
    ) -> list[MessageStatus | None]:
        check_journal(records, events)

        def write(conn: sqlite3.Connection) -> list[MessageStatus | None]:
            recorded = claims.record(conn, records)
            for status, written in zip(recorded, events, strict=True):
                if status is not None:
                    messages.write_events(conn, written)
            return recorded

        return self._records.run(write)

    def take_events(self, limit: int) -> list[JournalEntry]:
        with self._db.reading("read the event journal") as conn:
            return messages.take_events(conn, limit)

    def ack_events(self, ids: Sequence[int]) -> None:
        if not ids:
            return
        with self._db.writing("acknowledge events") as conn:
            conn.executemany("DELETE FROM events WHERE id = ?", [(i,) for i in ids])

    def extend(self, claims: Sequence[Claim], now: float, lease: float) -> list[bool]:
        check_claim(0, lease)
        if not claims:
            return []
        with self._db.writing(
            "extend claims", synchronous=self._attempt_synchronous, background=True
        ) as conn:
            return extend_claims(conn, claims, now + lease)

    # -- QueueAdmin ---------------------------------------------------------------

    def find(self, where: QueueFilter, limit: int | None = None) -> list[MessageStatus]:
        with self._db.reading("list messages") as conn:
            return queue.find(conn, where, limit)

    def count(self, where: QueueFilter) -> int:
        with self._db.reading("count messages") as conn:
            return queue.count(conn, where)

    def kick(self, where: QueueFilter, now: float) -> list[str]:
        with self._db.writing("kick messages") as conn:
            return queue.kick(conn, where, now)

    def hold(self, where: QueueFilter) -> list[str]:
        with self._db.writing("hold messages") as conn:
            return queue.set_held(conn, where, held=True)

    def release(self, where: QueueFilter) -> list[str]:
        with self._db.writing("release messages") as conn:
            return queue.set_held(conn, where, held=False)

    def schedule(self, where: QueueFilter, at: float, now: float) -> list[str]:
        with self._db.writing("schedule messages") as conn:
            return queue.schedule(conn, where, at, now)

    def fail(self, where: QueueFilter, now: float) -> list[MessageStatus]:
        with self._db.writing("fail messages") as conn:
            return queue.fail(conn, where)

    def drop(self, where: QueueFilter) -> list[str]:
        with self._db.writing("drop messages") as conn:
            return queue.drop(conn, where)

    def recent(self, limit: int | None = None) -> list[MessageStatus]:
        with self._db.writing("report recent outcomes") as conn:
            return queue.recent(conn, limit)

    # -- Controls -----------------------------------------------------------------

    def suppress(self, entries: Sequence[Suppression]) -> None:
        with self._db.writing("suppress addresses") as conn:
            controls_sql.suppress(conn, "?", entries)

    def unsuppress(self, addresses: Sequence[str]) -> list[str]:
        with self._db.writing("unsuppress addresses") as conn:
            return controls_sql.unsuppress(conn, "?", addresses)

    def suppressed(
        self, addresses: Sequence[str], now: float
    ) -> dict[str, Suppression]:
        if not addresses:
            return {}
        with self._db.reading("look up suppressed addresses") as conn:
            return controls_sql.suppressed(conn, "?", addresses, now)

    def suppressions(self, now: float) -> list[Suppression]:
        with self._db.reading("list suppressed addresses") as conn:
            return controls_sql.suppressions(conn, "?", now)

    def suspend(self, entry: Suspension) -> None:
        with self._db.writing("suspend a destination") as conn:
            controls_sql.suspend(conn, "?", entry)

    def resume(self, destination: str) -> bool:
        with self._db.writing("resume a destination") as conn:
            return controls_sql.resume(conn, "?", destination)

    def suspensions(self, now: float) -> list[Suspension]:
        with self._db.reading("list suspended destinations") as conn:
            return controls_sql.suspensions(conn, "?", now)

    # -- PolicyCache --------------------------------------------------------------

    def cached_policy(self, domain: str) -> str | None:
        with self._db.reading("read a cached MTA-STS policy") as conn:
            return policies_sql.cached_policy(conn, "?", domain)

    def keep_policy(self, domain: str, policy_json: str) -> None:
        check_policy_entry(domain, policy_json)
        with self._db.writing("cache an MTA-STS policy") as conn:
            policies_sql.keep_policy(conn, "?", domain, policy_json)

    # -- TlsReportTally -----------------------------------------------------------

    def tally_tls_sessions(self, rows: Sequence[TlsSessionCount]) -> None:
        check_session_counts(rows)
        if rows:
            with self._db.writing("count TLS sessions") as conn:
                tls_tally_sql.tally_tls_sessions(conn, "?", rows)

    def take_tls_sessions(self, before_day: str) -> list[TlsSessionCount]:
        check_day(before_day)
        with self._db.writing("take TLS session counts") as conn:
            return tls_tally_sql.take_tls_sessions(conn, "?", before_day)

    def purge_completed(
        self, older_than: float, *, now: float | None = None, batch: int = 500
    ) -> int:
        """Remove messages completed more than ``older_than`` seconds before
        ``now`` (by default the time now), as
        :meth:`~mailstrom_py.PostgresStorage.purge_completed` does.

        A message counts as completed when the attempt that completed it
        began. The removal goes in batches of ``batch`` messages, each its own
        short write, so ``send_email()`` calls wait for one batch at most.

        Returns:
            How many messages were removed.

        Raises:
            ValueError: ``older_than`` is not a finite number of seconds of at
                least 0, or ``batch`` is below 1.
            StorageError: a batch failed; the batches before it stay removed.
        """
        check_age(older_than, batch)
        before = (time.time() if now is None else now) - older_than
        removed = 0
        while True:
            with self._db.writing("remove completed messages") as conn:
                gone = queue.purge(conn, before, batch)
            removed += gone
            if gone < batch:
                return removed

    def close(self) -> None:
        """Close every connection; later calls raise ``StorageError``. Idempotent."""
        self._db.close()
