"""Adding messages to PostgreSQL and reading them back.

Each function is the body of one call of
:class:`~mailstrom_py.storage.postgres.PostgresStorage`, run on the connection
it is given.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import psycopg

from ...errors import DuplicateMessageError, MessageNotFound
from ...message import PreparedEmail
from ...status import MessageStatus
from ..rows import STATUSES_OF, prepared_email, recipient_domain, statuses
from ..rules import initial_status
from .db import Connection
from .rows import CLOCK, EMAIL_QUERY

__all__ = ["add_many", "email", "status"]

# One statement adds the batch, so a duplicate id fails it whole.
_ADD = f"""
WITH {CLOCK}, due AS (
    SELECT coalesce(%s::float8, clock.now) AS at FROM clock
), added AS (
    INSERT INTO messages (message_id, mail_from, smtputf8, eight_bit, require_tls,
        tls_optional, created_at, pending, due_at, completed_at)
    SELECT u.message_id, u.mail_from, u.smtputf8, u.eight_bit, u.require_tls,
        u.tls_optional, clock.now, u.pending,
        CASE WHEN u.pending > 0 THEN due.at END,
        CASE WHEN u.pending = 0 THEN clock.now END
    FROM unnest(%s::text[], %s::text[], %s::bool[], %s::bool[], %s::bool[],
        %s::bool[], %s::int[]) WITH ORDINALITY
        AS u(message_id, mail_from, smtputf8, eight_bit, require_tls, tls_optional,
             pending, n),
        clock, due
    ORDER BY u.n
    RETURNING id, message_id, created_at
), added_bodies AS (
    INSERT INTO bodies (message, data)
    SELECT a.id, u.data
    FROM unnest(%s::text[], %s::bytea[]) AS u(message_id, data)
    JOIN added a USING (message_id)
), added_recipients AS (
    INSERT INTO recipients (message, position, address, domain, next_attempt_at)
    SELECT a.id, u.position, u.address, u.domain, due.at
    FROM unnest(%s::text[], %s::int[], %s::text[], %s::text[])
        AS u(message_id, position, address, domain)
    JOIN added a USING (message_id), due
)
SELECT message_id, created_at FROM added
"""
# A scheduled message's due time is absolute, kept as given whichever clock
# decides `now`.

_DUPLICATE_DETAIL = re.compile(r"\(message_id\)=\((.*)\)")


def add_many(
    conn: Connection,
    emails: Sequence[PreparedEmail],
    now: float | None,
    send_at: float | None = None,
) -> list[MessageStatus]:
    """Add ``emails`` in one statement, at ``now`` (the database's clock when
    None), due at ``send_at`` (when None, at once); the caller has checked
    that their ids are distinct."""
    try:
        rows = conn.execute(_ADD, [now, send_at, *_columns(emails)]).fetchall()
    except psycopg.errors.UniqueViolation as exc:
        raise DuplicateMessageError(_duplicate(conn, emails, exc)) from exc
    created = {str(message_id): float(at) for message_id, at in rows}
    return [initial_status(e, created[e.message_id], send_at) for e in emails]


def _columns(emails: Sequence[PreparedEmail]) -> list[list[object]]:
    """The arrays :data:`_ADD` unnests: the messages' columns, their bodies',
    then their recipients'."""
    messages: list[list[object]] = [[] for _ in range(7)]
    recipients: list[list[object]] = [[] for _ in range(4)]
    for email in emails:
        row = (
            email.message_id,
            email.mail_from,
            email.smtputf8,
            email.eight_bit,
            email.require_tls,
            email.tls_optional,
            len(email.recipients),  # every recipient is pending
        )
        for column, value in zip(messages, row, strict=True):
            column.append(value)
        for n, address in enumerate(email.recipients):
            values = (email.message_id, n, address, recipient_domain(address))
            for column, value in zip(recipients, values, strict=True):
                column.append(value)
    bodies: list[list[object]] = [
        [email.message_id for email in emails],
        [email.data for email in emails],
    ]
    return messages + bodies + recipients


def _duplicate(
    conn: Connection, emails: Sequence[PreparedEmail], exc: psycopg.Error
) -> str:
    """The id that made the batch fail: one stored already."""
    if conn.info.transaction_status is psycopg.pq.TransactionStatus.INERROR:
        # Within a larger transaction, which the failure ended: the server's
        # words are all there is.
        found = _DUPLICATE_DETAIL.search(exc.diag.message_detail or "")
        return found.group(1) if found else emails[0].message_id
    row = conn.execute(
        "SELECT message_id FROM messages WHERE message_id = ANY(%s::text[]) LIMIT 1",
        ([e.message_id for e in emails],),
    ).fetchone()
    if row is not None:
        return str(row[0])
    # Dropped again meanwhile: the server's words name it.
    found = _DUPLICATE_DETAIL.search(exc.diag.message_detail or "")
    return found.group(1) if found else emails[0].message_id


def status(conn: Connection, message_id: str) -> MessageStatus:
    select = (
        "SELECT id, message_id, created_at, held FROM messages m"
        " WHERE m.message_id = %s"
    )
    found = statuses(
        conn.execute(STATUSES_OF.format(select=select), (message_id,)).fetchall()
    )
    if not found:
        raise MessageNotFound(message_id)
    return found[0]


def email(conn: Connection, message_id: str) -> PreparedEmail:
    row = conn.execute(EMAIL_QUERY, (message_id,)).fetchone()
    if row is None:
        raise MessageNotFound(message_id)
    *envelope, addresses = row
    return prepared_email(message_id, addresses, envelope)
