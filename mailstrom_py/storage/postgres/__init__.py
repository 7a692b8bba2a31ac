"""PostgreSQL storage: one queue shared by worker processes on many machines."""

from __future__ import annotations

import math
from collections.abc import Sequence

from ...message import PreparedEmail
from ...status import MessageStatus, RecipientStatus
from ..base import Claim, Storage, check_claim, check_distinct
from . import claims, messages, outcomes
from .claims import extend as extend_claims
from .controls import PostgresControls
from .db import Database, Timeouts
from .handle import ClockSource
from .journaled import PostgresJournal
from .notify import Listener, Notifier, channel_for
from .policies import PostgresPolicies
from .queue_admin import PostgresQueueAdmin
from .retention import PostgresRetention
from .schema import migrate
from .settings import Offset, check_arguments, check_seconds
from .tls_tally import PostgresTlsTally

__all__ = ["ClockSource", "PostgresStorage"]


class PostgresStorage(
    Storage,
    PostgresQueueAdmin,
    PostgresJournal,
    PostgresRetention,
    PostgresControls,
    PostgresPolicies,
    PostgresTlsTally,
):
    """Keeps messages and their statuses in a PostgreSQL database, shared by any
    number of processes on any number of machines.

    Guarantees:

    * ``add()`` (and so ``send_email()``) returns once the message and its
      recipients are committed, at the server's durability
      (``synchronous_commit``). Every write is one transaction: a message is
      there whole, with all its recipients, or not at all.
    * Each body is stored once, in its message's row but outside it (in
      PostgreSQL's TOAST storage): reading a status, listing the queue or
      claiming mail never reads a body.
    * Kicking or releasing mail notifies the channel ``<schema>_due``
      (LISTEN/NOTIFY) when it commits, which :meth:`wait_for_work` waits
      for. Adding mail notifies it just after the add commits, from a thread
      of this storage, once for all the adds committed meanwhile (adds that
      each notified would commit one at a time); :meth:`close` sends the
      notification still due. Mail added by a process that ended without
      closing its storage may go unnotified: workers find it when they next
      look on their own.

    Clocks: with ``clock="database"`` (the default) every time this storage
    stores or compares is the database server's (``now()`` of the
    transaction): when a message was added, is due, was kicked, completed, or
    may be removed. The ``now`` arguments of the methods are then not used for
    any of that, so workers whose clocks disagree agree on what is due. With
    ``clock="caller"`` the ``now`` arguments are used as given, as the other
    backends do (for tests that drive time, or one machine).

    Connections: a pool of ``min_connections`` to ``max_connections``, each
    with the server-side ``statement_timeout`` set. A call that gets no
    connection within ``connect_timeout``, or whose work is not answered
    within ``statement_timeout`` plus a second (a server that stopped
    answering), raises :class:`~mailstrom_py.errors.StorageError` and its
    connection is closed. Broken connections are replaced in the background,
    with backoff; a call that finds one broken before it changed anything runs
    again on another. When a connection is lost while a write commits, the
    error says that whether it was done is unknown: a message whose
    ``add()`` raised so may still be stored (adding it again then raises
    :class:`~mailstrom_py.errors.DuplicateMessageError`).

    Errors: every failure of PostgreSQL or of the connection raises
    :class:`~mailstrom_py.errors.StorageError` chained to psycopg's error.

    The tables live in the PostgreSQL schema ``schema``, created with them on
    first use (the role needs the right to create a schema in the database,
    or an administrator creates it first). Opening brings tables of an older
    version up to date.

    Args:
        dsn: a libpq connection string, ``"host=db.internal dbname=mail
            user=app"`` or ``"postgresql://app@db.internal/mail"``.
        password: the password, when ``dsn`` has none (libpq also reads
            ``PGPASSWORD`` and ``~/.pgpass``).
        clock: ``"database"`` or ``"caller"``, as above.
        schema: the PostgreSQL schema of the tables: a lower-case identifier.
        min_connections: connections the pool keeps open, at least 0.
        max_connections: the most connections of this instance, at least 1;
            also how many of its calls can run at once.
        connect_timeout: seconds to connect, or to wait for a free connection;
            finite and above 0.
        statement_timeout: seconds a statement may run on the server; finite
            and above 0. See above.
        migration_timeout: seconds opening may spend bringing the tables up
            to date, waiting for another process that migrates them or
            building an index on a large queue (the session's
            ``statement_timeout`` while it migrates); finite and above 0.
        retention: remove completed messages (every recipient delivered or
            failed) this many seconds after they completed; ``None`` keeps them
            until dropped. A worker's claims remove one batch of them at most
            once a minute (:meth:`purge_completed`), so nothing else need run.

    Raises:
        ConfigError: an argument is out of range.
        StorageError: the database cannot be reached, or holds tables of a
            newer version of mailstrom_py.
    """

    durable = True

    def __init__(
        self,
        dsn: str,
        *,
        password: str | None = None,
        clock: ClockSource = "database",
        schema: str = "mailstrom",
        min_connections: int = 1,
        max_connections: int = 10,
        connect_timeout: float = 5.0,
        statement_timeout: float = 10.0,
        migration_timeout: float = 600.0,
        retention: float | None = None,
    ) -> None:
        check_arguments(
            clock, schema, min_connections, max_connections, connect_timeout
        )
        check_seconds("statement_timeout", statement_timeout)
        check_seconds("migration_timeout", migration_timeout)
        if retention is not None:
            check_seconds("retention", retention)
        self._clock = clock
        self._offset = Offset()
        self._retention = retention
        self._next_purge = -math.inf
        self._channel = channel_for(schema)
        self._db = Database(
            dsn,
            min_connections=min_connections,
            max_connections=max_connections,
            timeouts=Timeouts(float(connect_timeout), float(statement_timeout)),
            schema=schema,
            name=f"mailstrom_py ({schema})",
            password=password,
        )
        self._db.open(lambda conn: migrate(conn, schema), float(migration_timeout))
        self._notifier = Notifier(self._db, self._channel)
        self._listener = Listener(
            dsn, self._db.connect_options("mailstrom_py listener"), self._channel
        )
        self._schema = schema

    def __repr__(self) -> str:
        return f"PostgresStorage(schema={self._schema!r}, clock={self._clock!r})"

    @property
    def clock(self) -> ClockSource:
        """Whose clock decides what is due: ``"database"`` or ``"caller"``."""
        return self._clock

    # -- Storage ------------------------------------------------------------------

    def add_many(
        self,
        emails: Sequence[PreparedEmail],
        now: float,
        *,
        send_at: float | None = None,
    ) -> list[MessageStatus]:
        """See :meth:`Storage.add_many`. ``send_at`` is stored as given, an
        absolute time, with the database's clock as with the callers'."""
        check_distinct(emails)
        if not emails:
            return []
        at = self._now(now)
        due = None if send_at is None else float(send_at)
        added = self._db.write_statement(
            "add messages", lambda conn: messages.add_many(conn, emails, at, due)
        )
        self._notifier.notify()
        self._offset.learn(now, added[0].created_at)
        return added

    def status(self, message_id: str) -> MessageStatus:
        return self._db.read(
            "read a status", lambda conn: messages.status(conn, message_id)
        )

    def email(self, message_id: str) -> PreparedEmail:
        return self._db.read(
            "read a message", lambda conn: messages.email(conn, message_id)
        )

    def claim_due(self, now: float, limit: int, lease: float) -> list[Claim]:
        """See :meth:`Storage.claim_due`. With the database's clock, what is due,
        the attempt's start and the lease's end are the database's, whatever
        ``now`` says; the claims' statuses carry the database's times."""
        check_claim(limit, lease)
        at = self._now(now)
        # A claim lost with its connection is harmless to make again: its
        # messages, if it was made, come back when its lease ends.
        claimed = self._db.write_statement(
            "claim messages",
            lambda conn: claims.claim_due(conn, at, float(now), limit, float(lease)),
            again=True,
        )
        self._offset.learn(now, claimed.now)
        self._keep_retention(now)
        return claimed.claims

    def next_due(self) -> float | None:
        """See :meth:`Storage.next_due`. With the database's clock, the time is
        the database's due time put on the caller's clock, as the last claim or
        add measured the difference between the two (the host's clock until
        then): the worker compares it with its own clock to know when to look."""
        due, at = self._db.read("find the next due time", claims.next_due)
        if due is None or self._clock == "caller":
            return due
        return due + self._offset.of(at)

    def record_many(
        self, records: Sequence[tuple[Claim, Sequence[RecipientStatus]]]
    ) -> list[MessageStatus | None]:
        """See :meth:`Storage.record_many`. With the database's clock, the times
        in the updates are on the claimant's clock; they are stored moved onto
        the database's by the difference measured when the message was
        claimed."""
        if not records:
            return []
        database_clock = self._clock == "database"
        # A transaction, not a statement alone: a connection lost before the
        # commit was sent leaves nothing, so the record runs again.
        return self._db.write(
            "record attempts",
            lambda conn: outcomes.record(conn, records, database_clock=database_clock),
        )

    def extend(self, claims: Sequence[Claim], now: float, lease: float) -> list[bool]:
        """See :meth:`Storage.extend`. With the database's clock, the new lease
        counts from the database's time, whatever ``now`` says."""
        check_claim(0, lease)
        if not claims:
            return []
        at = self._now(now)
        return self._db.write_statement(
            "extend claims",
            lambda conn: extend_claims(conn, claims, at, float(lease)),
            again=True,
        )

    # -- PostgreSQL's own ---------------------------------------------------------

    def wait_for_work(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for mail to become due now: a message
        added, kicked or released, by any process.

        The wait is on a connection of its own (LISTEN); it does not raise when
        the server cannot be reached, but waits out the timeout, so a worker
        that waits on it between looks at storage keeps polling at its pace.

        Returns:
            ``True`` when told of new work (or when the listening connection
            was just made, and may have missed some); ``False`` when the time
            ran out or the storage is closed.
        """
        return self._listener.wait(timeout)

    def close(self) -> None:
        """Send the notification of new mail still due, then close every
        connection; later calls raise ``StorageError``. Idempotent."""
        self._notifier.close()
        self._listener.close()
        self._db.close()
