"""Adding messages to SQLite and reading them back, and the event journal's
rows.

Each function runs on the connection it is given, inside the transaction of
one call of :class:`~mailstrom_py.storage.sqlite.SqliteStorage`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from ...errors import DuplicateMessageError, MessageNotFound
from ...message import PreparedEmail
from ..journal import JournalEntry
from ..rows import RECIPIENT_COLUMNS, prepared_email, queued_values, recipient_domain
from .schema import EMAIL_COLUMNS

__all__ = [
    "INSERT_MESSAGE",
    "INSERT_RECIPIENT",
    "email",
    "insert",
    "take_events",
    "write_events",
]

#: A message's row, every recipient pending: ``(message_id, mail_from,
#: smtputf8, eight_bit, require_tls, tls_optional, created_at, pending, due_at,
#: first_due_at)``.
INSERT_MESSAGE = (
    "INSERT INTO messages (message_id, mail_from, smtputf8, eight_bit,"
    " require_tls, tls_optional, created_at, pending, due_at, first_due_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
#: A recipient's row: ``(message, position, address, domain,
#: *recipient_values(r))``.
INSERT_RECIPIENT = (
    "INSERT INTO recipients (message, position, address, domain, "
    + ", ".join(RECIPIENT_COLUMNS)
    + ") VALUES (?, ?, ?, ?, "
    + ", ".join("?" * len(RECIPIENT_COLUMNS))
    + ")"
)
_INSERT_BODY = "INSERT INTO bodies (message, data) VALUES (?, ?)"
_INSERT_EVENT = "INSERT INTO events (payload) VALUES (?)"
# How SQLite reports a second message with a stored id.
_DUPLICATE_ID = "UNIQUE constraint failed: messages.message_id"


def insert(
    conn: sqlite3.Connection, emails: Sequence[PreparedEmail], now: float, due: float
) -> None:
    """Insert ``emails`` as added at ``now``, every recipient queued and due at
    ``due``: the rows of what :func:`~mailstrom_py.storage.rules.initial_status`
    gives.

    Raises:
        DuplicateMessageError: a message id is stored already.
        sqlite3.Error: SQLite failed.
    """
    queued = queued_values(due)
    for email in emails:
        recipients = email.recipients
        try:
            rowid = conn.execute(
                INSERT_MESSAGE,
                (
                    email.message_id,
                    email.mail_from,
                    email.smtputf8,  # a bool binds as the integer 0 or 1
                    email.eight_bit,
                    email.require_tls,
                    email.tls_optional,
                    now,
                    len(recipients),  # every recipient is pending
                    due,
                    due,
                ),
            ).lastrowid
        except sqlite3.IntegrityError as exc:
            # The UNIQUE index on message_id is the duplicate check; any other
            # constraint failing is a fault, reported as StorageError.
            if _DUPLICATE_ID in str(exc):
                raise DuplicateMessageError(email.message_id) from exc
            raise
        conn.execute(_INSERT_BODY, (rowid, email.data))
        if len(recipients) == 1:
            [address] = recipients
            conn.execute(
                INSERT_RECIPIENT,
                (rowid, 0, address, recipient_domain(address), *queued),
            )
        else:
            conn.executemany(
                INSERT_RECIPIENT,
                [
                    (rowid, n, address, recipient_domain(address), *queued)
                    for n, address in enumerate(recipients)
                ],
            )


def email(conn: sqlite3.Connection, message_id: str) -> PreparedEmail:
    """Read the message stored as ``message_id``.

    Raises:
        MessageNotFound: there is none.
    """
    rows = conn.execute(
        f"SELECT m.id, {EMAIL_COLUMNS} FROM messages m"
        " JOIN bodies b ON b.message = m.id WHERE m.message_id = ?",
        (message_id,),
    ).fetchall()
    if not rows:
        raise MessageNotFound(message_id)
    recipients = conn.execute(
        "SELECT address FROM recipients WHERE message = ? ORDER BY position",
        (rows[0][0],),
    ).fetchall()
    return prepared_email(
        message_id, (address for (address,) in recipients), rows[0][1:]
    )


def write_events(conn: sqlite3.Connection, events: Sequence[str]) -> None:
    """Append ``events`` (payloads) to the journal, in order."""
    if len(events) == 1:
        conn.execute(_INSERT_EVENT, (events[0],))
    elif events:
        conn.executemany(_INSERT_EVENT, [(e,) for e in events])


def take_events(conn: sqlite3.Connection, limit: int) -> list[JournalEntry]:
    """The first ``limit`` entries of the journal, oldest first."""
    rows = conn.execute(
        "SELECT id, payload FROM events ORDER BY id LIMIT ?", (limit,)
    ).fetchall()
    return [JournalEntry(int(i), str(p)) for i, p in rows]
