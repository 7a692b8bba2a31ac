"""The SQL that reads statuses and messages from PostgreSQL, and the queue
filters as SQL conditions.

Rows are turned into values by the same functions SQLite's rows go through
(:mod:`mailstrom_py.storage.rows`), since both backends keep the same
columns. Every time is in seconds since the epoch, as a double.
"""

from __future__ import annotations

from ...status import DeliveryResult
from ..query import QueueFilter
from ..sql import Dialect, filter_condition

__all__ = [
    "CLOCK",
    "DB_NOW",
    "EMAIL_QUERY",
    "FOLDED",
    "PENDING",
    "POSTGRES",
    "STATUSES_OF",
    "STATUS_COLUMNS",
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


#: The results of pending recipients, as an SQL list.
PENDING = f"('{DeliveryResult.QUEUED.value}', '{DeliveryResult.DEFERRED.value}')"

#: The columns ``statuses()`` reads, from ``messages m`` and ``recipients r``.
STATUS_COLUMNS = (
    "m.id, m.message_id, m.created_at, m.held, r.address, r.result, r.attempts,"
    " r.reply_code, r.reply_enhanced, r.reply_text, r.status_code, r.detail,"
    " r.last_attempt_at, r.next_attempt_at, r.possibly_delivered, r.remote_host,"
    " r.remote_address, r.remote_port, r.remote_tls_version, r.remote_tls_verified,"
    " r.reply_step, r.rcpt_code, r.rcpt_enhanced, r.rcpt_text,"
    " r.remote_tls_policy, r.remote_tls_policy_domain, r.remote_tls_result,"
    " r.remote_tls_failure"
)

#: The statuses of the messages a query yielding ``id, message_id, created_at,
#: held`` of ``messages`` returns (put in for ``{select}``, or named
#: ``{select}`` in a ``WITH``), oldest first, as rows for ``statuses()``. It
#: never reads a body.
STATUSES_OF = (
    f"SELECT {STATUS_COLUMNS} FROM ({{select}}) m"
    " LEFT JOIN recipients r ON r.message = m.id"
    " ORDER BY m.created_at, m.id, r.position"
)

#: The message with the id given: its envelope, body and recipients, one row.
EMAIL_QUERY = (
    "SELECT m.mail_from, m.smtputf8, m.eight_bit, m.require_tls, m.tls_optional,"
    " b.data, ARRAY(SELECT r.address FROM recipients r"
    " WHERE r.message = m.id ORDER BY r.position)"
    " FROM messages m JOIN bodies b ON b.message = m.id WHERE m.message_id = %s"
)
