"""The SQL that reads statuses and messages from PostgreSQL, and the queue
filters as SQL conditions.

Rows are turned into values by the same functions SQLite's rows go through
(:mod:`mailstrom_py.storage.rows`), since both backends keep the same
columns. Every time is in seconds since the epoch, as a double.
"""

from __future__ import annotations

from ..query import QueueFilter
from ..sql import Dialect, filter_condition

__all__ = [
    "CLOCK",
    "DB_NOW",
    "EMAIL_QUERY",
    "FOLDED",
    "POSTGRES",
    "where_clause",
]

#: The database's clock: the start of the transaction, in seconds since the epoch.
DB_NOW = "extract(epoch FROM now())::float8"

#: A ``WITH`` query named ``clock`` with one row: ``now``, the time of the call.
#: Its one parameter is the ``now`` of the call when the storage keeps its
#: callers' time, or NULL for the database's clock.
CLOCK = f"clock AS (SELECT coalesce(%s::float8, {DB_NOW}) AS now)"

_UPPER, _LOWER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz"


def _folded(text: str) -> str:
    """``text`` (SQL) with its ASCII letters in lower case, as
    :func:`~mailstrom_py.storage.query.fold_case` does it (``lower()`` would
    fold other letters too, in some locales)."""
    return f"translate({text}, '{_UPPER}', '{_LOWER}')"


#: A recipient's address as the queue filters compare it; an index serves it.
FOLDED = _folded("address")

#: PostgreSQL through psycopg, for the shared filter SQL: lists are arrays.
POSTGRES = Dialect(
    param="%s",
    one_of="{column} = ANY({p}::text[])",
    pack_list=list,
    equal_nocase=f"{_folded('{column}')} = {_folded('{p}')}",
)


def where_clause(where: QueueFilter) -> tuple[str, list[object]]:
    """Return an SQL condition on ``messages m`` for ``where``, and its
    parameters in order."""
    return filter_condition(where, POSTGRES)


#: The message with the id given: its envelope, body and recipients, one row.
EMAIL_QUERY = (
    "SELECT m.mail_from, m.smtputf8, m.eight_bit, m.require_tls, m.tls_optional,"
    " b.data, ARRAY(SELECT r.address FROM recipients r"
    " WHERE r.message = m.id ORDER BY r.position)"
    " FROM messages m JOIN bodies b ON b.message = m.id WHERE m.message_id = %s"
)
