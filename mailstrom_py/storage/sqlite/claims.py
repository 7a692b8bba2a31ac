"""The worker's bookkeeping in SQL: claiming due messages for attempts and
recording their outcomes, a batch of messages in a few statements.

A claim lives in ``messages``: ``claim_token`` holds the token of the last
claim not yet recorded, and ``due_at`` (the earliest ``next_attempt_at`` of
the pending recipients) holds the end of its lease while it lasts. So "due"
means due and not under a live claim, and the partial index ``messages_due``
serves both :data:`CLAIMABLE` and :data:`NEXT_DUE`.

Every function but :func:`next_due` runs inside the caller's write
transaction, so a batch is committed whole or not at all.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from ...status import MessageStatus, RecipientStatus
from ..base import Claim, new_token
from ..rows import (
    PENDING,
    RECIPIENT_COLUMNS,
    STATUS_COLUMNS,
    prepared_email,
    recipient_values,
    statuses,
)
from ..rules import attempt_begun, merge_recipients

__all__ = [
    "CLAIMABLE",
    "LIVE_CLAIM",
    "NEXT_DUE",
    "UPDATE_RECIPIENT",
    "Claimed",
    "claim_due",
    "extend",
    "next_due",
    "record",
]

_DUE = (
    " FROM messages WHERE held = 0 AND due_at IS NOT NULL AND due_at <= ?"
    " ORDER BY due_at, id LIMIT ?"
)
#: ``(now, limit)`` -> the rowids of the messages to claim, earliest due first,
#: ties in the order added: read off the messages_due index, no sort.
CLAIMABLE = "SELECT id" + _DUE

# ``(now, limit)`` -> the messages to claim as rows for ``statuses``, each
# followed by its message's due time, the recipient's position and the message
# (envelope and body: the body on the row of position 0 only), in no order.
# One statement reads what the claim needs; sorting the few rows it returns
# costs less than having SQLite sort them with their bodies.
_CLAIMED = (
    f"SELECT {STATUS_COLUMNS}, m.due_at, r.position, m.mail_from, m.smtputf8,"
    " m.eight_bit, m.require_tls, m.tls_optional,"
    " CASE WHEN r.position > 0 THEN NULL ELSE b.data END"
    f" FROM (SELECT *{_DUE}) m JOIN bodies b ON b.message = m.id"
    " LEFT JOIN recipients r ON r.message = m.id"
)
_DUE_AT = len(STATUS_COLUMNS.split(","))  # where the columns after the status begin

#: When the next message is due, from the messages_due index alone.
NEXT_DUE = "SELECT min(due_at) FROM messages WHERE held = 0 AND due_at IS NOT NULL"

#: A condition on ``messages m``, with ``now`` as its parameter: the message is
#: under a claim whose lease has not ended.
LIVE_CLAIM = "m.claim_token IS NOT NULL AND m.due_at > ?"

_IN_LIST = "IN (SELECT value FROM json_each(?))"
#: ``(*recipient_values(r), message, position)`` -> one recipient rewritten.
UPDATE_RECIPIENT = (
    "UPDATE recipients SET "
    + ", ".join(f"{column} = ?" for column in RECIPIENT_COLUMNS)
    + " WHERE message = ? AND position = ?"
)


# Rows for :func:`~mailstrom_py.storage.rows.statuses`, each followed by its
# message's claim token, grouped by message.
_LOAD = (
    f"SELECT {STATUS_COLUMNS}, m.claim_token FROM messages m"
    " LEFT JOIN recipients r ON r.message = m.id WHERE m.message_id {where}"
    " ORDER BY m.id, r.position"
)
_LOAD_ONE = _LOAD.format(where="= ?")
_LOAD_MANY = _LOAD.format(where=_IN_LIST)


@dataclass(frozen=True)
class Claimed:
    """The rows a claim read and the tokens it wrote, in its transaction; the
    claims themselves are built from them by :meth:`claims`, once the
    transaction is committed and the writer is free for other writes."""

    rows: list[tuple[object, ...]]
    tokens: dict[int, str]
    now: float
    until: float

    def claims(self) -> list[Claim]:
        """The claims, earliest due first, ties in the order added."""
        rows = sorted(self.rows, key=_claim_order)
        envelopes = {
            int(row[0]): row[_DUE_AT + 2 :]  # type: ignore[call-overload]
            for row in rows
            if not row[_DUE_AT + 1]
        }
        rowids = dict.fromkeys(int(row[0]) for row in rows)  # type: ignore[call-overload]
        now, until, tokens = self.now, self.until, self.tokens
        claims = []
        for rowid, status in zip(rowids, statuses(rows), strict=True):
            email = prepared_email(
                status.message_id,
                (r.address for r in status.recipients),
                envelopes[rowid],
            )
            claims.append(
                Claim(status, attempt_begun(status, now, until), email, tokens[rowid])
            )
        return claims


def claim_due(
    conn: sqlite3.Connection, now: float, limit: int, lease: float
) -> Claimed:
    """Claim up to ``limit`` messages due at ``now`` until ``now + lease``, as
    :meth:`~mailstrom_py.Storage.claim_due` does; :meth:`Claimed.claims` gives
    the claims."""
    rows = conn.execute(_CLAIMED, (now, limit)).fetchall()
    until = now + lease
    if not rows:
        return Claimed([], {}, now, until)
    tokens = {int(row[0]): new_token() for row in rows}
    conn.execute(
        "UPDATE recipients SET attempts = attempts + 1, last_attempt_at = ?,"
        f" next_attempt_at = ? WHERE message {_IN_LIST} AND result IN {PENDING}",
        (now, until, json.dumps(list(tokens))),
    )
    conn.executemany(
        "UPDATE messages SET due_at = ?, claim_token = ? WHERE id = ?",
        [(until, token, rowid) for rowid, token in tokens.items()],
    )
    return Claimed(rows, tokens, now, until)


def _claim_order(row: Sequence[object]) -> tuple[float, int, int]:
    """Earliest due first, ties in the order added; recipients in position."""
    due_at, position = row[_DUE_AT], row[_DUE_AT + 1]
    return (
        float(due_at),  # type: ignore[arg-type]
        int(row[0]),  # type: ignore[call-overload]
        -1 if position is None else int(position),  # type: ignore[call-overload]
    )


def next_due(conn: sqlite3.Connection) -> float | None:
    """Return when the next message is due, as
    :meth:`~mailstrom_py.Storage.next_due` does."""
    [(due,)] = conn.execute(NEXT_DUE).fetchall()
    return None if due is None else float(due)


def record(
    conn: sqlite3.Connection,
    records: Sequence[tuple[Claim, Sequence[RecipientStatus]]],
) -> list[MessageStatus | None]:
    """Record each ``(claim, updates)`` in turn, as
    :meth:`~mailstrom_py.Storage.record_many` does.

    Returns:
        The status after each update, ``None`` where it was refused.
    """
    current, rowids, tokens = _load(conn, [claim.message_id for claim, _ in records])
    recorded: list[MessageStatus | None] = []
    changed_recipients: list[tuple[object, ...]] = []
    changed_messages: dict[int, tuple[int, float | None, int]] = {}
    for claim, updates in records:
        message_id = claim.message_id
        before = current.get(message_id)
        if before is None or tokens.get(message_id) != claim.token:
            recorded.append(None)
            continue
        tokens[message_id] = None  # the claim ends
        rowid = rowids[message_id]
        after = merge_recipients(before, updates)
        changed_recipients.extend(
            (*recipient_values(new), rowid, n)
            for n, (new, old) in enumerate(
                zip(after.recipients, before.recipients, strict=True)
            )
            if new is not old and new != old
        )
        changed_messages[rowid] = (len(after.pending), after.next_attempt_at, rowid)
        current[message_id] = after
        recorded.append(after)
    conn.executemany(UPDATE_RECIPIENT, changed_recipients)
    conn.executemany(
        "UPDATE messages SET pending = ?, due_at = ?, claim_token = NULL WHERE id = ?",
        changed_messages.values(),
    )
    return recorded


def extend(
    conn: sqlite3.Connection, claims: Sequence[Claim], until: float
) -> list[bool]:
    """Extend the lease of each live claim of ``claims`` to ``until``, as
    :meth:`~mailstrom_py.Storage.extend` does."""
    extended = []
    for claim in claims:
        row = conn.execute(
            "SELECT id FROM messages WHERE message_id = ? AND claim_token = ?",
            (claim.message_id, claim.token),
        ).fetchone()
        if row is not None:
            conn.execute("UPDATE messages SET due_at = ? WHERE id = ?", (until, row[0]))
            conn.execute(
                "UPDATE recipients SET next_attempt_at = ?"
                f" WHERE message = ? AND result IN {PENDING}",
                (until, row[0]),
            )
        extended.append(row is not None)
    return extended


def _load(
    conn: sqlite3.Connection, message_ids: Sequence[str]
) -> tuple[dict[str, MessageStatus], dict[str, int], dict[str, str | None]]:
    """Load the messages among ``message_ids``, in one statement.

    Returns:
        Their statuses, rowids and claim tokens, by message id.
    """
    if len(message_ids) == 1:
        rows = conn.execute(_LOAD_ONE, (message_ids[0],)).fetchall()
    else:
        packed = json.dumps(list(dict.fromkeys(message_ids)))
        rows = conn.execute(_LOAD_MANY, (packed,)).fetchall()
    rowids: dict[str, int] = {}
    tokens: dict[str, str | None] = {}
    for row in rows:
        message_id = str(row[1])
        rowids[message_id] = int(row[0])
        tokens[message_id] = None if row[-1] is None else str(row[-1])
    return {s.message_id: s for s in statuses(rows)}, rowids, tokens
