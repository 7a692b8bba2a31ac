"""Queue administration in PostgreSQL: find, count, kick, hold, release,
schedule, fail, drop, recent, and the removal of old completed mail.

Each function is the body of one call of
:class:`~mailstrom_py.storage.postgres.PostgresStorage`, run on the connection
it is given. Each change but :func:`fail` (which runs in the caller's
transaction) is one statement, so it is atomic by itself; lists
come oldest first (by ``created_at``, then the order added).
"""

from __future__ import annotations

from ...status import MessageStatus, RecipientStatus
from ..query import QueueFilter
from ..rows import PENDING, STATUSES_OF, statuses
from ..rules import failed_by_operator
from .claims import UPDATE_RECIPIENTS, recipient_arrays
from .db import Connection
from .notify import notify_sql
from .rows import CLOCK, where_clause

__all__ = [
    "count",
    "drop",
    "fail",
    "find",
    "hold",
    "kick",
    "purge",
    "recent",
    "release",
    "schedule",
]


def find(
    conn: Connection, where: QueueFilter, limit: int | None
) -> list[MessageStatus]:
    clause, params = where_clause(where)
    select = (
        "SELECT m.id, m.message_id, m.created_at, m.held, m.first_due_at"
        " FROM messages m"
        f" WHERE {clause} ORDER BY m.created_at, m.id LIMIT %s"
    )
    query = STATUSES_OF.format(select=select)
    return statuses(conn.execute(query, [*params, limit]).fetchall())


def count(conn: Connection, where: QueueFilter) -> int:
    clause, params = where_clause(where)
    row = conn.execute(
        f"SELECT count(*) FROM messages m WHERE {clause}", params
    ).fetchone()
    return int(row[0]) if row else 0


def kick(
    conn: Connection, where: QueueFilter, now: float | None, channel: str
) -> list[str]:
    """Make the selected pending messages due at ``now`` (the database's clock
    when None), but for those under a live claim, whose attempt is under way;
    return the ids of all of them."""
    clause, params = where_clause(where)
    query = f"""
        WITH {CLOCK}, selected AS (
            SELECT m.id, m.message_id, m.created_at,
                m.claim_token IS NOT NULL AND m.due_at > clock.now AS claimed
            FROM messages m, clock
            WHERE ({clause}) AND m.pending > 0 FOR UPDATE OF m
        ), kicked_recipients AS (
            UPDATE recipients r SET next_attempt_at = clock.now FROM clock
            WHERE r.message IN (SELECT id FROM selected WHERE NOT claimed)
              AND r.result IN {PENDING}
              AND (r.next_attempt_at IS NULL OR r.next_attempt_at > clock.now)
        ), kicked AS (
            UPDATE messages m SET due_at = least(m.due_at, clock.now)
            FROM selected s, clock WHERE m.id = s.id AND NOT s.claimed
        )
        SELECT message_id, {notify_sql(channel)} FROM selected
        ORDER BY created_at, id
    """
    rows = conn.execute(query, [now, *params]).fetchall()
    return [str(row[0]) for row in rows]


def hold(conn: Connection, where: QueueFilter) -> list[str]:
    clause, params = where_clause(where)
    query = f"""
        WITH changed AS (
            UPDATE messages m SET held = true
            WHERE ({clause}) AND m.pending > 0 AND NOT m.held
            RETURNING m.id, m.message_id, m.created_at
        )
        SELECT message_id FROM changed ORDER BY created_at, id
    """
    return [str(row[0]) for row in conn.execute(query, params).fetchall()]


def release(conn: Connection, where: QueueFilter, channel: str) -> list[str]:
    clause, params = where_clause(where)
    # A released message may be due at once: tell the workers, as adding does.
    query = f"""
        WITH changed AS (
            UPDATE messages m SET held = false WHERE ({clause}) AND m.held
            RETURNING m.id, m.message_id, m.created_at
        )
        SELECT message_id, {notify_sql(channel)} FROM changed
        ORDER BY created_at, id
    """
    return [str(row[0]) for row in conn.execute(query, params).fetchall()]


def schedule(
    conn: Connection,
    where: QueueFilter,
    at: float,
    now: float | None,
    channel: str,
) -> list[str]:
    """Make the selected pending messages due at ``at``, but for those under a
    live claim at ``now`` (the database's clock when None); return the ids of
    those changed. Workers are told, as a message made due sooner may be due."""
    clause, params = where_clause(where)
    query = f"""
        WITH {CLOCK}, selected AS (
            SELECT m.id, m.message_id, m.created_at FROM messages m, clock
            WHERE ({clause}) AND m.pending > 0
              AND NOT (m.claim_token IS NOT NULL AND m.due_at > clock.now)
            FOR UPDATE OF m
        ), scheduled_recipients AS (
            UPDATE recipients r SET next_attempt_at = %s
            WHERE r.message IN (SELECT id FROM selected) AND r.result IN {PENDING}
        ), scheduled AS (
            UPDATE messages m SET due_at = %s,
                first_due_at = CASE WHEN EXISTS (SELECT 1 FROM recipients r
                    WHERE r.message = m.id AND r.attempts > 0)
                THEN m.first_due_at ELSE %s END
            FROM selected s WHERE m.id = s.id
        )
        SELECT message_id, {notify_sql(channel)} FROM selected
        ORDER BY created_at, id
    """
    rows = conn.execute(query, [now, *params, at, at, at]).fetchall()
    return [str(row[0]) for row in rows]


def fail(
    conn: Connection, where: QueueFilter, now: float | None
) -> list[MessageStatus]:
    """Fail every pending recipient of the selected messages, ending their
    claims, complete at ``now`` (the database's clock when None); return the
    statuses after. Runs in the caller's transaction."""
    clause, params = where_clause(where)
    heads = conn.execute(
        f"SELECT m.id FROM messages m WHERE ({clause}) AND m.pending > 0"
        " ORDER BY m.created_at, m.id FOR UPDATE",
        params,
    ).fetchall()
    rowids = [int(row[0]) for row in heads]
    if not rowids:
        return []
    select = (
        "SELECT id, message_id, created_at, held, first_due_at FROM messages m"
        " WHERE m.id = ANY(%s::bigint[])"
    )
    before = statuses(conn.execute(STATUSES_OF.format(select=select), [rowids]))
    after = [failed_by_operator(status) for status in before]
    changed: dict[tuple[int, int], RecipientStatus] = {}
    for rowid, old_status, new_status in zip(rowids, before, after, strict=True):
        pairs = zip(new_status.recipients, old_status.recipients, strict=True)
        for n, (new, old) in enumerate(pairs):
            if new != old:
                changed[rowid, n] = new
    if changed:
        conn.execute(UPDATE_RECIPIENTS, recipient_arrays(changed))
    conn.execute(
        f"WITH {CLOCK} UPDATE messages m SET pending = 0, due_at = NULL,"
        " claim_token = NULL, claim_skew = NULL, completed_at = clock.now"
        " FROM clock WHERE m.id = ANY(%s::bigint[])",
        [now, rowids],
    )
    return after


def drop(conn: Connection, where: QueueFilter) -> list[str]:
    clause, params = where_clause(where)
    query = f"""
        WITH dropped AS (
            DELETE FROM messages m WHERE {clause}
            RETURNING m.id, m.message_id, m.created_at
        )
        SELECT message_id FROM dropped ORDER BY created_at, id
    """
    return [str(row[0]) for row in conn.execute(query, params).fetchall()]


def recent(conn: Connection, limit: int | None) -> list[MessageStatus]:
    """Run in a transaction. The completed messages are marked reported by the
    statement that reads them, which skips those another session has locked (a
    concurrent ``recent()``, or an outcome being recorded): those come in a
    later call, so each is returned once across every process."""
    fresh = """
        WITH fresh AS (
            UPDATE messages SET reported = true
            WHERE id IN (
                SELECT id FROM messages WHERE pending = 0 AND NOT reported
                ORDER BY created_at, id LIMIT %s
                FOR UPDATE SKIP LOCKED
            )
            RETURNING id, message_id, created_at, held, first_due_at
        )
    """
    select = "SELECT * FROM fresh"
    rows = conn.execute(fresh + STATUSES_OF.format(select=select), [limit])
    reported = statuses(rows.fetchall())
    room = None if limit is None else max(limit - len(reported), 0)
    pending = (
        "SELECT id, message_id, created_at, held, first_due_at FROM messages m"
        " WHERE m.pending > 0 ORDER BY m.created_at, m.id LIMIT %s"
    )
    rows = conn.execute(STATUSES_OF.format(select=pending), [room])
    return reported + statuses(rows.fetchall())


def purge(
    conn: Connection, older_than: float, now: float | None, batch: int
) -> list[str]:
    """Remove up to ``batch`` messages completed more than ``older_than``
    seconds before ``now`` (the database's clock when ``now`` is None), oldest
    first, skipping any another session has locked.

    Returns:
        The ids removed.
    """
    query = f"""
        WITH {CLOCK}, doomed AS (
            SELECT m.id FROM messages m, clock
            WHERE m.pending = 0 AND m.completed_at < clock.now - %s
            ORDER BY m.completed_at LIMIT %s
            FOR UPDATE OF m SKIP LOCKED
        )
        DELETE FROM messages WHERE id IN (SELECT id FROM doomed)
        RETURNING message_id
    """
    rows = conn.execute(query, [now, older_than, batch]).fetchall()
    return [str(row[0]) for row in rows]
