"""How the schema's migrations run: one process at a time, under an advisory
lock held by its session, and indexes built without blocking writes.

A plain ``CREATE INDEX`` takes a SHARE lock on its table for the whole build:
every add, claim and record of every process waits behind it, and, since
PostgreSQL queues lock requests, behind a build that is itself waiting for an
open transaction to end. An :class:`OnlineIndex` step is built with
``CREATE INDEX CONCURRENTLY`` instead, which lets writes go on; it runs outside
any transaction, so the lock that keeps migrators apart is held by the
session (:func:`exclusive`), not by a transaction.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeAlias

from psycopg import sql

from ...errors import StorageError
from .db import Connection

__all__ = ["Migration", "OnlineIndex", "build_online", "exclusive", "run_script"]

log = logging.getLogger(__name__)

_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]*\Z")

#: Seconds between the first two tries of the lock while another process
#: migrates; the pause doubles from try to try, up to :data:`POLL_MAX`, so
#: that many processes waiting out a long index build ask little of the
#: database.
POLL = 0.05
POLL_MAX = 0.5


@dataclass(frozen=True)
class OnlineIndex:
    """A migration step that builds one index while the table stays open to
    reads and writes (``CREATE INDEX CONCURRENTLY``).

    The step is done once the index is valid: a build that was interrupted
    (its process killed, a deadlock, a statement timeout) leaves an invalid
    index of that name, which the next migration drops and builds again.

    Attributes:
        name: the index, a lower-case identifier (in the schema's tables).
        table: the table indexed, a lower-case identifier.
        definition: what follows ``ON table``: the columns or expressions in
            parentheses, and any ``WHERE``.

    Raises:
        ValueError: ``name`` or ``table`` is not a lower-case identifier.
    """

    name: str
    table: str
    definition: str

    def __post_init__(self) -> None:
        for field, value in (("name", self.name), ("table", self.table)):
            if not _IDENTIFIER.match(value):
                raise ValueError(f"{field} {value!r} is not a lower-case identifier")

    def statement(self, *, concurrently: bool) -> bytes:
        """The ``CREATE INDEX`` statement; one that finds the index made
        already does nothing."""
        how = "CONCURRENTLY " if concurrently else ""
        return (
            f"CREATE INDEX {how}IF NOT EXISTS {self.name}"
            f" ON {self.table} {self.definition}"
        ).encode()


#: One step of ``MIGRATIONS``: statements separated by ``;``, run in a
#: transaction, or an index built online.
Migration: TypeAlias = str | OnlineIndex


def run_script(conn: Connection, script: str) -> None:
    """Run each of the ``;``-separated statements of ``script``."""
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement.encode())


@contextlib.contextmanager
def exclusive(
    conn: Connection, key: int, what: str, *, done: Callable[[], bool]
) -> Iterator[bool]:
    """Hold the session-level advisory lock ``key`` on ``conn`` for the body,
    waiting for it up to the session's ``statement_timeout`` (for ever when
    it has none), unless ``done()`` says meanwhile that what the lock was
    wanted for was done by its holder.

    Yields ``True`` holding the lock, or ``False`` without it once ``done()``
    returned true (asked after each try that failed).

    The wait is a try now and then (:data:`POLL`), not ``pg_advisory_lock()``:
    a session waiting inside a statement holds a snapshot all along, and
    ``CREATE INDEX CONCURRENTLY`` waits for every older snapshot to end, so a
    process waiting for the lock while the holder builds an index would
    deadlock with it.

    Raises:
        StorageError: the lock was held by another session all that time.
        psycopg.Error: the database failed a statement.
    """
    limit = _statement_timeout(conn) or math.inf
    start = time.monotonic()
    pause = POLL
    while not _try_lock(conn, key):
        if done():
            yield False
            return
        waited = time.monotonic() - start
        if waited >= limit:
            raise StorageError(
                f"cannot {what}: another process has held the migration lock"
                f" for the {waited:.1f} s this one waited (migration_timeout)"
            )
        time.sleep(min(pause, limit - waited))
        pause = min(2 * pause, POLL_MAX)
    try:
        yield True
    finally:
        # A session that ended took its lock with it.
        if not conn.closed and not conn.broken:
            conn.execute("SELECT pg_advisory_unlock(%s)", (key,))


def build_online(conn: Connection, schema: str, index: OnlineIndex) -> None:
    """Build ``index`` in ``schema`` with ``CREATE INDEX CONCURRENTLY``.

    ``conn`` must be in autocommit mode with no transaction open. An invalid
    index of that name (a build interrupted before) is dropped first, with
    ``DROP INDEX CONCURRENTLY``; a valid one is kept as it is.

    Raises:
        StorageError: the index is not valid once the build returned (a
            relation of that name that is not an index, say).
        psycopg.Error: the database failed the build; the index it leaves, if
            any, is invalid, and the next call drops it.
    """
    qualified = sql.Identifier(schema, index.name)
    if _valid(conn, schema, index.name) is False:
        log.warning(
            "index %s.%s is invalid (an interrupted build); dropping it to build"
            " it again",
            schema,
            index.name,
        )
        conn.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(qualified))
    conn.execute(index.statement(concurrently=True))
    if _valid(conn, schema, index.name) is not True:
        raise StorageError(
            f"the index {schema}.{index.name} is not valid after it was built"
        )


def _valid(conn: Connection, schema: str, name: str) -> bool | None:
    """Whether the index ``schema.name`` is valid; None when there is none."""
    row = conn.execute(
        "SELECT i.indisvalid FROM pg_index i"
        " JOIN pg_class c ON c.oid = i.indexrelid"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relname = %s",
        (schema, name),
    ).fetchone()
    return None if row is None else bool(row[0])


def _try_lock(conn: Connection, key: int) -> bool:
    row = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
    return row is not None and bool(row[0])


def _statement_timeout(conn: Connection) -> float:
    """The session's ``statement_timeout`` in seconds; 0 for none."""
    row = conn.execute(
        "SELECT setting::float8 / 1000 FROM pg_settings"
        " WHERE name = 'statement_timeout'"
    ).fetchone()
    return 0.0 if row is None else float(row[0])
