"""The worker's bookkeeping in SQL: claiming messages for attempts and recording
their outcomes, a batch of messages in a few statements.

Every function runs inside the caller's write transaction, so a batch is
committed whole or not at all.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Sequence

from ...status import MessageStatus, RecipientStatus
from ..base import Claim
from ..rules import attempt_begun, merge_recipients
from .schema import (
    EMAIL_COLUMNS,
    PENDING,
    RECIPIENT_COLUMNS,
    STATUSES_OF,
    prepared_email,
    recipient_values,
    statuses,
)

__all__ = ["begin_attempts", "claim", "record"]

_CLAIMABLE = "m.held = 0 AND m.pending > 0 AND (m.due_at IS NULL OR m.due_at <= ?)"
_UPDATE_RECIPIENT = (
    "UPDATE recipients SET "
    + ", ".join(f"{column} = ?" for column in RECIPIENT_COLUMNS)
    + " WHERE message = ? AND position = ?"
)


def begin_attempts(
    conn: sqlite3.Connection,
    message_ids: Sequence[str],
    now: float,
    retry_at: Callable[[MessageStatus], float],
) -> list[tuple[int, MessageStatus, MessageStatus]]:
    """Claim the claimable messages among ``message_ids``, as
    :meth:`~mailstrom_py.storage.Storage.claim` does, without loading them.

    Returns:
        ``(rowid, status as found, status after the claim)`` per claimed
        message, in the order of ``message_ids``.
    """
    found, rowids = _load(conn, message_ids, _CLAIMABLE, now)
    claimed = []
    for message_id in dict.fromkeys(message_ids):
        before = found.get(message_id)
        if before is not None:
            after = attempt_begun(before, now, float(retry_at(before)))
            claimed.append((rowids[message_id], before, after))
    conn.executemany(
        "UPDATE recipients SET attempts = attempts + 1, last_attempt_at = ?,"
        f" next_attempt_at = ? WHERE message = ? AND result IN {PENDING}",
        [(now, after.next_attempt_at, rowid) for rowid, _, after in claimed],
    )
    # Every pending recipient is now due at retry_at, so the message is too.
    conn.executemany(
        "UPDATE messages SET due_at = ? WHERE id = ?",
        [(after.next_attempt_at, rowid) for rowid, _, after in claimed],
    )
    return claimed


def claim(
    conn: sqlite3.Connection,
    message_ids: Sequence[str],
    now: float,
    retry_at: Callable[[MessageStatus], float],
) -> list[Claim]:
    """Claim the claimable messages among ``message_ids`` and load them.

    Returns:
        What :meth:`~mailstrom_py.storage.Storage.claim` returns.
    """
    claimed = begin_attempts(conn, message_ids, now, retry_at)
    rows = conn.execute(
        f"SELECT m.id, {EMAIL_COLUMNS} FROM messages m"
        " JOIN bodies b ON b.message = m.id"
        " WHERE m.id IN (SELECT value FROM json_each(?))",
        (json.dumps([rowid for rowid, _, _ in claimed]),),
    ).fetchall()
    by_rowid = {int(row[0]): row[1:] for row in rows}
    return [
        Claim(
            before,
            after,
            prepared_email(
                before.message_id,
                (r.address for r in before.recipients),
                by_rowid[rowid],
            ),
        )
        for rowid, before, after in claimed
    ]


def record(
    conn: sqlite3.Connection,
    records: Sequence[tuple[str, Sequence[RecipientStatus]]],
) -> list[MessageStatus | None]:
    """Apply each ``(message_id, updates)`` in turn, as
    :meth:`~mailstrom_py.storage.Storage.record_many` does.

    Returns:
        The status after each update, ``None`` for an unknown id.
    """
    current, rowids = _load(conn, [message_id for message_id, _ in records])
    recorded: list[MessageStatus | None] = []
    changed_recipients: list[tuple[object, ...]] = []
    changed_messages: dict[int, tuple[int, float | None, int]] = {}
    for message_id, updates in records:
        before = current.get(message_id)
        if before is None:
            recorded.append(None)
            continue
        rowid = rowids[message_id]
        after = merge_recipients(before, updates)
        changed_recipients.extend(
            (*recipient_values(new), rowid, n)
            for n, (new, old) in enumerate(
                zip(after.recipients, before.recipients, strict=True)
            )
            if new != old
        )
        changed_messages[rowid] = (len(after.pending), after.next_attempt_at, rowid)
        current[message_id] = after
        recorded.append(after)
    conn.executemany(_UPDATE_RECIPIENT, changed_recipients)
    conn.executemany(
        "UPDATE messages SET pending = ?, due_at = ? WHERE id = ?",
        changed_messages.values(),
    )
    return recorded


def _load(
    conn: sqlite3.Connection,
    message_ids: Iterable[str],
    also: str = "1",
    *params: object,
) -> tuple[dict[str, MessageStatus], dict[str, int]]:
    """Load the statuses of the messages among ``message_ids`` that meet ``also``.

    Returns:
        The statuses and the rowids, both by message id.
    """
    select = (
        "SELECT * FROM messages m"
        f" WHERE m.message_id IN (SELECT value FROM json_each(?)) AND {also}"
    )
    rows = conn.execute(
        STATUSES_OF.format(select=select),
        (json.dumps(list(dict.fromkeys(message_ids))), *params),
    ).fetchall()
    rowids = {str(row[1]): int(row[0]) for row in rows}
    return {s.message_id: s for s in statuses(rows)}, rowids
