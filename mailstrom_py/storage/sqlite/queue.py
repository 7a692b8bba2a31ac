"""The queue operations of :class:`~mailstrom_py.SqliteStorage` in SQL: reading
statuses, and finding, counting, kicking, holding, releasing, scheduling,
failing, dropping and reporting the messages a
:class:`~mailstrom_py.QueueFilter` selects.

Each function runs on the connection of the caller's transaction (a read for
the readers, a write for the others).
"""

from __future__ import annotations

import json
import sqlite3

from ...status import MessageStatus
from ..query import QueueFilter
from ..rows import PENDING, STATUSES_OF, recipient_values, statuses
from ..rules import failed_by_operator
from ..sql import filter_condition
from .claims import LIVE_CLAIM, UPDATE_RECIPIENT

__all__ = [
    "count",
    "drop",
    "fail",
    "find",
    "kick",
    "purge",
    "recent",
    "schedule",
    "select",
    "set_held",
    "status_of",
]

_OLDEST_FIRST = " ORDER BY m.created_at, m.id"


def status_of(conn: sqlite3.Connection, message_id: str) -> MessageStatus | None:
    """Return the status of the message ``message_id``, None if unknown."""
    select = "SELECT * FROM messages m WHERE m.message_id = ?"
    found = statuses(conn.execute(STATUSES_OF.format(select=select), (message_id,)))
    return found[0] if found else None


def find(
    conn: sqlite3.Connection, where: QueueFilter, limit: int | None
) -> list[MessageStatus]:
    """The statuses of the messages ``where`` selects, oldest first."""
    clause, params = filter_condition(where)
    select = f"SELECT * FROM messages m WHERE {clause}{_OLDEST_FIRST} LIMIT ?"
    rows = conn.execute(
        STATUSES_OF.format(select=select), (*params, -1 if limit is None else limit)
    )
    return statuses(rows)


def count(conn: sqlite3.Connection, where: QueueFilter) -> int:
    """How many messages ``where`` selects."""
    clause, params = filter_condition(where)
    [(found,)] = conn.execute(
        f"SELECT count(*) FROM messages m WHERE {clause}", params
    ).fetchall()
    return int(found)


def kick(conn: sqlite3.Connection, where: QueueFilter, now: float) -> list[str]:
    """Make the selected pending messages due at ``now``, but for those under a
    live claim, whose attempt is under way; return the ids of all of them."""
    selected = select(conn, where, "m.pending > 0")
    free = select(conn, where, f"m.pending > 0 AND NOT ({LIVE_CLAIM})", now)
    conn.executemany(
        "UPDATE recipients SET next_attempt_at = ? WHERE message = ?"
        f" AND result IN {PENDING}"
        " AND (next_attempt_at IS NULL OR next_attempt_at > ?)",
        [(now, rowid, now) for rowid, _ in free],
    )
    conn.executemany(
        "UPDATE messages SET due_at = min(coalesce(due_at, ?), ?) WHERE id = ?",
        [(now, now, rowid) for rowid, _ in free],
    )
    return [message_id for _, message_id in selected]


def set_held(conn: sqlite3.Connection, where: QueueFilter, *, held: bool) -> list[str]:
    """Hold the selected messages that are pending and not held, or release the
    selected held ones; return their ids."""
    state = "m.pending > 0 AND m.held = 0" if held else "m.held = 1"
    selected = select(conn, where, state)
    conn.executemany(
        "UPDATE messages SET held = ? WHERE id = ?",
        [(int(held), rowid) for rowid, _ in selected],
    )
    return [message_id for _, message_id in selected]


def schedule(
    conn: sqlite3.Connection, where: QueueFilter, at: float, now: float
) -> list[str]:
    """Make the selected pending messages due at ``at``, but for those under a
    live claim at ``now``; return the ids of those changed. Those none of
    whose recipients was attempted are first due at ``at`` too."""
    free = select(conn, where, f"m.pending > 0 AND NOT ({LIVE_CLAIM})", now)
    conn.executemany(
        "UPDATE recipients SET next_attempt_at = ? WHERE message = ?"
        f" AND result IN {PENDING}",
        [(at, rowid) for rowid, _ in free],
    )
    conn.executemany(
        "UPDATE messages SET due_at = ?, first_due_at = CASE WHEN EXISTS"
        " (SELECT 1 FROM recipients r WHERE r.message = messages.id"
        " AND r.attempts > 0) THEN first_due_at ELSE ? END WHERE id = ?",
        [(at, at, rowid) for rowid, _ in free],
    )
    return [message_id for _, message_id in free]


def fail(conn: sqlite3.Connection, where: QueueFilter) -> list[MessageStatus]:
    """Fail every pending recipient of the selected messages, ending their
    claims; return the statuses after."""
    selected = select(conn, where, "m.pending > 0")
    packed = json.dumps([rowid for rowid, _ in selected])
    query = "SELECT * FROM messages m WHERE m.id IN (SELECT value FROM json_each(?))"
    before = statuses(conn.execute(STATUSES_OF.format(select=query), (packed,)))
    after = [failed_by_operator(status) for status in before]
    conn.executemany(
        UPDATE_RECIPIENT,
        [
            (*recipient_values(new), rowid, n)
            for (rowid, _), old_status, new_status in zip(
                selected, before, after, strict=True
            )
            for n, (new, old) in enumerate(
                zip(new_status.recipients, old_status.recipients, strict=True)
            )
            if new != old
        ],
    )
    conn.execute(
        "UPDATE messages SET pending = 0, due_at = NULL, claim_token = NULL"
        " WHERE id IN (SELECT value FROM json_each(?))",
        (packed,),
    )
    return after


def drop(conn: sqlite3.Connection, where: QueueFilter) -> list[str]:
    """Delete the selected messages, claims and all; return their ids."""
    selected = select(conn, where)
    rowids = [(rowid,) for rowid, _ in selected]
    conn.executemany("DELETE FROM recipients WHERE message = ?", rowids)
    conn.executemany("DELETE FROM bodies WHERE message = ?", rowids)
    conn.executemany("DELETE FROM messages WHERE id = ?", rowids)
    return [message_id for _, message_id in selected]


def purge(conn: sqlite3.Connection, before: float, batch: int) -> int:
    """Delete up to ``batch`` completed messages that completed before
    ``before``, oldest first; return how many.

    SQLite keeps no completion time: a message completed when the attempt that
    completed its last recipient began, the latest ``last_attempt_at`` of its
    recipients (its creation, for a message none was attempted for)."""
    rowids = [
        (rowid,)
        for (rowid,) in conn.execute(
            "SELECT m.id FROM messages m WHERE m.pending = 0 AND coalesce("
            " (SELECT max(r.last_attempt_at) FROM recipients r"
            " WHERE r.message = m.id), m.created_at) < ?"
            " ORDER BY m.id LIMIT ?",
            (before, batch),
        )
    ]
    conn.executemany("DELETE FROM recipients WHERE message = ?", rowids)
    conn.executemany("DELETE FROM bodies WHERE message = ?", rowids)
    conn.executemany("DELETE FROM messages WHERE id = ?", rowids)
    return len(rowids)


def recent(conn: sqlite3.Connection, limit: int | None) -> list[MessageStatus]:
    """Completed messages not reported before (marked reported now), then every
    pending one, as :meth:`~mailstrom_py.storage.QueueAdmin.recent` says."""
    fresh = (
        "SELECT {columns} FROM messages m WHERE m.pending = 0 AND m.reported = 0"
        f"{_OLDEST_FIRST} LIMIT ?"
    )
    pending = f"SELECT * FROM messages m WHERE m.pending > 0{_OLDEST_FIRST} LIMIT ?"
    cap = -1 if limit is None else limit
    reported = statuses(
        conn.execute(STATUSES_OF.format(select=fresh.format(columns="*")), (cap,))
    )
    marked = fresh.format(columns="m.id")
    conn.execute(f"UPDATE messages SET reported = 1 WHERE id IN ({marked})", (cap,))
    room = -1 if limit is None else max(limit - len(reported), 0)
    incomplete = statuses(conn.execute(STATUSES_OF.format(select=pending), (room,)))
    return reported + incomplete


def select(
    conn: sqlite3.Connection, where: QueueFilter, also: str = "1", *params: object
) -> list[tuple[int, str]]:
    """The rowids and ids of the messages ``where`` selects that also meet the
    condition ``also`` (with ``params``), oldest first."""
    clause, filter_params = filter_condition(where)
    rows = conn.execute(
        f"SELECT m.id, m.message_id FROM messages m WHERE ({clause}) AND {also}"
        + _OLDEST_FIRST,
        (*filter_params, *params),
    ).fetchall()
    return [(int(rowid), str(message_id)) for rowid, message_id in rows]
