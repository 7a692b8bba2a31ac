"""The connections to one PostgreSQL database, and the work run on them.

:class:`Database` keeps a pool of connections (psycopg 3 and psycopg_pool), each
with the server-side timeouts set, and runs each storage call on one of them
under a client-side deadline (:mod:`.deadline`). Connections that broke (a
restarted server, a terminated backend, one cut off at its deadline) are
replaced by the pool in the background, with backoff; a call that meets one
before it changed anything retries on another. Every psycopg error leaves as a
:class:`~mailstrom_py.errors.StorageError` chained to its cause.
"""

from __future__ import annotations

import logging
import math
import select
from collections.abc import Callable
from typing import Any, Literal, TypeVar

import psycopg
from psycopg_pool import ConnectionPool

from ...errors import StorageError
from ..base import wrap_error
from .deadline import Watchdog

__all__ = ["Connection", "Database", "Timeouts"]

log = logging.getLogger(__name__)

#: A connection of the pool: autocommit, rows as tuples.
Connection = psycopg.Connection[tuple[Any, ...]]

T = TypeVar("T")
_Mode = Literal["read", "transaction", "statement", "again", "survey"]

#: The planner's own choices back, for the rest of one transaction (see
#: :meth:`Database.survey`).
_SURVEY_PLANNER = (
    "SELECT set_config('enable_seqscan', 'on', true),"
    " set_config('enable_hashjoin', 'on', true),"
    " set_config('enable_mergejoin', 'on', true),"
    " set_config('plan_cache_mode', 'auto', true)"
)

# A call's client-side deadline lets the server's own statement_timeout fire
# first, so a slow statement ends as a clean error on a connection still usable.
_GRACE = 1.0


class Timeouts:
    """The timeouts of a :class:`Database`, in seconds.

    Attributes:
        connect: connecting to the server, and waiting for a connection of the
            pool (when all are busy, or none can be made).
        statement: the server cancels a statement running longer; the client
            gives up on a call (its whole transaction) still unanswered
            ``statement + 1`` seconds after it began, and closes its
            connection.
        idle_in_transaction: the server ends a session that leaves a
            transaction open and idle longer (a client that vanished), which
            releases its locks.
    """

    __slots__ = ("connect", "idle_in_transaction", "statement")

    def __init__(self, connect: float, statement: float) -> None:
        self.connect = connect
        self.statement = statement
        self.idle_in_transaction = max(4 * (statement + _GRACE), 10.0)

    @property
    def call(self) -> float:
        """The client-side deadline of one call's work on its connection."""
        return self.statement + _GRACE


class Database:
    """A pool of connections to one database, and calls run on it.

    Args:
        dsn: a libpq connection string or URI.
        min_connections, max_connections: the size of the pool.
        timeouts: see :class:`Timeouts`.
        schema: the ``search_path`` of every session: the schema of the tables.
        name: the pool's name and the ``application_name`` of its sessions
            (unless the connection string sets one).
        password: the password, unless ``dsn`` has it.

    The pool opens in the background; the first calls wait for it up to the
    connect timeout.
    """

    def __init__(
        self,
        dsn: str,
        *,
        min_connections: int,
        max_connections: int,
        timeouts: Timeouts,
        schema: str,
        name: str,
        password: str | None = None,
    ) -> None:
        self.dsn = dsn
        self.timeouts = timeouts
        self.schema = schema
        self._password = password
        self._max_connections = max_connections
        self._watchdog = Watchdog()
        self._pool: ConnectionPool[Connection] = ConnectionPool(
            dsn,
            kwargs=self.connect_options(name),
            min_size=min_connections,
            max_size=max_connections,
            configure=self._configure,
            timeout=timeouts.connect,
            name=name,
            open=False,
        )
        self._closed = False

    def connect_options(self, name: str) -> dict[str, Any]:
        """The psycopg ``connect()`` arguments of every connection."""
        options: dict[str, Any] = {
            "autocommit": True,
            # libpq counts whole seconds, and at least 2.
            "connect_timeout": max(2, math.ceil(self.timeouts.connect)),
            # A peer that vanished from the network is noticed by the kernel.
            "keepalives": 1,
            "keepalives_idle": 30,
            "keepalives_interval": 10,
            "keepalives_count": 3,
        }
        if "application_name" not in self.dsn:
            options["application_name"] = name
        if self._password is not None:
            options["password"] = self._password
        return options

    def open(self, prepare: Callable[[Connection], None], timeout: float) -> None:
        """Connect once and run ``prepare`` (the schema's migration) on that
        connection, then open the pool.

        ``prepare`` gets ``timeout`` seconds, as its session's
        ``statement_timeout`` and, a second later, as its deadline on the
        client: a migration may take longer than any statement of the
        queue's work (building an index on a large queue, waiting for
        another process's), and the connection is closed after it.

        Connecting first, alone, makes a wrong address or password fail here
        with the server's own words, rather than as a pool timeout.

        Raises:
            StorageError: the server cannot be reached, or ``prepare`` failed.
        """
        try:
            conn = psycopg.connect(self.dsn, **self.connect_options("mailstrom_py"))
        except psycopg.Error as exc:
            raise wrap_error(exc, "connect to PostgreSQL") from exc
        try:
            with (
                conn,
                self._watchdog.guard(
                    conn.fileno(), timeout + _GRACE, "prepare the database"
                ),
            ):
                self._configure(conn)
                conn.execute(
                    "SELECT set_config('statement_timeout', %s, false)",
                    (f"{round(timeout * 1000)}ms",),
                )
                prepare(conn)
        except psycopg.Error as exc:
            raise wrap_error(exc, "prepare the database") from exc
        self._pool.open(wait=False)

    def read(self, action: str, body: Callable[[Connection], T]) -> T:
        """Run ``body``, which only reads, on a connection of the pool.

        Each statement of ``body`` is its own transaction (autocommit), so a
        read that must see one snapshot is one statement. A connection that
        broke under it (not one cut off at its deadline) is replaced, and
        ``body`` runs again.

        Raises:
            StorageError: no connection was had within the connect timeout, the
                server failed the statement, or did not answer in time.
        """
        return self._run(action, body, "read")

    def write(self, action: str, body: Callable[[Connection], T]) -> T:
        """Run ``body`` in one transaction on a connection of the pool, and
        commit it when ``body`` returns.

        An exception from ``body`` rolls the transaction back and propagates. A
        connection that broke before the commit was sent left nothing behind,
        so ``body`` runs again, in a new transaction on another connection
        (unless it was cut off at its deadline).

        Raises:
            StorageError: as :meth:`read`, and nothing was changed; or the
                connection was lost while committing, and whether the change
                was made is unknown (the message says so).
        """
        return self._run(action, body, "transaction")

    def write_statement(
        self, action: str, body: Callable[[Connection], T], *, again: bool = False
    ) -> T:
        """Run ``body``, whose one write is a single statement (its own
        transaction, one round trip), on a connection of the pool.

        A connection known to be broken is replaced before ``body`` runs. One
        lost while its statement runs leaves it unknown whether the write was
        committed: that raises (the message says so), unless ``again`` says
        that running ``body`` again is harmless even then, and it runs again on
        another connection.

        Raises:
            StorageError: as :meth:`write`.
        """
        return self._run(action, body, "again" if again else "statement")

    def survey(self, action: str, body: Callable[[Connection], T]) -> T:
        """Run ``body``, whose statements select by a filter over the whole
        queue (listings, counts, changes by filter), in one transaction with
        the planner's own choices: it may read a table whole, hash or merge,
        and plans each statement for the values given when that is cheaper.

        A session otherwise keeps one generic plan per statement that looks
        rows up by key (see :meth:`_configure`), right for claims and records
        but many times slower for a count of the pending mail or a filter by
        sender. ``body`` must run no statement that a claim, an extension or
        a record also runs, so that no plan made here is kept for those.
        Retried as :meth:`write` is.

        Raises:
            StorageError: as :meth:`write`.
        """
        return self._run(action, body, "survey")

    def _run(self, action: str, body: Callable[[Connection], T], mode: _Mode) -> T:
        last = self._max_connections
        for attempt in range(last + 1):
            conn = self._borrow(action)
            committing = mode == "statement"  # its one statement commits
            fired = False
            try:
                with self._watchdog.guard(
                    conn.fileno(), self.timeouts.call, action
                ) as guard:
                    try:
                        if mode not in ("transaction", "survey"):
                            return body(conn)  # autocommit
                        with conn.transaction():
                            if mode == "survey":
                                conn.execute(_SURVEY_PLANNER)
                            result = body(conn)
                            committing = True
                        return result
                    finally:
                        fired = guard.fired
            except psycopg.Error as exc:
                lost = conn.broken or fired
                # A server that did not answer in time is not asked again: the
                # call has had its deadline. A connection that broke at once (a
                # restarted server, an ended backend) is replaced.
                if lost and not fired and not committing and attempt < last:
                    log.info("connection lost while trying to %s; again", action)
                    continue
                if lost and committing:
                    raise StorageError(
                        f"storage failed to {action}: the connection was lost"
                        f" while committing, so whether it was done is unknown: {exc}"
                    ) from exc
                raise wrap_error(exc, action) from exc
            finally:
                self._give_back(conn)
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        """Close every connection and the pool's threads. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self._pool.close(timeout=self.timeouts.connect)
        finally:
            self._watchdog.close()

    # -- helpers --------------------------------------------------------------------

    def _configure(self, conn: Connection) -> None:
        """Set the schema, the server-side timeouts, the plan cache and the
        planner's choices of a new session."""
        # The statements run often (claims, records, reads by id) are
        # prepared; PostgreSQL would plan the claim afresh each time, which
        # costs more than running it, though the plan never changes.
        #
        # A session keeps the plan it made on first use, often while the
        # tables are small, when reading a whole table (or all of an index,
        # to hash or merge it) looks cheaper than looking rows up by key.
        # That plan would stay as the queue grows, each claim and record then
        # reading every message. Without those choices the planner looks
        # each row up through an index, whatever the size; it still scans a
        # table where no index serves. Listings and counts by filter take the
        # planner's own choices back for their transaction (survey()).
        conn.execute(
            "SELECT set_config('search_path', %s, false),"
            " set_config('statement_timeout', %s, false),"
            " set_config('idle_in_transaction_session_timeout', %s, false),"
            " set_config('plan_cache_mode', 'force_generic_plan', false),"
            " set_config('enable_seqscan', 'off', false),"
            " set_config('enable_hashjoin', 'off', false),"
            " set_config('enable_mergejoin', 'off', false)",
            (
                self.schema,
                f"{math.ceil(self.timeouts.statement * 1000)}ms",
                f"{math.ceil(self.timeouts.idle_in_transaction * 1000)}ms",
            ),
        )

    def _borrow(self, action: str) -> Connection:
        """A connection of the pool that is not known to be broken."""
        if self._closed:
            raise StorageError(f"cannot {action}: the storage is closed")
        for _ in range(self._max_connections + 1):
            try:
                conn = self._pool.getconn()
            except psycopg.Error as exc:
                raise wrap_error(
                    exc, f"{action} (no connection to PostgreSQL)"
                ) from exc
            if not _stale(conn):
                return conn
            conn.close()
            self._give_back(conn)
        raise StorageError(f"cannot {action}: every connection to PostgreSQL broke")

    def _give_back(self, conn: Connection) -> None:
        """Return ``conn`` to the pool, which replaces it if it is broken."""
        if conn.broken and not conn.closed:
            conn.close()
        try:
            self._pool.putconn(conn)
        except psycopg.Error as exc:  # pragma: no cover - the pool closed meanwhile
            log.info("a connection could not go back to the pool: %s", exc)


def _stale(conn: Connection) -> bool:
    """Whether an idle pooled connection is known to be broken: closed, or the
    server said something while it was idle (a backend ending its session sends
    a last message, then end-of-file; nothing else is sent unasked here)."""
    if conn.closed:
        return True
    try:
        readable, _, _ = select.select([conn.fileno()], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)
