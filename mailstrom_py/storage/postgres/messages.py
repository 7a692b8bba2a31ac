"""Adding messages to PostgreSQL and reading them back.

Each function is the body of one call of
:class:`~mailstrom_py.storage.postgres.PostgresStorage`, run on the connection
it is given.
"""

from __future__ import annotations

import base64
import json
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

# One statement adds the batch, so a duplicate id fails it whole. Its
# parameters are three JSON values: the messages in order, and objects keyed by
# message id of their bodies (base64) and of their recipients ([address,
# domain] in order). Each added message finds its body and recipients by key,
# not by a join, whose cost would grow with the square of the batch under the
# sessions' planner settings (see db.py).
_ADD = f"""
WITH {CLOCK}, due AS (
    SELECT coalesce(%s::float8, clock.now) AS at FROM clock
), added AS (
    INSERT INTO messages (message_id, mail_from, smtputf8, eight_bit, require_tls,
        tls_optional, created_at, pending, due_at, completed_at, first_due_at)
    SELECT u.message_id, u.mail_from, u.smtputf8, u.eight_bit, u.require_tls,
        u.tls_optional, clock.now, u.pending,
        CASE WHEN u.pending > 0 THEN due.at END,
        CASE WHEN u.pending = 0 THEN clock.now END, due.at
    FROM json_to_recordset(%s::json) AS u(n int, message_id text, mail_from text,
            smtputf8 bool, eight_bit bool, require_tls bool, tls_optional bool,
            pending int),
        clock, due
    ORDER BY u.n
    RETURNING id, message_id, created_at
), added_bodies AS (
    INSERT INTO bodies (message, data)
    SELECT a.id, decode(%s::jsonb ->> a.message_id, 'base64') FROM added a
), added_recipients AS (
    INSERT INTO recipients (message, position, address, domain, next_attempt_at)
    SELECT a.id, r.n - 1, r.pair ->> 0, r.pair ->> 1, due.at
    FROM added a, due,
        LATERAL jsonb_array_elements(%s::jsonb -> a.message_id)
            WITH ORDINALITY AS r(pair, n)
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


def _columns(emails: Sequence[PreparedEmail]) -> list[str]:
    """The JSON values :data:`_ADD` reads: the messages' columns, their
    bodies, their recipients."""
    messages = [
        {
            "n": n,
            "message_id": email.message_id,
            "mail_from": email.mail_from,
            "smtputf8": email.smtputf8,
            "eight_bit": email.eight_bit,
            "require_tls": email.require_tls,
            "tls_optional": email.tls_optional,
            "pending": len(email.recipients),  # every recipient is pending
        }
        for n, email in enumerate(emails)
    ]
    bodies = {
        email.message_id: base64.b64encode(email.data).decode("ascii")
        for email in emails
    }
    recipients = {
        email.message_id: [(a, recipient_domain(a)) for a in email.recipients]
        for email in emails
    }
    return [json.dumps(messages), json.dumps(bodies), json.dumps(recipients)]


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
        "SELECT id, message_id, created_at, held, first_due_at FROM messages m"
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
