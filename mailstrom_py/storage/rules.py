"""The recipient state machine every backend and the worker share.

A recipient is ``QUEUED`` when added, and an attempt turns it ``DELIVERED``,
``FAILED`` or ``DEFERRED``; ``QUEUED`` and ``DEFERRED`` recipients are pending,
the other two complete. A backend keeps the state; these functions say how it
changes, so that what is due, what an attempt counts and what an outcome means
are written once:

* :func:`initial_status`: a message as added, every recipient due at once (or
  at the time it is scheduled for);
* :func:`due_at` and :func:`is_claimable`: when a message may be claimed for an
  attempt;
* :func:`attempt_begun`: a message as claimed, its attempt counted before it
  is made;
* :func:`lease_extended`: a message whose claim's lease was extended;
* :func:`apply_outcomes`: the new statuses of the pending recipients after an
  attempt, from what the transport reported;
* :func:`merge_recipients`: statuses recorded onto a message, never overwriting
  a recipient already delivered;
* :func:`failed_by_operator` and :func:`scheduled`: what the queue operations
  ``fail`` and ``schedule`` do to a message.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Protocol

from ..codes import (
    DELIVERY_TIME_EXPIRED,
    OTHER_SYSTEM_PERMANENT,
    OTHER_SYSTEM_TRANSIENT,
)
from ..message import PreparedEmail
from ..status import DeliveryResult, MessageStatus, RecipientStatus, Remote, SmtpReply

__all__ = [
    "OPERATOR_FAILED",
    "Reported",
    "apply_outcomes",
    "attempt_begun",
    "due_at",
    "failed_by_operator",
    "initial_status",
    "is_claimable",
    "lease_extended",
    "merge_recipients",
    "scheduled",
]

#: The detail of a recipient failed by :func:`failed_by_operator`.
OPERATOR_FAILED = "failed by an operator"


class Reported(Protocol):
    """What an attempt reports for one recipient; a delivery ``Outcome`` is one."""

    @property
    def address(self) -> str: ...
    @property
    def result(self) -> DeliveryResult: ...
    @property
    def status_code(self) -> str: ...
    @property
    def detail(self) -> str: ...
    @property
    def reply(self) -> SmtpReply | None: ...
    @property
    def possibly_delivered(self) -> bool: ...
    @property
    def remote(self) -> Remote | None: ...
    @property
    def rcpt_reply(self) -> SmtpReply | None: ...
    @property
    def held_until(self) -> float | None: ...


def initial_status(
    email: PreparedEmail, now: float, send_at: float | None = None
) -> MessageStatus:
    """Return the status of a freshly added message: every recipient queued, due
    at ``send_at`` (a scheduled message) or else at ``now``."""
    due = now if send_at is None else send_at
    recipients = [
        RecipientStatus(address=rcpt, next_attempt_at=due) for rcpt in email.recipients
    ]
    return MessageStatus(email.message_id, tuple(recipients), now, first_due_at=due)


def due_at(status: MessageStatus) -> float | None:
    """When a message is due: the earliest ``next_attempt_at`` of its pending
    recipients, or ``None`` while it is held or once it is complete (never).

    A claimed message is due when its lease ends (see :func:`attempt_begun`),
    so a claim that is still live keeps it from being claimed again.
    """
    return None if status.held else status.next_attempt_at


def is_claimable(status: MessageStatus, now: float) -> bool:
    """Whether a message may be claimed for an attempt at ``now``: it is not held,
    has pending recipients, and is due (:func:`due_at` has come)."""
    due = due_at(status)
    return due is not None and due <= now


def attempt_begun(status: MessageStatus, now: float, until: float) -> MessageStatus:
    """Return ``status`` as claimed at ``now`` until ``until``: every pending
    recipient counts one more attempt, made at ``now``, and is next due at
    ``until``, when the claim's lease ends.

    Counting the attempt before it is made means a worker that dies during it
    neither loses the message nor retries it at once: it is retried when the
    lease ends.
    """
    recipients = [
        r if r.completed else _claimed(r, now, until) for r in status.recipients
    ]
    return MessageStatus.with_derived(
        status.message_id,
        tuple(recipients),
        status.created_at,
        status.held,
        status.first_due_at,
    )


def _claimed(r: RecipientStatus, now: float, until: float) -> RecipientStatus:
    """The pending recipient ``r`` as claimed (``dataclasses.replace`` spelled
    out: it is the costlier way, and this runs for every recipient claimed)."""
    return RecipientStatus(
        address=r.address,
        result=r.result,
        attempts=r.attempts + 1,
        last_reply=r.last_reply,
        status_code=r.status_code,
        detail=r.detail,
        last_attempt_at=now,
        next_attempt_at=until,
        possibly_delivered=r.possibly_delivered,
        remote=r.remote,
        rcpt_reply=r.rcpt_reply,
    )


def lease_extended(status: MessageStatus, until: float) -> MessageStatus:
    """Return ``status`` with its claim's lease extended to ``until``: every
    pending recipient is next due then."""
    recipients = tuple(
        r if r.completed else dataclasses.replace(r, next_attempt_at=until)
        for r in status.recipients
    )
    return dataclasses.replace(status, recipients=recipients)


def apply_outcomes(
    pending: Iterable[RecipientStatus],
    outcomes: Sequence[Reported],
    began: float,
    retry_at: float | None,
    before: Iterable[RecipientStatus] = (),
) -> list[RecipientStatus]:
    """Turn what an attempt reported into new statuses for its pending recipients.

    Args:
        pending: the recipients attempted, as claimed.
        outcomes: what the attempt reported, by address; a recipient left out
            is deferred (``4.3.0``). A recipient held back (``held_until``
            set: its destination suspended or over its rate) is deferred
            until then, and its attempt is not counted: its count and last
            attempt go back to what they were before the claim (as
            ``before`` has them; one attempt less without it), and no retry
            policy gives up on it.
        began: when the attempt began (its ``last_attempt_at``).
        retry_at: when a deferred recipient is next due, counted from the end
            of the attempt by the retry policy; ``None`` means the policy gave
            up, and a deferred recipient fails with ``5.4.7`` (RFC 3463: the
            delivery time expired) and its last reply kept.
        before: the recipients as they were before the claim.

    Returns:
        One status per pending recipient, in order. The attempt count stays as
        claimed (but for those held back), and ``possibly_delivered`` once set
        stays set.
    """
    by_address = {o.address: o for o in outcomes}
    earlier: dict[str, RecipientStatus] | None = None  # made when first needed
    updates = []
    for current in pending:
        outcome = by_address.get(current.address)
        if outcome is not None and outcome.held_until is not None:
            if earlier is None:
                earlier = {r.address: r for r in before}
            updates.append(_held(current, outcome, earlier.get(current.address)))
        else:
            updates.append(_recipient_after(current, outcome, began, retry_at))
    return updates


def _held(
    current: RecipientStatus, outcome: Reported, before: RecipientStatus | None
) -> RecipientStatus:
    """``current`` held back by ``outcome``: deferred until its ``held_until``,
    its attempt not counted."""
    return dataclasses.replace(
        current,
        result=DeliveryResult.DEFERRED,
        attempts=before.attempts if before else max(current.attempts - 1, 0),
        last_attempt_at=before.last_attempt_at if before else current.last_attempt_at,
        status_code=outcome.status_code,
        detail=outcome.detail,
        next_attempt_at=outcome.held_until,
    )


def _recipient_after(
    current: RecipientStatus,
    outcome: Reported | None,
    began: float,
    retry_at: float | None,
) -> RecipientStatus:
    if outcome is None:
        result, code = DeliveryResult.DEFERRED, OTHER_SYSTEM_TRANSIENT
        detail = "no outcome was reported"
        reply, possibly, remote, rcpt_reply = None, False, None, None
    else:
        result, code, detail = outcome.result, outcome.status_code, outcome.detail
        reply, possibly, remote, rcpt_reply = (
            outcome.reply,
            outcome.possibly_delivered,
            outcome.remote,
            outcome.rcpt_reply,
        )
    next_at = None
    if result is DeliveryResult.DEFERRED:
        if retry_at is None:
            result, code = DeliveryResult.FAILED, DELIVERY_TIME_EXPIRED
            detail = f"gave up after {current.attempts} attempts; last: {detail}"
        else:
            next_at = retry_at
    return RecipientStatus(
        address=current.address,
        result=result,
        attempts=current.attempts,
        last_reply=reply,
        status_code=code,
        detail=detail,
        last_attempt_at=began,
        next_attempt_at=next_at,
        possibly_delivered=current.possibly_delivered or possibly,
        remote=remote,
        rcpt_reply=rcpt_reply,
    )


def merge_recipients(
    status: MessageStatus, updates: Sequence[RecipientStatus]
) -> MessageStatus:
    """Apply ``updates`` to ``status`` by address; delivered recipients stay as is.

    A recipient already ``DELIVERED`` keeps that status whatever the update says,
    so a delivered recipient is never sent to again. Addresses that are not
    recipients of the message are ignored.
    """
    by_address = {u.address: u for u in updates}
    merged = []
    for current in status.recipients:
        update = by_address.get(current.address)
        if update is None or current.result is DeliveryResult.DELIVERED:
            merged.append(current)
        else:
            merged.append(update)
    return MessageStatus.with_derived(
        status.message_id,
        tuple(merged),
        status.created_at,
        status.held,
        status.first_due_at,
    )


def failed_by_operator(status: MessageStatus) -> MessageStatus:
    """Return ``status`` with every pending recipient ``FAILED`` by the queue's
    operator: status code ``5.3.0``, detail :data:`OPERATOR_FAILED`, due never.

    Their attempt counts, last replies and ``possibly_delivered`` stay, so the
    status still tells what earlier attempts met. Completed recipients are
    unchanged.
    """
    recipients = tuple(
        r
        if r.completed
        else dataclasses.replace(
            r,
            result=DeliveryResult.FAILED,
            status_code=OTHER_SYSTEM_PERMANENT,
            detail=OPERATOR_FAILED,
            next_attempt_at=None,
        )
        for r in status.recipients
    )
    return dataclasses.replace(status, recipients=recipients)


def scheduled(status: MessageStatus, at: float) -> MessageStatus:
    """Return ``status`` with every pending recipient next due at ``at``, sooner
    or later than before; attempts and everything else stay, but for a
    message none of whose recipients was attempted yet: it is first due at
    ``at`` now (its retries will count from then)."""
    recipients = tuple(
        r if r.completed else dataclasses.replace(r, next_attempt_at=at)
        for r in status.recipients
    )
    first = at if status.attempts == 0 else status.first_due_at
    return dataclasses.replace(status, recipients=recipients, first_due_at=first)
