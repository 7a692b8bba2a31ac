"""The worker's bookkeeping in PostgreSQL: claiming due messages in batches, and
recording the outcomes of their attempts under the claims.

A claim lives in ``messages``, as in SQLite: ``claim_token`` holds the token of
the last claim not yet recorded, and ``due_at`` the end of its lease while it
lasts, so the partial index ``messages_due`` serves claims and ``next_due``.
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

from ...status import MessageStatus, RecipientStatus
from ..base import Claim, new_token
from ..rules import attempt_begun, merge_recipients
from ..sqlite.schema import prepared_email, recipient_values, statuses
from .db import Connection
from .rows import CLOCK, DB_NOW, PENDING, RECIPIENT_COLUMNS, STATUS_COLUMNS

__all__ = [
    "UPDATE_RECIPIENTS",
    "claim_due",
    "next_due",
    "recipient_arrays",
    "record",
]

# One statement: lock the due rows no one else holds, make them claimed, count
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
), tokens AS (
    SELECT token, n FROM unnest(%s::text[]) WITH ORDINALITY AS t(token, n)
), claimed AS (
    UPDATE messages m SET due_at = clock.now + %s, claim_token = tokens.token,
        claim_skew = clock.now - %s
    FROM numbered, tokens, clock
    WHERE m.id = numbered.id AND tokens.n = numbered.n
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

_NEXT_DUE = (
    "SELECT (SELECT min(due_at) FROM messages WHERE pending > 0 AND NOT held),"
    f" {DB_NOW}"
)

_LOAD = f"""
SELECT {STATUS_COLUMNS}, m.claim_token, m.claim_skew FROM (
    SELECT id, message_id, created_at, held, claim_token, claim_skew
    FROM messages WHERE message_id = ANY(%s::text[])
    ORDER BY id FOR UPDATE
) m
LEFT JOIN recipients r ON r.message = m.id
ORDER BY m.created_at, m.id, r.position
"""

#: Rewrites the recipients :func:`recipient_arrays` gives.
UPDATE_RECIPIENTS = f"""
UPDATE recipients r SET {", ".join(f"{c} = u.{c}" for c in RECIPIENT_COLUMNS)}
FROM unnest(%s::bigint[], %s::int[], %s::text[], %s::int[], %s::int[], %s::text[],
    %s::text[], %s::text[], %s::text[], %s::float8[], %s::float8[], %s::bool[],
    %s::text[], %s::text[], %s::int[], %s::text[], %s::bool[],
    %s::text[], %s::int[], %s::text[], %s::text[],
    %s::text[], %s::text[], %s::text[], %s::text[])
    AS u(message, position, {", ".join(RECIPIENT_COLUMNS)})
WHERE r.message = u.message AND r.position = u.position
"""

_UPDATE_MESSAGES = f"""
UPDATE messages m SET pending = u.pending, due_at = u.due_at, claim_token = NULL,
    claim_skew = NULL,
    completed_at = CASE WHEN u.pending = 0
        THEN coalesce(m.completed_at, u.completed_at, {DB_NOW}) END
FROM unnest(%s::bigint[], %s::int[], %s::float8[], %s::float8[])
    AS u(id, pending, due_at, completed_at)
WHERE m.id = u.id
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
    tokens = [new_token() for _ in range(limit)]
    rows = conn.execute(
        _CLAIM, [now, limit, tokens, lease, caller_now, lease]
    ).fetchall()
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


def next_due(conn: Connection) -> tuple[float | None, float]:
    """When the next message is due (None: none is), and the database's time."""
    row = conn.execute(_NEXT_DUE).fetchone()
    assert row is not None
    due, at = row
    return (None if due is None else float(due)), float(at)


def record(
    conn: Connection,
    records: Sequence[tuple[Claim, Sequence[RecipientStatus]]],
    *,
    database_clock: bool,
) -> list[MessageStatus | None]:
    """Record each ``(claim, updates)`` in turn, as
    :meth:`~mailstrom_py.Storage.record_many` does, in the caller's
    transaction.

    A message completed now counts as completed by the database's clock, or,
    when the storage keeps its callers' clock, when the attempt that completed
    it began."""
    rows = conn.execute(
        _LOAD, [list(dict.fromkeys(claim.message_id for claim, _ in records))]
    ).fetchall()
    current = {s.message_id: s for s in statuses(rows)}
    heads = {str(row[1]): (int(row[0]), row[-2], row[-1]) for row in rows}
    recorded: list[MessageStatus | None] = []
    changed: dict[tuple[int, int], RecipientStatus] = {}
    messages: dict[int, tuple[int, float | None, float | None]] = {}
    for claim, updates in records:
        before = current.get(claim.message_id)
        head = heads.get(claim.message_id)
        if before is None or head is None or head[1] != claim.token:
            recorded.append(None)
            continue
        rowid, _, skew = head
        heads[claim.message_id] = (rowid, None, skew)  # the claim ends
        after = merge_recipients(before, [_moved(u, skew) for u in updates])
        for n, (new, old) in enumerate(
            zip(after.recipients, before.recipients, strict=True)
        ):
            if new != old:
                changed[rowid, n] = new
        began = None if database_clock else _began(after)
        messages[rowid] = (len(after.pending), after.next_attempt_at, began)
        current[claim.message_id] = after
        recorded.append(after)
    if changed:
        conn.execute(UPDATE_RECIPIENTS, recipient_arrays(changed))
    if messages:
        values = list(messages.values())
        conn.execute(
            _UPDATE_MESSAGES,
            [list(messages), *(list(column) for column in zip(*values, strict=True))],
        )
    return recorded


def _moved(update: RecipientStatus, skew: object) -> RecipientStatus:
    """``update``'s times moved from the claimant's clock onto the database's."""
    if not skew:
        return update
    shift = float(skew)  # type: ignore[arg-type]
    return dataclasses.replace(
        update,
        last_attempt_at=_plus(update.last_attempt_at, shift),
        next_attempt_at=_plus(update.next_attempt_at, shift),
    )


def _began(status: MessageStatus) -> float | None:
    """When the last attempt on ``status`` began."""
    times = [r.last_attempt_at for r in status.recipients if r.last_attempt_at]
    return max(times) if times else None


def _plus(at: float | None, shift: float) -> float | None:
    return None if at is None else at + shift


def recipient_arrays(
    changed: dict[tuple[int, int], RecipientStatus],
) -> list[list[object]]:
    """The arrays :data:`UPDATE_RECIPIENTS` unnests, one per column."""
    columns: list[list[object]] = [[] for _ in range(2 + len(RECIPIENT_COLUMNS))]
    for (rowid, position), status in changed.items():
        values = (rowid, position, *recipient_values(status))
        for column, value in zip(columns, values, strict=True):
            column.append(value)
    # SQLite stores booleans as 0 and 1; PostgreSQL wants them as booleans.
    for index in (11, 16):
        columns[index] = [None if v is None else bool(v) for v in columns[index]]
    return columns
