"""Recording the outcomes of attempts in PostgreSQL: one statement for a whole
batch of claims, which reads nothing back.

The statement locks the messages whose claim is still live (their
``claim_token`` is the claim's), writes the updates onto their recipients
(never over one already delivered), and sets each message's pending count, due
time and completion from its recipients as they now stand; it ends the claims.
It returns what the statuses after the update need beyond the claims the
caller holds: whether each message is held, and the clock skew of its claim.

The recipients' statuses are not read back: under a live claim, only the
claimant changes them (a kick passes over a claimed message), so the claim's
status is what the database holds, but for the lease, which
:meth:`~mailstrom_py.storage.postgres.PostgresStorage.extend` may have moved.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence

from ...status import DeliveryResult, MessageStatus, RecipientStatus
from ..base import Claim
from ..rows import RECIPIENT_COLUMNS, recipient_values
from ..rules import merge_recipients
from .db import Connection
from .rows import DB_NOW

__all__ = ["record"]

_DELIVERED = f"'{DeliveryResult.DELIVERED.value}'"
_TYPES = (
    "text",
    "int",
    "int",
    "text",
    "text",
    "text",
    "text",
    "float8",
    "float8",
    "bool",
    "text",
    "text",
    "int",
    "text",
    "bool",
    "text",
    "int",
    "text",
    "text",
    "text",
    "text",
    "text",
    "text",
    "text",
)
_SHIFTED = ("last_attempt_at", "next_attempt_at")


def _set(column: str) -> str:
    if column in _SHIFTED:
        return f"{column} = t.{column} + t.skew"
    return f"{column} = t.{column}"


_RECORD = f"""
WITH claims AS (
    SELECT m.id, m.held, coalesce(m.claim_skew, 0) AS skew, m.due_at AS lease_end,
        c.n, c.pending, c.due_at, c.others_pending, c.completed_at
    FROM json_to_recordset(%s::json) AS c(message_id text, token text, n int,
        pending int, due_at float8, others_pending bool, completed_at float8)
    JOIN messages m ON m.message_id = c.message_id AND m.claim_token = c.token
    ORDER BY m.id
    FOR UPDATE OF m
), u AS (
    SELECT * FROM json_to_recordset(%s::json) AS u(n int, position int,
        {", ".join(f"{c} {t}" for c, t in zip(RECIPIENT_COLUMNS, _TYPES, strict=True))})
), targets AS (
    SELECT c.id AS message, u.*, c.skew FROM u JOIN claims c ON c.n = u.n
), changed AS (
    UPDATE recipients r SET {", ".join(_set(c) for c in RECIPIENT_COLUMNS)}
    FROM targets t
    WHERE r.message = t.message AND r.position = t.position
        AND r.result <> {_DELIVERED}
), ended AS (
    UPDATE messages m SET pending = c.pending,
        due_at = least(c.due_at + c.skew,
            CASE WHEN c.others_pending THEN c.lease_end END),
        claim_token = NULL, claim_skew = NULL,
        completed_at = CASE WHEN c.pending = 0
            THEN coalesce(m.completed_at, c.completed_at, {DB_NOW}) END
    FROM claims c WHERE m.id = c.id
)
SELECT n, held, skew, lease_end FROM claims
"""
# Each updated recipient is found by its whole key (message, position), and the
# update's condition is that key. An extension of the claim that committed
# while this statement waited for the message's lock has updated the
# recipients since the statement's snapshot: PostgreSQL follows such a row to
# its newest version and checks the condition again on it, which a key passes
# and a row address (ctid) of the older version would not (the outcome would
# then be lost while the claim ended).
#
# A pending recipient the updates do not name stays due when the claim's
# lease ends, which the message's due_at holds while the claim lasts: the
# claim's status may hold an earlier end, if the claim was extended.


def record(
    conn: Connection,
    records: Sequence[tuple[Claim, Sequence[RecipientStatus]]],
    *,
    database_clock: bool,
) -> list[MessageStatus | None]:
    """Record each ``(claim, updates)``, as
    :meth:`~mailstrom_py.Storage.record_many` does, in one statement.

    The times of the updates are moved onto the database's clock by the skew
    measured when the message was claimed. A message completed now counts as
    completed by the database's clock, or, when the storage keeps its callers'
    clock, when the attempt that completed it began."""
    sent: dict[tuple[str, str], int] = {}
    for n, (claim, _) in enumerate(records):
        sent.setdefault((claim.message_id, claim.token), n)
    chosen = sorted(sent.values())
    rows = conn.execute(
        _RECORD, _parameters(records, chosen, database_clock=database_clock)
    ).fetchall()
    recorded: list[MessageStatus | None] = [None] * len(records)
    for n, held, skew, lease_end in rows:
        claim, updates = records[n]
        named = {u.address for u in updates}
        recipients = tuple(
            r
            if r.address in named or r.completed
            else dataclasses.replace(r, next_attempt_at=lease_end)
            for r in claim.status.recipients
        )
        merged = merge_recipients(
            dataclasses.replace(claim.status, recipients=recipients, held=bool(held)),
            [_moved(u, float(skew)) for u in updates],
        )
        recorded[n] = merged
    return recorded


def _parameters(
    records: Sequence[tuple[Claim, Sequence[RecipientStatus]]],
    chosen: Sequence[int],
    *,
    database_clock: bool,
) -> list[object]:
    """The parameters of :data:`_RECORD` for the records at the ``chosen``
    indexes: the claims, and the recipients' updates, each as one JSON array
    (one value to encode, however many records)."""
    heads: list[dict[str, object]] = []
    updated: list[dict[str, object]] = []
    for n in chosen:
        claim, updates = records[n]
        heads.append(_head(n, claim, updates, database_clock=database_clock))
        positions = {r.address: p for p, r in enumerate(claim.status.recipients)}
        updated.extend(
            _row(n, positions[update.address], update)
            for update in updates
            if update.address in positions
        )
    return [json.dumps(heads), json.dumps(updated)]


def _head(
    n: int, claim: Claim, updates: Sequence[RecipientStatus], *, database_clock: bool
) -> dict[str, object]:
    """One claim as an object of :data:`_RECORD`'s JSON: its message, its
    token, its index, and its message's pending count, earliest due time among
    the pending recipients the updates name, whether others stay pending, and
    when it completed (None: the database's now)."""
    merged = merge_recipients(claim.status, updates)
    named = {u.address for u in updates}
    due = [
        r.next_attempt_at
        for r in merged.pending
        if r.address in named and r.next_attempt_at is not None
    ]
    return {
        "message_id": claim.message_id,
        "token": claim.token,
        "n": n,
        "pending": len(merged.pending),
        "due_at": min(due) if due else None,
        "others_pending": any(r.address not in named for r in merged.pending),
        "completed_at": None if database_clock else _began(merged),
    }


def _row(n: int, position: int, update: RecipientStatus) -> dict[str, object]:
    """One recipient's update as an object of :data:`_RECORD`'s JSON."""
    row: dict[str, object] = {"n": n, "position": position}
    row.update(zip(RECIPIENT_COLUMNS, recipient_values(update), strict=True))
    return row


def _moved(update: RecipientStatus, shift: float) -> RecipientStatus:
    """``update``'s times moved from the claimant's clock onto the database's."""
    if not shift:
        return update
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
