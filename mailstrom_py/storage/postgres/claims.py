"""The worker's bookkeeping in PostgreSQL: claiming due messages in batches
(their outcomes are recorded by :mod:`.outcomes`).

A claim lives in ``messages``, as in SQLite: ``claim_token`` holds the token of
the last claim not yet recorded, and ``due_at`` the end of its lease while it
lasts, so the partial index ``messages_due_order`` serves claims and ``next_due``.
Claims take the due rows no other session holds (``FOR UPDATE SKIP LOCKED``), so
workers claiming at once take different messages, never waiting for each other.

``claim_skew`` is how far the claimant's clock was behind the database's when it
claimed (0 when the storage keeps its callers' clock): the times the worker
records for the attempt (when it began, when to retry) are on its own clock, and
are moved by that much onto the database's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from ...status import RecipientStatus
from ..base import Claim
from ..rows import (
    PENDING,
    RECIPIENT_COLUMNS,
    STATUS_COLUMNS,
    prepared_email,
    recipient_values,
    statuses,
)
from ..rules import attempt_begun
from .db import Connection
from .rows import CLOCK, DB_NOW

__all__ = [
    "UPDATE_RECIPIENTS",
    "Claimed",
    "claim_due",
    "extend",
    "next_due",
    "recipient_arrays",
]

# One statement: lock the due rows no one else holds, make them claimed (each
# with a token of 32 random hexadecimal digits, from the server), count
# the attempt of their pending recipients, and return each message as found
# (the recipients read are those of the statement's snapshot, before the
# update) with its content, the body on its first row only. The clock's row
# comes back even when nothing is due, for the skew.
_CLAIM = f"""
WITH {CLOCK}, locked AS (
    SELECT m.id, m.due_at FROM messages m, clock
    WHERE m.pending > 0 AND NOT m.held AND m.due_at <= clock.now
    ORDER BY m.due_at, m.id LIMIT %s
    FOR UPDATE OF m SKIP LOCKED
), numbered AS (
    SELECT id, row_number() OVER (ORDER BY due_at, id) AS n FROM locked
), claimed AS (
    UPDATE messages m SET due_at = clock.now + %s,
        claim_token = replace(gen_random_uuid()::text, '-', ''),
        claim_skew = clock.now - %s
    FROM numbered, clock
    WHERE m.id = numbered.id
    RETURNING m.id, m.message_id, m.created_at, m.held, m.mail_from, m.smtputf8,
        m.eight_bit, m.require_tls, m.tls_optional, numbered.n, m.claim_token
), counted AS (
    UPDATE recipients r SET attempts = r.attempts + 1,
        last_attempt_at = clock.now, next_attempt_at = clock.now + %s
    FROM claimed, clock WHERE r.message = claimed.id AND r.result IN {PENDING}
)
SELECT clock.now, c.n, c.claim_token, c.mail_from, c.smtputf8, c.eight_bit,
    c.require_tls, c.tls_optional,
    CASE WHEN r.position IS NULL OR r.position = 0 THEN b.data END,
    {STATUS_COLUMNS}
FROM clock
LEFT JOIN claimed c ON true
LEFT JOIN messages m ON m.id = c.id
LEFT JOIN bodies b ON b.message = c.id
LEFT JOIN recipients r ON r.message = c.id
ORDER BY c.n, r.position
"""
# The columns of _CLAIM's rows before the status's.
_HEAD = 9

# The live claims among those given: their messages stay claimed, and their
# pending recipients due, until the new end of the lease.
_EXTEND = f"""
WITH {CLOCK}, live AS (
    SELECT m.id, m.message_id FROM messages m
    JOIN unnest(%s::text[], %s::text[]) AS c(message_id, token)
        ON m.message_id = c.message_id AND m.claim_token = c.token
    ORDER BY m.id
    FOR UPDATE OF m
), extended AS (
    UPDATE messages m SET due_at = clock.now + %s FROM live, clock WHERE m.id = live.id
), recipients_due AS (
    UPDATE recipients r SET next_attempt_at = clock.now + %s FROM live, clock
    WHERE r.message = live.id AND r.result IN {PENDING}
)
SELECT message_id FROM live
"""

_NEXT_DUE = (
    "SELECT (SELECT min(due_at) FROM messages WHERE pending > 0 AND NOT held),"
    f" {DB_NOW}"
)

#: Rewrites the recipients :func:`recipient_arrays` gives.
UPDATE_RECIPIENTS = f"""
UPDATE recipients r SET {", ".join(f"{c} = u.{c}" for c in RECIPIENT_COLUMNS)}
FROM unnest(%s::bigint[], %s::int[], %s::text[], %s::int[], %s::int[], %s::text[],
    %s::text[], %s::text[], %s::text[], %s::float8[], %s::float8[], %s::bool[],
    %s::text[], %s::text[], %s::int[], %s::text[], %s::bool[],
    %s::text[], %s::int[], %s::text[], %s::text[],
    %s::text[], %s::text[], %s::text[], %s::text[], %s::text[])
    AS u(message, position, {", ".join(RECIPIENT_COLUMNS)})
WHERE r.message = u.message AND r.position = u.position
"""


@dataclasses.dataclass(frozen=True)
class Claimed:
    """What a claim statement returned: the claims, and the database's time."""

    claims: list[Claim]
    now: float


def claim_due(
    conn: Connection, now: float | None, caller_now: float, limit: int, lease: float
) -> Claimed:
    """Claim up to ``limit`` messages due at ``now`` (the database's clock when
    None) for ``lease`` seconds, as :meth:`~mailstrom_py.Storage.claim_due`
    does; ``caller_now`` is the claimant's clock, for the skew."""
    rows = conn.execute(_CLAIM, [now, limit, lease, caller_now, lease]).fetchall()
    at = float(rows[0][0])
    heads: dict[int, tuple[object, ...]] = {}
    for row in rows:
        if row[1] is not None and row[8] is not None:
            heads[int(row[1])] = row
    found = statuses(row[_HEAD:] for row in rows if row[1] is not None)
    until = at + lease
    claims = []
    for before, n in zip(found, sorted(heads), strict=True):
        head = heads[n]
        email = prepared_email(
            before.message_id, (r.address for r in before.recipients), head[3:9]
        )
        claims.append(
            Claim(before, attempt_begun(before, at, until), email, str(head[2]))
        )
    return Claimed(claims, at)


def extend(
    conn: Connection, claims: Sequence[Claim], now: float | None, lease: float
) -> list[bool]:
    """Extend each live claim of ``claims`` for ``lease`` seconds from ``now``
    (the database's clock when None), as :meth:`~mailstrom_py.Storage.extend`
    does."""
    rows = conn.execute(
        _EXTEND,
        [
            now,
            [claim.message_id for claim in claims],
            [claim.token for claim in claims],
            lease,
            lease,
        ],
    ).fetchall()
    live = {str(message_id) for (message_id,) in rows}
    return [claim.message_id in live for claim in claims]


def next_due(conn: Connection) -> tuple[float | None, float]:
    """When the next message is due (None: none is), and the database's time."""
    row = conn.execute(_NEXT_DUE).fetchone()
    assert row is not None
    due, at = row
    return (None if due is None else float(due)), float(at)


def recipient_arrays(
    changed: dict[tuple[int, int], RecipientStatus],
) -> list[list[object]]:
    """The arrays :data:`UPDATE_RECIPIENTS` unnests, one per column."""
    columns: list[list[object]] = [[] for _ in range(2 + len(RECIPIENT_COLUMNS))]
    for (rowid, position), status in changed.items():
        values = (rowid, position, *recipient_values(status))
        for column, value in zip(columns, values, strict=True):
            column.append(value)
    return columns
