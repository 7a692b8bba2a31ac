"""The event journal in PostgreSQL: each function runs on the connection
(and in the transaction) it is given."""

from __future__ import annotations

from collections.abc import Sequence

from ..journal import JournalEntry
from .db import Connection

__all__ = ["ack", "take", "write"]


def write(conn: Connection, events: Sequence[str]) -> None:
    """Append ``events`` to the journal, in order."""
    if events:
        conn.execute(
            "INSERT INTO events (payload) SELECT p FROM unnest(%s::text[])"
            " WITH ORDINALITY AS u(p, n) ORDER BY n",
            (list(events),),
        )


def take(conn: Connection, limit: int) -> list[JournalEntry]:
    """The oldest ``limit`` events."""
    rows = conn.execute(
        "SELECT id, payload FROM events ORDER BY id LIMIT %s", (limit,)
    ).fetchall()
    return [JournalEntry(int(i), str(p)) for i, p in rows]


def ack(conn: Connection, ids: Sequence[int]) -> None:
    """Remove the events ``ids`` names."""
    conn.execute("DELETE FROM events WHERE id = ANY(%s::bigint[])", (list(ids),))
